"""Class-weighted classification loss: BCE pos_weight on YOLOv8, YOLO26 (both E2E branches) and RT-DETR criteria."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.utils.loss import FocalLoss, VarifocalLoss

from yolo_lightning.class_weights import (
    WeightedBCEWithLogitsLoss,
    WeightedFocalLoss,
    WeightedVarifocalLoss,
    apply_class_weights,
    class_instance_counts,
    inverse_frequency_weights,
    resolve_class_weights,
    weighted_criterion,
)
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.hyperparameters import ultralytics_namespace
from yolo_lightning.models import build_model, model_config
from yolo_lightning.tasks import task_of

NAMES = {0: "square", 1: "circle", 2: "triangle"}
WEIGHTS = torch.tensor([0.5, 4.0, 2.0])
ONES = torch.ones(3)


# ---------------------------------------------------------------- helpers


def _model(cfg: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(task_of(model_config(cfg)), cfg, NAMES)
    model.args = ultralytics_namespace("test")
    return model.train()


@pytest.fixture(scope="module")
def v8_model() -> nn.Module:
    return _model("yolov8n.yaml")


@pytest.fixture(scope="module")
def yolo26_model() -> nn.Module:
    return _model("yolo26n.yaml")


@pytest.fixture(scope="module")
def rtdetr_model() -> nn.Module:
    return _model("rtdetr-l.yaml")


def _batch(with_boxes: bool = True) -> dict[str, torch.Tensor]:
    """Two random 64x64 images; image 0 has a square and a circle, image 1 a triangle and a circle."""
    generator = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 64, 64, generator=generator)
    if not with_boxes:
        return {
            "img": img,
            "cls": torch.zeros(0, 1),
            "bboxes": torch.zeros(0, 4),
            "batch_idx": torch.zeros(0),
        }
    return {
        "img": img,
        "cls": torch.tensor([[0.0], [1.0], [2.0], [1.0]]),
        "bboxes": torch.tensor(
            [
                [0.3, 0.3, 0.4, 0.4],
                [0.7, 0.6, 0.5, 0.6],
                [0.5, 0.5, 0.8, 0.8],
                [0.4, 0.6, 0.5, 0.4],
            ]
        ),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0, 1.0]),
    }


class _CaptureBCE(nn.Module):
    """Plain (unweighted) element-wise BCE that records the logits and targets it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls.append((logits.detach().clone(), target.detach().clone()))
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


class _CaptureVFL(VarifocalLoss):
    """Ultralytics' VarifocalLoss, recording (pred_score, gt_score, label) of every call."""

    def __init__(self, gamma: float, alpha: float) -> None:
        super().__init__(gamma, alpha)
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, pred_score: torch.Tensor, gt_score: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        self.calls.append(
            (
                pred_score.detach().clone(),
                gt_score.detach().clone(),
                label.detach().clone(),
            )
        )
        return super().forward(pred_score, gt_score, label)


def _hand_bce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-(w * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))), element-wise, in float64."""
    x, y, w = logits.double(), target.double(), weights.double()
    return -(w * y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x))


def _hand_yolo_cls_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, gain: float) -> float:
    """YOLO's cls loss by hand: summed weighted BCE over max(sum of target scores, 1), times hyp.cls."""
    return float(_hand_bce(logits, target, weights).sum() / max(float(target.double().sum()), 1.0) * gain)


def _check_yolo_branch(plain, weighted, preds: dict, batch: dict, weights: torch.Tensor) -> None:
    """A weighted v8DetectionLoss branch: cls_loss equals the hand computation, box/dfl equal the plain loss."""
    capture = _CaptureBCE()
    plain.bce = capture
    _, plain_items = plain.loss(preds, batch)
    ((logits, target),) = capture.calls
    assert target.sum() > 0.05, "the batch must have positive targets, or pos_weight could not matter"
    gain = plain.hyp.cls
    # the hand formula itself reproduces Ultralytics' unweighted cls loss
    assert float(plain_items["cls_loss"]) == pytest.approx(_hand_yolo_cls_loss(logits, target, ONES, gain), rel=1e-5)

    _, items = weighted.loss(preds, batch)
    assert float(items["cls_loss"]) == pytest.approx(_hand_yolo_cls_loss(logits, target, weights, gain), rel=1e-5)
    assert float(items["cls_loss"]) != pytest.approx(float(plain_items["cls_loss"]), rel=1e-3)
    assert set(items) == set(plain_items)
    for name in set(items) - {"cls_loss"}:  # box and dfl/l1 are untouched
        torch.testing.assert_close(items[name], plain_items[name], rtol=0, atol=0)


def _rtdetr_preds(model: nn.Module, batch: dict) -> tuple:
    """RT-DETR training-mode predictions (denoising queries included), targets built as RTDETRDetectionModel.loss."""
    targets = {
        "cls": batch["cls"].long().view(-1),
        "bboxes": batch["bboxes"],
        "batch_idx": batch["batch_idx"].long().view(-1),
        "gt_groups": [int((batch["batch_idx"] == i).sum()) for i in range(len(batch["img"]))],
    }
    torch.manual_seed(1)  # denoising-query noise
    with torch.no_grad():
        return model.predict(batch["img"], batch=targets)


class _Recorder:
    """Stands in for model.criterion and keeps the criterion's full loss dict (model.loss returns only three)."""

    def __init__(self, criterion: object) -> None:
        self.criterion = criterion
        self.losses: dict[str, torch.Tensor] = {}

    def __call__(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        self.losses = self.criterion(*args, **kwargs)
        return self.losses


def _rtdetr_losses(model: nn.Module, criterion: object, batch: dict, preds: tuple) -> dict[str, torch.Tensor]:
    recorder = _Recorder(criterion)
    model.criterion = recorder
    try:
        model.loss(batch, preds)
    finally:
        model.criterion = None
    return recorder.losses


# ---------------------------------------------------------------- YOLOv8 / YOLO11 (v8DetectionLoss)


def test_v8_weighted_cls_loss_matches_hand_computation(v8_model):
    batch = _batch()
    with torch.no_grad():
        preds = v8_model(batch["img"])
    weighted = weighted_criterion(v8_model, WEIGHTS)
    assert type(weighted).__name__ == "v8DetectionLoss"
    assert isinstance(weighted.bce, WeightedBCEWithLogitsLoss)
    assert weighted.bce.pos_weight.device == weighted.device
    assert weighted.class_weights is None and getattr(v8_model, "class_weights", None) is None  # not cls_pw
    _check_yolo_branch(weighted_criterion(v8_model, None), weighted, preds, batch, WEIGHTS)


@pytest.mark.parametrize("model_fixture", ["v8_model", "yolo26_model"])
def test_unit_weights_equal_unweighted_loss(model_fixture, request):
    model = request.getfixturevalue(model_fixture)
    batch = _batch()
    with torch.no_grad():
        preds = model(batch["img"])
    plain_loss, plain_items = weighted_criterion(model, None)(preds, batch)
    loss, items = weighted_criterion(model, ONES)(preds, batch)
    torch.testing.assert_close(loss, plain_loss)
    torch.testing.assert_close(items, plain_items)


def test_reapplying_replaces_instead_of_compounding(v8_model):
    batch = _batch()
    with torch.no_grad():
        preds = v8_model(batch["img"])
    criterion = apply_class_weights(weighted_criterion(v8_model, WEIGHTS), ONES)
    torch.testing.assert_close(criterion(preds, batch)[0], weighted_criterion(v8_model, None)(preds, batch)[0])


# ---------------------------------------------------------------- YOLO26 (E2ELoss)


def test_yolo26_both_e2e_branches_match_hand_computation(yolo26_model):
    batch = _batch()
    with torch.no_grad():
        preds = yolo26_model(batch["img"])
    plain, weighted = (
        weighted_criterion(yolo26_model, None),
        weighted_criterion(yolo26_model, WEIGHTS),
    )
    assert type(weighted).__name__ == "E2ELoss"
    _check_yolo_branch(plain.one2many, weighted.one2many, preds["one2many"], batch, WEIGHTS)
    _check_yolo_branch(plain.one2one, weighted.one2one, preds["one2one"], batch, WEIGHTS)

    # the combined E2E loss: only its cls component moves
    plain_loss, _ = weighted_criterion(yolo26_model, None)(preds, batch)
    loss, _ = weighted(preds, batch)
    torch.testing.assert_close(loss[[0, 2]], plain_loss[[0, 2]])
    assert float(loss[1]) != pytest.approx(float(plain_loss[1]), rel=1e-3)


# ---------------------------------------------------------------- RT-DETR (RTDETRDetectionLoss)


def test_rtdetr_unit_weights_equal_unweighted_loss(rtdetr_model):
    batch = _batch()
    preds = _rtdetr_preds(rtdetr_model, batch)
    plain = _rtdetr_losses(rtdetr_model, weighted_criterion(rtdetr_model, None), batch, preds)
    ones = _rtdetr_losses(rtdetr_model, weighted_criterion(rtdetr_model, ONES), batch, preds)
    torch.testing.assert_close(ones, plain)


def test_rtdetr_weights_change_every_class_loss_and_nothing_else(rtdetr_model):
    batch = _batch()
    preds = _rtdetr_preds(rtdetr_model, batch)
    weighted = weighted_criterion(rtdetr_model, WEIGHTS)
    assert isinstance(weighted.vfl, WeightedVarifocalLoss) and isinstance(weighted.fl, WeightedFocalLoss)
    plain = _rtdetr_losses(rtdetr_model, weighted_criterion(rtdetr_model, None), batch, preds)
    losses = _rtdetr_losses(rtdetr_model, weighted, batch, preds)

    class_keys = {k for k in plain if k.startswith("loss_class")}
    # main decoder output, auxiliary layers (encoder + earlier decoder layers), denoising main and auxiliary
    assert class_keys == {
        "loss_class",
        "loss_class_aux",
        "loss_class_dn",
        "loss_class_aux_dn",
    }
    for key in class_keys:
        assert float(losses[key]) != pytest.approx(float(plain[key]), rel=1e-4), key
    for key in set(plain) - class_keys:  # matching is unchanged, so the box losses are identical
        torch.testing.assert_close(losses[key], plain[key], rtol=0, atol=0, msg=key)


def test_rtdetr_vfl_term_matches_hand_computation(rtdetr_model):
    batch = _batch()
    preds = _rtdetr_preds(rtdetr_model, batch)
    plain_criterion = weighted_criterion(rtdetr_model, None)
    capture = plain_criterion.vfl = _CaptureVFL(plain_criterion.vfl.gamma, plain_criterion.vfl.alpha)
    plain = _rtdetr_losses(rtdetr_model, plain_criterion, batch, preds)
    losses = _rtdetr_losses(rtdetr_model, weighted_criterion(rtdetr_model, WEIGHTS), batch, preds)

    pred_score, gt_score, label = capture.calls[0]  # DETRLoss.forward computes the main output's loss first
    num_gts, nq = len(batch["cls"]), pred_score.shape[1]
    gain = plain_criterion.loss_gain["class"]
    x = pred_score.double()
    vfl_weight = capture.alpha * x.sigmoid().pow(capture.gamma) * (1 - label) + gt_score * label

    def hand(weights: torch.Tensor) -> float:
        vfl = (_hand_bce(pred_score, gt_score, weights) * vfl_weight).mean(1).sum()
        return float(vfl / (num_gts / nq) * gain)

    assert float(plain["loss_class"]) == pytest.approx(hand(ONES), rel=1e-5)
    assert float(losses["loss_class"]) == pytest.approx(hand(WEIGHTS), rel=1e-5)


def test_rtdetr_without_objects_is_unaffected(rtdetr_model):
    """With no objects RT-DETR uses the focal loss on all-zero labels: no positives, so pos_weight cannot matter."""
    batch = _batch(with_boxes=False)
    preds = _rtdetr_preds(rtdetr_model, batch)
    plain = _rtdetr_losses(rtdetr_model, weighted_criterion(rtdetr_model, None), batch, preds)
    losses = _rtdetr_losses(rtdetr_model, weighted_criterion(rtdetr_model, WEIGHTS), batch, preds)
    assert float(plain["loss_class"]) > 0
    torch.testing.assert_close(losses, plain)


def test_weighted_focal_and_varifocal_losses_match_hand_formulas():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 3, generator=generator) * 3
    label = F.one_hot(torch.randint(0, 4, (2, 7), generator=generator), 4)[..., :3].float()
    gt_score = torch.rand(2, 7, 1, generator=generator) * label
    assert label.sum() > 0

    focal = WeightedFocalLoss(1.5, 0.25, WEIGHTS)
    p = logits.double().sigmoid()
    p_t = label * p + (1 - label) * (1 - p)
    alpha = label * 0.25 + (1 - label) * 0.75
    expected = (_hand_bce(logits, label, WEIGHTS) * (1 - p_t) ** 1.5 * alpha).mean(1).sum()
    assert float(focal(logits, label)) == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(
        WeightedFocalLoss(1.5, 0.25, ONES)(logits, label),
        FocalLoss(1.5, 0.25)(logits, label),
    )

    vfl = WeightedVarifocalLoss(2.0, 0.75, WEIGHTS)
    weight = 0.75 * p.pow(2.0) * (1 - label) + gt_score * label
    expected = (_hand_bce(logits, gt_score, WEIGHTS) * weight).mean(1).sum()
    assert float(vfl(logits, gt_score, label)) == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(
        WeightedVarifocalLoss(2.0, 0.75, ONES)(logits, gt_score, label),
        VarifocalLoss(2.0, 0.75)(logits, gt_score, label),
    )


# ---------------------------------------------------------------- deepcopy / pickle


def test_weighted_criteria_survive_deepcopy_and_pickle(v8_model, yolo26_model, rtdetr_model):
    batch = _batch()
    for model in (v8_model, yolo26_model):
        with torch.no_grad():
            preds = model(batch["img"])
        criterion = weighted_criterion(model, WEIGHTS)
        expected = criterion(preds, batch)[0]
        for clone in (copy.deepcopy(criterion), pickle.loads(pickle.dumps(criterion))):
            torch.testing.assert_close(clone(preds, batch)[0], expected)

    preds = _rtdetr_preds(rtdetr_model, batch)
    criterion = weighted_criterion(rtdetr_model, WEIGHTS)
    expected = _rtdetr_losses(rtdetr_model, criterion, batch, preds)
    for clone in (copy.deepcopy(criterion), pickle.loads(pickle.dumps(criterion))):
        assert isinstance(clone.vfl, WeightedVarifocalLoss)
        torch.testing.assert_close(_rtdetr_losses(rtdetr_model, clone, batch, preds), expected)


# ---------------------------------------------------------------- counts and inverse-frequency weights


def test_inverse_frequency_weights_on_known_counts():
    np.testing.assert_allclose(inverse_frequency_weights(np.array([5000, 200, 3000])), [1.0, 25.0, 5 / 3])
    np.testing.assert_allclose(
        inverse_frequency_weights(np.array([5000, 200, 3000]), power=0.5),
        [1.0, 5.0, np.sqrt(5 / 3)],
    )
    np.testing.assert_allclose(
        inverse_frequency_weights(np.array([5000, 200, 3000]), power=0.0),
        [1.0, 1.0, 1.0],
    )
    # a class without instances gets the mean weight of the present classes
    np.testing.assert_allclose(inverse_frequency_weights(np.array([100, 0, 50, 25])), [1.0, 7 / 3, 2.0, 4.0])


def test_resolve_inverse_frequency_and_explicit_weights():
    weights = resolve_class_weights("inverse_frequency", NAMES, counts=np.array([5000, 200, 3000]))
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, torch.tensor([1.0, 25.0, 5 / 3]))
    assert resolve_class_weights(None, NAMES) is None
    torch.testing.assert_close(resolve_class_weights([0.5, 4, 2.0], NAMES), WEIGHTS)
    torch.testing.assert_close(resolve_class_weights(np.array([0.5, 4.0, 2.0]), NAMES), WEIGHTS)
    torch.testing.assert_close(
        resolve_class_weights({"triangle": 3.0, 0: 0.5}, NAMES),
        torch.tensor([0.5, 1.0, 3.0]),
    )


def test_class_instance_counts_from_labels():
    labels = [
        {"cls": np.array([[0.0], [2.0], [2.0]], dtype=np.float32)},
        {"cls": np.zeros((0, 1), dtype=np.float32)},
        {"cls": np.array([[2.0]], dtype=np.float32)},
    ]
    np.testing.assert_array_equal(class_instance_counts(labels, nc=4), [1, 0, 3, 0])
    with pytest.raises(ConfigurationError, match=r"class_weights.*class index 5"):
        class_instance_counts([{"cls": np.array([[5.0]])}], nc=3)


def test_class_instance_counts_from_a_dataset(tiny_data_yaml: Path):
    from yolo_lightning import YOLODataModule

    datamodule = YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4, workers=0)
    datamodule.prepare_data()
    datamodule.setup("fit")
    counts = class_instance_counts(datamodule.train_dataset.labels, nc=4)

    expected = np.zeros(4, dtype=np.int64)  # straight from the label files
    for label_file in (tiny_data_yaml.parent / "labels" / "train").glob("*.txt"):
        for line in label_file.read_text().splitlines():
            expected[int(line.split()[0])] += 1
    assert expected.sum() > 0
    np.testing.assert_array_equal(counts, expected)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("class_weights", "kwargs", "pattern"),
    [
        ([1.0, 2.0], {}, r"got 2 weights, expected 3.*'square'.*'circle'.*'triangle'"),
        (
            [1.0, -1.0, 2.0],
            {},
            r"class_weights\[1\] \('circle'\) = -1\.0 must be a finite number > 0",
        ),
        (
            [1.0, 1.0, float("nan")],
            {},
            r"class_weights\[2\] \('triangle'\) = nan must be a finite number > 0",
        ),
        (
            [float("inf"), 1.0, 1.0],
            {},
            r"class_weights\[0\] \('square'\) = inf must be",
        ),
        ([1.0, 0.0, 1.0], {}, r"class_weights\[1\] \('circle'\) = 0\.0 must be"),
        ([1.0, "heavy", 1.0], {}, r"class_weights\[1\] \('circle'\) = 'heavy' must be"),
        ({"hexagon": 2.0}, {}, r"class_weights has unknown class 'hexagon'"),
        (
            {"circle": 2.0, 1: 3.0},
            {},
            r"class_weights names class 1 \('circle'\) twice",
        ),
        (
            "inverse_freq",
            {},
            r"class_weights='inverse_freq' is not a known scheme.*'inverse_frequency'",
        ),
        ("inverse_frequency", {}, r"class_weights='inverse_frequency' needs .*counts"),
        (
            "inverse_frequency",
            {"counts": np.array([1, 2])},
            r"class_weights='inverse_frequency'.*counts for 2",
        ),
        (
            "inverse_frequency",
            {"counts": np.zeros(3)},
            r"class_weights='inverse_frequency'.*zero instances",
        ),
        (
            "inverse_frequency",
            {"counts": np.ones(3), "power": -1.0},
            r"class_weights=.*power=-1\.0 must be",
        ),
        (
            "inverse_frequency",
            {"counts": np.ones(3), "power": float("nan")},
            r"class_weights=.*power=nan must be",
        ),
        (2.0, {}, r"class_weights=2\.0 must be None, 'inverse_frequency', a list"),
    ],
)
def test_bad_class_weights_raise_configuration_errors(class_weights, kwargs, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        resolve_class_weights(class_weights, NAMES, **kwargs)


def test_apply_rejects_unsupported_criteria_and_bad_tensors(v8_model):
    with pytest.raises(ConfigurationError, match=r"class_weights cannot be applied to a dict criterion"):
        apply_class_weights({}, WEIGHTS)
    with pytest.raises(ConfigurationError, match=r"class_weights has shape \(2,\), expected \(3,\)"):
        weighted_criterion(v8_model, torch.ones(2))
    with pytest.raises(ConfigurationError, match=r"class_weights\[1\] = nan must be"):
        weighted_criterion(v8_model, torch.tensor([1.0, float("nan"), 1.0]))


# ---------------------------------------------------------------- YOLOModule(class_weights=...) end to end


class _RecordingUnpickler(pickle.Unpickler):
    """Records the module of every class a pickle references."""

    modules: set[str] = set()

    def find_class(self, module: str, name: str):
        self.modules.add(module)
        return super().find_class(module, name)


def _label_file_counts(data_yaml: Path, nc: int) -> np.ndarray:
    """Instances per class read straight from the training label files (independent of Ultralytics' dataset)."""
    counts = np.zeros(nc)
    for label_file in (data_yaml.parent / "labels" / "train").glob("*.txt"):
        for line in label_file.read_text().splitlines():
            counts[int(line.split()[0])] += 1
    return counts


def test_yolomodule_trains_with_inverse_frequency_weights_and_exports_plain_weights(tiny_data_yaml, tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from yolo_lightning import YOLODataModule, YOLOModule
    from yolo_lightning.callbacks import UltralyticsCheckpoint

    module = YOLOModule(model="yolo26n.yaml", class_weights="inverse_frequency", class_weights_power=0.5)
    logger = CSVLogger(str(tmp_path / "logs"))
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=logger, enable_progress_bar=False, num_sanity_val_steps=0,
        callbacks=[UltralyticsCheckpoint(dirpath=tmp_path / "weights")], default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=8, workers=0))

    counts = _label_file_counts(tiny_data_yaml, 4)
    assert (counts > 0).all() and len(set(counts)) > 1  # an imbalanced dataset, every class present
    expected = torch.tensor((counts.max() / counts) ** 0.5, dtype=torch.float32)
    criterion = module.model.criterion
    for branch in (criterion.one2many, criterion.one2one):
        torch.testing.assert_close(branch.bce.pos_weight.cpu(), expected)
    hparams = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert all(f"class_weights/{name}" in hparams for name in module.model.names.values())

    _RecordingUnpickler.modules = set()
    recording_pickle = type("RecordingPickle", (), {"Unpickler": _RecordingUnpickler, "load": pickle.load})
    torch.load(tmp_path / "weights" / "best.pt", weights_only=False, pickle_module=recording_pickle)
    foreign = {m for m in _RecordingUnpickler.modules if m.split(".")[0] in {"yolo_lightning", "lightning", "__main__"}}
    assert "ultralytics.nn.tasks" in _RecordingUnpickler.modules and not foreign  # plain Ultralytics classes only
    best = torch.load(tmp_path / "weights" / "best.pt", weights_only=False)
    assert best["model"].criterion is None and not hasattr(best["model"], "class_weights")


@pytest.mark.parametrize(
    ("class_weights", "pattern"),
    [
        ([1.0, 2.0], r"got 2 weights, expected 4"),
        ([1.0, float("nan"), 1.0, 1.0], r"class_weights\[1\] \('circle'\) = nan"),
    ],
)
def test_yolomodule_rejects_bad_weights_before_training(tiny_data_yaml, tmp_path, class_weights, pattern):
    import lightning as L

    from yolo_lightning import YOLODataModule, YOLOModule

    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path)
    )
    with pytest.raises(ConfigurationError, match=pattern):
        trainer.fit(
            YOLOModule(class_weights=class_weights),
            YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=8, workers=0),
        )
    assert trainer.global_step == 0


def test_class_weights_power_needs_inverse_frequency():
    from yolo_lightning import YOLOModule

    with pytest.raises(ConfigurationError, match="class_weights_power=0.5 only applies"):
        YOLOModule(class_weights=[1.0, 2.0], class_weights_power=0.5)
