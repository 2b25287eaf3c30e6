"""Per-class F1/P/R/AP, the confusion matrix and the reports equal Ultralytics' on the same predictions."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ultralytics.models.yolo.detect import DetectionValidator

from yolo_lightning.metrics import MEAN_F1_KEY, PER_CLASS_METRICS, DetectionMetrics
from yolo_lightning.reports import log_images, save_validation_plots

NAMES = {0: "square", 1: "circle", 2: "triangle", 3: "star"}


def crafted_batch() -> tuple[dict, list[dict[str, torch.Tensor]]]:
    """Four 64x64 images, predictions included. Covers: a hit, a miss, a wrong class, a false positive on an image
    without labels, a class with labels but no prediction at all (star), and a predicted class with no labels (triangle).
    """
    labels = [  # (image, class, x, y, w, h) normalised xywh
        (0, 0, 0.30, 0.30, 0.30, 0.30), (0, 1, 0.70, 0.70, 0.25, 0.25),
        (2, 1, 0.50, 0.50, 0.40, 0.40), (2, 3, 0.20, 0.80, 0.20, 0.20),
        (3, 0, 0.50, 0.40, 0.50, 0.30), (3, 1, 0.25, 0.25, 0.20, 0.20),
    ]  # fmt: skip
    labels_t = torch.tensor(labels, dtype=torch.float32)
    batch = {
        "img": torch.zeros(4, 3, 64, 64), "batch_idx": labels_t[:, 0], "cls": labels_t[:, 1:2], "bboxes": labels_t[:, 2:],
        "ori_shape": [(64, 64)] * 4, "ratio_pad": [((1.0, 1.0), (0.0, 0.0))] * 4,
        "im_file": [f"im{i}.jpg" for i in range(4)],
    }  # fmt: skip

    def detections(rows: list[tuple[float, ...]]) -> dict[str, torch.Tensor]:
        """(x1, y1, x2, y2, conf, cls) rows in pixels."""
        t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
        return {"bboxes": t[:, :4], "conf": t[:, 4], "cls": t[:, 5]}

    preds = [
        detections([(10, 10, 29, 29, 0.9, 0), (36, 36, 52, 52, 0.4, 1), (40, 0, 60, 10, 0.3, 2)]),
        detections([(5, 5, 20, 20, 0.7, 0)]),  # image without labels: a false positive
        detections([(19, 19, 45, 45, 0.8, 0)]),  # right place, wrong class; the star gets nothing
        detections([(16, 16, 48, 36, 0.6, 0), (9, 9, 23, 23, 0.2, 1), (8, 8, 24, 24, 0.1, 1)]),
    ]
    return batch, preds


def ultralytics_and_ours() -> tuple[DetectionValidator, DetectionMetrics]:
    """Ultralytics' validator fed the crafted predictions the way its own loop does, and our metric taking over what
    a second validator collected (as YOLOModule does at each validation's end)."""
    batch, preds = crafted_batch()
    validator = DetectionValidator(args={"plots": True, "mode": "val"})
    validator.training, validator.data = True, {"val": ""}  # as inside training: no dataloader needed
    validator.init_metrics(SimpleNamespace(names=NAMES))
    validator.update_metrics(deepcopy(preds), deepcopy(batch))
    ours = _collected(preds, batch, range(4))
    validator.get_stats()
    metrics = DetectionMetrics(NAMES)
    metrics.update_from(ours)
    return validator, metrics


def _collected(preds: list[dict], batch: dict, images: range) -> DetectionValidator:
    """A validator that ran ``update_metrics`` on some of the crafted images (a DDP rank's share)."""
    validator = DetectionValidator(args={"plots": True, "mode": "val"})
    validator.training, validator.data = True, {"val": ""}
    validator.init_metrics(SimpleNamespace(names=NAMES))
    for i in images:
        single = {k: v[batch["batch_idx"] == i] for k, v in batch.items() if k in ("cls", "bboxes")}
        image = {**single, "batch_idx": torch.zeros(len(single["cls"])), "img": batch["img"][i : i + 1]}
        image.update({k: [batch[k][i]] for k in ("ori_shape", "ratio_pad", "im_file")})
        validator.update_metrics([deepcopy(preds[i])], image)
    return validator


def test_per_class_values_equal_ultralytics_including_silent_classes_and_empty_images():
    validator, metrics = ultralytics_and_ours()
    results = {k: float(v) for k, v in metrics.compute().items()}
    box = validator.metrics.box

    assert list(box.ap_class_index) == [0, 1, 3]  # triangle has no labels: no per-class values, as in Ultralytics
    assert not any(k.endswith("/triangle") for k in results)
    assert results[MEAN_F1_KEY] == pytest.approx(float(np.mean(box.f1)))
    for metric, attribute in PER_CLASS_METRICS.items():
        for j, c in enumerate(box.ap_class_index):
            assert results[f"metrics/{metric}(B)/{NAMES[int(c)]}"] == pytest.approx(float(getattr(box, attribute)[j]))
    assert results["metrics/F1(B)/star"] == 0.0 and results["metrics/F1(B)/square"] > 0  # non-trivial both ways
    for key, value in validator.metrics.results_dict.items():
        assert results[key] == pytest.approx(float(value)), key
    np.testing.assert_array_equal(metrics.confusion().matrix, validator.confusion_matrix.matrix)
    assert metrics.image_count == 4


def test_states_split_over_ranks_give_the_same_result():
    """What DDP does: two metric objects each take over half the images; merging their states equals one object."""
    _, whole = ultralytics_and_ours()
    expected = whole.compute()
    batch, preds = crafted_batch()
    halves = [DetectionMetrics(NAMES), DetectionMetrics(NAMES)]
    for rank, half in enumerate(halves):
        half.update_from(_collected(preds, batch, range(rank, 4, 2)))
    merged = DetectionMetrics(NAMES)
    merged.merge_state(halves[0].metric_state)
    merged.merge_state(halves[1].metric_state)
    got = merged.compute()
    assert set(got) == set(expected)
    for key in expected:
        assert float(got[key]) == pytest.approx(float(expected[key])), key
    np.testing.assert_array_equal(merged.confusion().matrix, whole.confusion().matrix)


def test_table_lists_every_labelled_class_with_its_f1():
    _, metrics = ultralytics_and_ours()
    metrics.compute()
    lines = metrics.table().splitlines()
    assert lines[0].split() == ["Class", "Images", "Instances", "P", "R", "F1", "mAP50", "mAP50-95"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == {"all", "square", "circle", "star"}
    assert rows["all"][:2] == ["4", "6"] and rows["circle"][:2] == ["3", "3"]
    box = metrics.results.box
    assert float(rows["square"][4]) == pytest.approx(box.f1[0], abs=5e-4)


def test_plots_are_written_atomically(tmp_path, monkeypatch):
    _, metrics = ultralytics_and_ours()
    metrics.compute()
    paths = save_validation_plots(metrics, tmp_path / "run")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["BoxF1_curve.png", "BoxPR_curve.png", "BoxP_curve.png", "BoxR_curve.png", "confusion_matrix.png",
         "confusion_matrix_normalized.png"]
    )  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == names  # no scratch folder left behind

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(metrics.confusion()), "plot", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_validation_plots(metrics, tmp_path / "crashed")
    assert list((tmp_path / "crashed").iterdir()) == []  # curves drawn before the crash never reached the folder


def test_images_go_to_loggers_that_take_them(tmp_path):
    image = tmp_path / "BoxF1_curve.png"
    from PIL import Image

    Image.new("RGB", (5, 4), (255, 0, 0)).save(image)
    calls: list[tuple] = []
    wandb_like = SimpleNamespace(log_image=lambda key, images, step: calls.append(("wandb", key, images, step)))
    tensorboard_like = SimpleNamespace(
        experiment=SimpleNamespace(
            add_image=lambda key, pixels, step, dataformats: calls.append(("tb", key, pixels.shape, dataformats))
        )
    )
    csv_like = SimpleNamespace(experiment=SimpleNamespace())
    assert log_images([wandb_like, tensorboard_like, csv_like], [Path(image)], step=7) == 2
    assert calls == [("wandb", "plots/BoxF1_curve", [str(image)], 7), ("tb", "plots/BoxF1_curve", (4, 5, 3), "HWC")]


def test_map_cross_check_without_its_backend_is_a_clear_error(monkeypatch):
    import importlib.util

    from yolo_lightning import YOLOModule
    from yolo_lightning.errors import ConfigurationError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faster_coco_eval" else find_spec(name, *a))
    with pytest.raises(ConfigurationError, match=r"map_cross_check=True needs the faster-coco-eval package"):
        YOLOModule(map_cross_check=True)
    YOLOModule(map_cross_check=False)  # off: no need for it

