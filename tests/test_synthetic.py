"""The embedded synthetic dataset: layout, determinism, label statistics, caching and crash safety (no training)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolo_lightning import synthetic
from yolo_lightning.synthetic import (
    _FORMAT_VERSION,
    SYNTHETIC_NAMES,
    synthetic_data_yaml,
)

SMALL = {"n_train": 16, "n_val": 8, "imgsz": 64, "seed": 0}


def _files(dataset_dir: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every image and label file of a dataset."""
    return {
        str(p.relative_to(dataset_dir)): p.read_bytes()
        for sub in ("images", "labels")
        for p in sorted((dataset_dir / sub).rglob("*"))
        if p.suffix in {".png", ".txt"}
    }


def _labels(dataset_dir: Path, split: str) -> list[np.ndarray]:
    """Per image of `split`, its label rows as an (N, 5) float array."""
    files = sorted((dataset_dir / "labels" / split).glob("*.txt"))
    return [np.array([line.split() for line in f.read_text().splitlines()], dtype=float).reshape(-1, 5) for f in files]


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset at its default parameters (what the demo trains on)."""
    return synthetic_data_yaml(tmp_path_factory.mktemp("default")).parent


def test_names_four_classes_last_rare() -> None:
    assert SYNTHETIC_NAMES == {0: "square", 1: "circle", 2: "triangle", 3: "star"}


def test_layout_and_data_yaml(tmp_path: Path) -> None:
    data_yaml = synthetic_data_yaml(tmp_path, **SMALL)
    d = data_yaml.parent
    assert d.parent == tmp_path.resolve() and d.name == f"synthetic-v{_FORMAT_VERSION}-n16-v8-s64-seed0"
    for split, n in (("train", 16), ("val", 8)):
        images = sorted(p.stem for p in (d / "images" / split).glob("*.png"))
        labels = sorted(p.stem for p in (d / "labels" / split).glob("*.txt"))
        assert len(images) == n and images == labels
    data = yaml.safe_load(data_yaml.read_text())
    assert data == {"path": str(d), "train": "images/train", "val": "images/val", "names": SYNTHETIC_NAMES}
    assert Path(data["path"]).is_absolute()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_images_have_requested_size(tmp_path: Path) -> None:
    import cv2

    d = synthetic_data_yaml(tmp_path, n_train=2, n_val=1, imgsz=96).parent
    image = cv2.imread(str(next((d / "images" / "train").glob("*.png"))))
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8


def test_loadable_by_ultralytics(tmp_path: Path) -> None:
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(synthetic_data_yaml(tmp_path, **SMALL)))
    assert data["nc"] == len(SYNTHETIC_NAMES) and data["names"] == SYNTHETIC_NAMES
    assert Path(data["train"]).is_dir() and Path(data["val"]).is_dir()


def test_deterministic_across_roots(tmp_path: Path) -> None:
    a = synthetic_data_yaml(tmp_path / "a", **SMALL)
    b = synthetic_data_yaml(tmp_path / "b", **SMALL)
    assert _files(a.parent) == _files(b.parent)
    assert a.read_text().replace(str(a.parent), "") == b.read_text().replace(str(b.parent), "")


def test_parameters_change_folder_and_content(tmp_path: Path) -> None:
    base = synthetic_data_yaml(tmp_path, **SMALL).parent
    other_seed = synthetic_data_yaml(tmp_path, **{**SMALL, "seed": 1}).parent
    other_size = synthetic_data_yaml(tmp_path, **{**SMALL, "imgsz": 96}).parent
    assert len({base, other_seed, other_size}) == 3
    assert _files(base) != _files(other_seed)


def test_labels_normalized_and_inside_image(default_dataset: Path) -> None:
    rows = np.concatenate([r for split in ("train", "val") for r in _labels(default_dataset, split)])
    cls, xywh = rows[:, 0], rows[:, 1:]
    assert np.all(cls == cls.round()) and cls.min() >= 0 and cls.max() < len(SYNTHETIC_NAMES)
    assert np.all((xywh > 0) & (xywh <= 1))
    x, y, w, h = xywh.T
    assert np.all(x - w / 2 >= -1e-6) and np.all(x + w / 2 <= 1 + 1e-6)
    assert np.all(y - h / 2 >= -1e-6) and np.all(y + h / 2 <= 1 + 1e-6)
    assert w.min() > 0.2 and max(w.max(), h.max()) <= 0.5 + 1e-6  # sizes stay in the documented range


def test_objects_per_image(default_dataset: Path) -> None:
    counts = Counter(len(r) for r in _labels(default_dataset, "train"))
    assert set(counts) <= {0, 1, 2, 3} and counts[1] and counts[2] and counts[3]


def test_rare_class_present_but_rare(default_dataset: Path) -> None:
    for split in ("train", "val"):
        counts = Counter(int(c) for r in _labels(default_dataset, split) for c in r[:, 0])
        rare = max(SYNTHETIC_NAMES)
        assert counts[rare] >= 1
        assert 0.04 <= counts[rare] / sum(counts.values()) <= 0.1
        assert all(counts[c] > 2 * counts[rare] for c in SYNTHETIC_NAMES if c != rare)


def test_background_images_present(default_dataset: Path) -> None:
    train = _labels(default_dataset, "train")
    empty = sum(len(r) == 0 for r in train)
    assert 1 <= empty <= 0.1 * len(train)
    assert any(len(r) == 0 for r in _labels(default_dataset, "val"))


def test_reuse_does_not_rewrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = synthetic_data_yaml(tmp_path, **SMALL)
    image = next((first.parent / "images" / "train").glob("*.png"))
    stamps = (first.stat().st_mtime_ns, image.stat().st_mtime_ns)

    def fail(*args: object) -> None:
        raise AssertionError("dataset was regenerated")

    monkeypatch.setattr(synthetic, "_write_dataset", fail)
    assert synthetic_data_yaml(tmp_path, **SMALL) == first
    assert (first.stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps


def test_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_LIGHTNING_CACHE", str(tmp_path / "cache"))
    assert synthetic_data_yaml(**SMALL).parent.parent == (tmp_path / "cache").resolve()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_train": 0}, "n_train"),
        ({"n_val": 0}, "n_val"),
        ({"n_val": -3}, "n_val"),
        ({"imgsz": 31}, "imgsz"),
        ({"imgsz": 64.0}, "imgsz"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        synthetic_data_yaml(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir()), "nothing may be written for invalid arguments"


def test_leftover_temp_folder_from_crashed_writer(tmp_path: Path) -> None:
    name = f"synthetic-v{_FORMAT_VERSION}-n16-v8-s64-seed0"
    crashed = tmp_path / f".{name}.tmp-99999-deadbeef"
    (crashed / "images" / "train").mkdir(parents=True)
    (crashed / "images" / "train" / "00000.png").write_bytes(b"half a png")
    data_yaml = synthetic_data_yaml(tmp_path, **SMALL)
    assert data_yaml.parent.name == name and data_yaml.is_file()
    assert len(list((data_yaml.parent / "images" / "train").glob("*.png"))) == 16


def test_incomplete_final_folder_is_rebuilt(tmp_path: Path) -> None:
    final = tmp_path / f"synthetic-v{_FORMAT_VERSION}-n16-v8-s64-seed0"
    (final / "images" / "train").mkdir(parents=True)  # no data.yaml: never finished
    (final / "images" / "train" / "junk.png").write_bytes(b"")
    data_yaml = synthetic_data_yaml(tmp_path, **SMALL)
    assert data_yaml.is_file() and not (final / "images" / "train" / "junk.png").exists()
    assert _files(final) == _files(synthetic_data_yaml(tmp_path / "ref", **SMALL).parent)


def test_lost_race_uses_the_winners_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write = synthetic._write_dataset

    def other_rank_wins_meanwhile(directory: Path, final: Path, *args: object) -> None:
        write(final, final, *args)  # another process finishes first...
        (final / "winner").touch()
        write(directory, final, *args)  # ...while this one is still writing its own copy

    monkeypatch.setattr(synthetic, "_write_dataset", other_rank_wins_meanwhile)
    data_yaml = synthetic_data_yaml(tmp_path, **SMALL)
    assert (data_yaml.parent / "winner").exists()
    assert [p.name for p in tmp_path.iterdir()] == [data_yaml.parent.name], "temporary folder left behind"


def test_generation_is_fast(tmp_path: Path) -> None:
    import time

    start = time.perf_counter()
    synthetic_data_yaml(tmp_path)
    assert time.perf_counter() - start < 2.0
    assert os.path.getsize(tmp_path / f"synthetic-v{_FORMAT_VERSION}-n128-v32-s64-seed0" / "data.yaml") > 0
