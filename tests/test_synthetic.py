"""The embedded synthetic dataset: layout, determinism, label statistics, caching, crash safety and the per-task label
formats, loaded through Ultralytics itself (no training)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from yolo_lightning import synthetic
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.synthetic import (
    _FORMAT_VERSION,
    SYNTHETIC_NAMES,
    SYNTHETIC_TASKS,
    synthetic_data,
    synthetic_data_yaml,
    synthetic_sizes,
    synthetic_source,
)

SMALL = {"n_train": 16, "n_val": 8, "imgsz": 64, "seed": 0}
TINY = {"n_train": 8, "n_val": 4, "imgsz": 64, "seed": 0}
YOLO_TASKS = ("detect", "segment", "pose", "obb")


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


@pytest.mark.parametrize(
    ("data", "sizes"),
    [("synthetic", (128, 32)), ("synthetic256", (256, 64)), ("synthetic8", (8, 2)), ("synthetic.yaml", None),
     ("my/synthetic", None), ("Synthetic256", None), (Path("synthetic"), None)],
)  # fmt: skip
def test_synthetic_names_give_their_sizes(data: str | Path, sizes: tuple[int, int] | None) -> None:
    """``data="synthetic<N>"`` names N training and N // 4 validation images (as coco8/coco128); anything else is a path."""
    assert synthetic_sizes(data) == sizes


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_synthetic_source_writes_the_named_size_in_the_task_format(task: str, tmp_path: Path, monkeypatch) -> None:
    """``synthetic8`` for each task: that task's dataset with 8 training and 2 validation images; a path is unchanged."""
    monkeypatch.setenv("YOLO_LIGHTNING_CACHE", str(tmp_path))
    source = Path(synthetic_source("synthetic8", task))
    assert source == synthetic_data(task, tmp_path, n_train=8, n_val=2, imgsz=64, seed=0)
    assert synthetic_source("my/data.yaml", task) == "my/data.yaml"


@pytest.mark.parametrize("data", ["synthetic0", "synthetic3"])
def test_synthetic_name_too_small_is_one_clear_error(data: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"data='{data}'.*N >= 4"):
        synthetic_sizes(data)


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


# ---------------------------------------------------------------------------------------------------------------------
# Tasks: the same images, one label writer per task


def _rows(dataset_dir: Path, split: str) -> list[list[np.ndarray]]:
    """Per image of `split`, its label rows as float arrays (any number of columns)."""
    files = sorted((dataset_dir / "labels" / split).glob("*.txt"))
    return [[np.array(line.split(), dtype=float) for line in f.read_text().splitlines()] for f in files]


def _xyxy(row: np.ndarray) -> np.ndarray:
    """The normalized xyxy box of a `cls x y w h ...` row."""
    x, y, w, h = row[1:5]
    return np.array([x - w / 2, y - h / 2, x + w / 2, y + h / 2])


@pytest.fixture(scope="module")
def task_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Task -> what `synthetic_data` returned for the TINY parameters (all in one root)."""
    root = tmp_path_factory.mktemp("tasks")
    return {task: synthetic_data(task, root, **TINY) for task in SYNTHETIC_TASKS}


def test_tasks_folders_and_return_values(task_data: dict[str, Path]) -> None:
    assert SYNTHETIC_TASKS == ("detect", "segment", "pose", "obb", "semantic", "depth", "classify")
    suffix = f"v{_FORMAT_VERSION}-n8-v4-s64-seed0"
    root = task_data["detect"].parent.parent
    for task in YOLO_TASKS:
        assert task_data[task].name == "data.yaml"
        expected = f"synthetic-{suffix}" if task == "detect" else f"synthetic-{task}-{suffix}"  # detect: as before
        assert task_data[task].parent.name == expected
    assert task_data["classify"] == root / f"synthetic-classify-{suffix}" and task_data["classify"].is_dir()
    assert (task_data["classify"] / ".complete").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_detect_is_synthetic_data_yaml(tmp_path: Path, task_data: dict[str, Path]) -> None:
    assert synthetic_data("detect", tmp_path, **SMALL) == synthetic_data_yaml(tmp_path, **SMALL)
    reference = synthetic_data_yaml(tmp_path / "ref", **TINY)
    assert _files(task_data["detect"].parent) == _files(reference.parent)  # byte-identical images and labels


def test_same_images_for_every_task(task_data: dict[str, Path]) -> None:
    def images(d: Path) -> dict[str, bytes]:
        return {k: v for k, v in _files(d).items() if k.endswith(".png")}

    detect = images(task_data["detect"].parent)
    assert len(detect) == 12
    for task in ("segment", "pose", "obb", "semantic", "depth"):
        assert images(task_data[task].parent) == detect


def test_semantic_masks_hold_the_objects_of_the_labels_over_a_background_class(task_data: dict[str, Path]) -> None:
    config = yaml.safe_load(task_data["semantic"].read_text())
    assert config["masks_dir"] == "masks" and config["names"] == {**SYNTHETIC_NAMES, 4: "background"}
    for mask_file in sorted((task_data["semantic"].parent / "masks" / "train").glob("*.png")):
        mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
        rows = (task_data["segment"].parent / "labels" / "train" / f"{mask_file.stem}.txt").read_text().split("\n")
        objects = {int(row.split()[0]) for row in rows if row}
        assert mask.dtype == np.uint8 and mask.shape == (64, 64)
        assert set(np.unique(mask)) - {4} <= objects  # a shape may be covered by a later one
        assert (mask == 4).sum() > 0.25 * mask.size  # the background is the common class


def test_depth_maps_are_a_floor_with_nearer_objects(task_data: dict[str, Path]) -> None:
    config = yaml.safe_load(task_data["depth"].read_text())
    assert config["names"] == {0: "depth"} and config["depth_scale"] == 1000
    for depth_file in sorted((task_data["depth"].parent / "depth" / "train").glob("*.png")):
        depth = cv2.imread(str(depth_file), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and depth.shape == (64, 64)
        assert 2400 <= depth.min() and depth.max() <= 8000  # metres x 1000: objects 2.4-4 m, the floor 4-8 m
        assert depth[0].max() == 8000 and depth[-1].min() <= 4000  # the top row is farthest


def test_unknown_task_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="detect, segment, pose, obb, semantic, depth, classify") as error:
        synthetic_data("panoptic", tmp_path, **TINY)
    assert "'panoptic'" in str(error.value)
    assert not any(tmp_path.iterdir()), "nothing may be written for an unknown task"


def test_pose_data_yaml(task_data: dict[str, Path]) -> None:
    data = yaml.safe_load(task_data["pose"].read_text())
    assert data["names"] == SYNTHETIC_NAMES and data["kpt_shape"] == [4, 3] and data["flip_idx"] == [0, 3, 2, 1]
    assert data["kpt_names"] == {c: ["top", "right", "bottom", "left"] for c in SYNTHETIC_NAMES}
    assert "flipud" not in data
    for task in ("detect", "segment", "obb"):  # the other data.yaml files are detect's
        other = yaml.safe_load(task_data[task].read_text())
        assert other == {"path": str(task_data[task].parent), "train": "images/train", "val": "images/val",
                         "names": SYNTHETIC_NAMES}  # fmt: skip


@pytest.mark.parametrize("task", YOLO_TASKS)
def test_loadable_by_ultralytics_per_task(task: str, task_data: dict[str, Path]) -> None:
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset, load_dataset_cache_file
    from ultralytics.utils import DEFAULT_CFG

    data = check_det_dataset(str(task_data[task]))
    assert data["names"] == SYNTHETIC_NAMES
    detect = task_data["detect"].parent
    for split in ("train", "val"):
        dataset = build_yolo_dataset(
            get_cfg(DEFAULT_CFG, {"task": task, "imgsz": 64}), data[split], batch=4, data=data, mode="val", rect=True
        )
        cache = load_dataset_cache_file(Path(data[split].replace("images", "labels")).with_suffix(".cache"))
        nf, nm, ne, nc, n = cache["results"]
        assert cache["msgs"] == [] and (nm, nc) == (0, 0) and n == len(dataset) == TINY[f"n_{split}"]
        counts = sorted(len(r) for r in _rows(detect, split))
        assert sorted(len(lb["cls"]) for lb in dataset.labels) == counts  # no object dropped
    item = dataset[0]
    n = len(item["cls"])
    assert n > 0
    if task == "detect":
        assert item["bboxes"].shape == (n, 4)
    elif task == "segment":
        mask_size = tuple(d // 4 for d in item["img"].shape[-2:])  # the image (rect-padded) over mask_ratio
        assert item["masks"].shape[-2:] == mask_size and item["masks"].max() > 0
    elif task == "pose":
        assert item["keypoints"].shape == (n, 4, 3) and item["bboxes"].shape == (n, 4)
    else:
        assert item["bboxes"].shape == (n, 5)  # xywhr
        assert any(dataset[i]["bboxes"][:, 4].abs().max() > 0.01 for i in range(len(dataset)))  # some rotated


def test_segment_polygon_box_is_detect_box(task_data: dict[str, Path]) -> None:
    detect, segment = task_data["detect"].parent, task_data["segment"].parent
    for split in ("train", "val"):
        for boxes, polygons in zip(_rows(detect, split), _rows(segment, split), strict=True):
            assert len(boxes) == len(polygons)
            for box, polygon in zip(boxes, polygons):
                points = polygon[1:].reshape(-1, 2)
                assert polygon[0] == box[0] and len(points) in {3, 4, 10, 64}
                assert np.all((points >= 0) & (points <= 1))
                assert np.abs(np.concatenate([points.min(0), points.max(0)]) - _xyxy(box)).max() * 64 <= 1


def test_obb_is_a_minimal_rectangle_around_the_outline(task_data: dict[str, Path]) -> None:
    import cv2

    detect, segment, obb = (task_data[t].parent for t in ("detect", "segment", "obb"))
    tilted = 0
    for split in ("train", "val"):
        for boxes, polygons, rects in zip(_rows(detect, split), _rows(segment, split), _rows(obb, split), strict=True):
            for box, polygon, rect in zip(boxes, polygons, rects, strict=True):
                assert rect[0] == box[0] and len(rect) == 9 and np.all((rect[1:] >= 0) & (rect[1:] <= 1))
                corners, outline = rect[1:].reshape(4, 2) * 64, (polygon[1:].reshape(-1, 2) * 64).astype(np.float32)
                sides = np.roll(corners, -1, 0) - corners
                assert np.abs((sides * np.roll(sides, -1, 0)).sum(1)).max() < 1e-2  # right angles
                for point in outline:
                    assert cv2.pointPolygonTest(corners.astype(np.float32), tuple(map(float, point)), True) >= -1e-2
                area = np.linalg.norm(sides[0]) * np.linalg.norm(sides[1])
                w, h = (_xyxy(box)[2:] - _xyxy(box)[:2]) * 64
                assert area <= w * h + 1
                assert area >= np.prod(cv2.minAreaRect(outline)[1]) - 1e-2  # never below the true minimum
                tilted += abs(sides[0, 1]) > 0.5
    assert tilted > 0


def _shape(cls: int, points: np.ndarray) -> synthetic._Shape:
    """A drawn object of class `cls` with outline `points` (pixels)."""
    return synthetic._Shape(cls, points, np.concatenate([points.min(0), points.max(0)]))


def test_obb_orientation_is_canonical_and_inside_the_image() -> None:
    triangle = synthetic._outline(np.random.default_rng(0), 2, 20.0)  # apex up, tilted at most 15 degrees
    base = triangle[1] - triangle[2]  # bottom right - bottom left
    for offset in (np.array([32.0, 32.0]), -triangle.min(0)):  # in the middle, and in the top left corner
        corners = synthetic._oriented_box(_shape(2, triangle + offset), 64)
        assert corners.min() >= -1e-6 and corners.max() <= 64 + 1e-6
        if offset[0] == 32.0:  # room enough: the minimum, along the base (not one of the other two equal ones)
            side = corners[1] - corners[0]
            assert abs(side[0] * base[1] - side[1] * base[0]) < 1e-6 * np.linalg.norm(side) * np.linalg.norm(base)


def test_pose_keypoints_are_extreme_points(task_data: dict[str, Path]) -> None:
    detect, pose = task_data["detect"].parent, task_data["pose"].parent
    for split in ("train", "val"):
        for boxes, rows in zip(_rows(detect, split), _rows(pose, split), strict=True):
            for box, row in zip(boxes, rows, strict=True):
                assert len(row) == 5 + 4 * 3 and np.array_equal(row[:5], box)
                x1, y1, x2, y2 = _xyxy(box)
                (tx, ty, tv), (rx, ry, rv), (bx, by, bv), (lx, ly, lv) = row[5:].reshape(4, 3)
                assert np.allclose([ty, rx, by, lx], [y1, x2, y2, x1], atol=2e-6)
                assert all(x1 - 1e-6 <= x <= x2 + 1e-6 for x in (tx, bx))
                assert all(y1 - 1e-6 <= y <= y2 + 1e-6 for y in (ry, ly))
                assert {tv, rv, bv, lv} <= {1.0, 2.0}


def test_pose_visibility_is_1_where_a_later_shape_covers_the_point(task_data: dict[str, Path]) -> None:
    import cv2

    pose, segment = task_data["pose"].parent, task_data["segment"].parent
    covered = 0
    for split in ("train", "val"):
        for rows, polygons in zip(_rows(pose, split), _rows(segment, split), strict=True):
            outlines = [(p[1:].reshape(-1, 2) * 64).astype(np.float32) for p in polygons]
            for k, row in enumerate(rows):
                for x, y, v in row[5:].reshape(4, 3):
                    distances = [cv2.pointPolygonTest(o, (x * 64, y * 64), True) for o in outlines[k + 1 :]]
                    if all(abs(d) > 1e-3 for d in distances):  # not on a later outline (label rounding could flip it)
                        assert (v == 1) == any(d > 0 for d in distances)
                    covered += v == 1
    assert covered > 0  # the case occurs in the data


def test_pose_visibility_constructed() -> None:
    square = np.array([[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0]])  # top: (10, 10), first in a tie
    circle = 6 * np.stack([np.cos(a := 2 * np.pi * np.arange(64) / 64), np.sin(a)], 1) + [10.0, 10.0]
    shapes = [_shape(0, square), _shape(1, circle)]
    square_row, circle_row = (np.array(r.split(), dtype=float) for r in synthetic._pose_label(shapes, 64).splitlines())
    assert list(square_row[7::3]) == [1, 2, 2, 1]  # top (10, 10) and left (10, 10) lie under the later circle
    assert list(circle_row[7::3]) == [2, 2, 2, 2]  # nothing is drawn after the circle
    square_row = np.array(synthetic._pose_label(shapes[::-1], 64).splitlines()[1].split(), dtype=float)
    assert list(square_row[7::3]) == [2, 2, 2, 2]  # drawn last: on top of the circle


def test_classify_loadable_by_ultralytics(task_data: dict[str, Path]) -> None:
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import ClassificationDataset
    from ultralytics.data.utils import check_cls_dataset
    from ultralytics.utils import DEFAULT_CFG

    folder = task_data["classify"]
    data = check_cls_dataset(str(folder))
    assert data["nc"] == 4 and data["names"] == dict(enumerate(sorted(SYNTHETIC_NAMES.values())))  # alphabetical
    assert data["train"] == folder / "train" and data["val"] == folder / "val"
    dataset = ClassificationDataset(root=str(folder / "train"), args=get_cfg(DEFAULT_CFG, {"imgsz": 64}), augment=False)
    assert len(dataset) == len(list((folder / "train").rglob("*.png")))
    item = dataset[0]
    assert tuple(item["img"].shape) == (3, 64, 64) and item["cls"] in range(4)


@pytest.mark.parametrize("sizes", [TINY, SMALL, {}], ids=["tiny", "small", "default"])
def test_classify_crops_match_detect_labels(tmp_path: Path, sizes: dict) -> None:
    import cv2

    folder = synthetic_data("classify", tmp_path, **sizes)
    detect = synthetic_data_yaml(tmp_path, **sizes).parent
    imgsz = sizes.get("imgsz", 64)
    for split in ("train", "val"):
        rows = _labels(detect, split)
        expected = Counter(SYNTHETIC_NAMES[int(c)] for r in rows for c in r[:, 0])
        crops = {name: sorted((folder / split / name).glob("*.png")) for name in SYNTHETIC_NAMES.values()}
        assert {name: len(files) for name, files in crops.items()} == {name: expected[name] for name in crops}
        assert all(crops.values()), f"a class has no {split} crop"
        for name, files in crops.items():
            for file in files[:3]:
                image, k = file.stem.split("_")
                x1, y1, x2, y2 = _xyxy(np.concatenate([[0], rows[int(image)][int(k), 1:]])) * imgsz
                assert SYNTHETIC_NAMES[int(rows[int(image)][int(k), 0])] == name
                height, width = cv2.imread(str(file)).shape[:2]  # the box, padded by 10% a side unless clipped
                assert x2 - x1 <= width <= 1.2 * (x2 - x1) + 2 and y2 - y1 <= height <= 1.2 * (y2 - y1) + 2


def test_classify_reuse_and_incomplete_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / f"synthetic-classify-v{_FORMAT_VERSION}-n8-v4-s64-seed0"
    (final / "train" / "star").mkdir(parents=True)  # no .complete: an unfinished writer's debris
    (final / "train" / "star" / "junk.png").write_bytes(b"")
    assert synthetic_data("classify", tmp_path, **TINY) == final
    assert not (final / "train" / "star" / "junk.png").exists() and (final / ".complete").is_file()

    def fail(*args: object) -> None:
        raise AssertionError("dataset was regenerated")

    monkeypatch.setattr(synthetic, "_write_dataset", fail)
    assert synthetic_data("classify", tmp_path, **TINY) == final
