"""Deterministic synthetic dataset of simple shapes (square, circle, triangle, rare star) for every Ultralytics task.

All tasks share the same images (the same random draws); only the label writer differs per task.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import yaml

from yolo_lightning.errors import ConfigurationError

__all__ = [
    "SYNTHETIC_NAMES", "SYNTHETIC_TASKS", "synthetic_data", "synthetic_data_yaml", "synthetic_sizes", "synthetic_source"
]  # fmt: skip

SYNTHETIC_NAMES: dict[int, str] = {0: "square", 1: "circle", 2: "triangle", 3: "star"}

_FORMAT_VERSION = 2  # bump whenever the generated content changes: caches are keyed on it
_RARE_CLASS = 3  # "star": about 8% of all objects
_CIRCLE = 1  # every rotation of its box is a minimum-area rectangle: its oriented box is the axis-aligned one
_RARE_FRACTION = 0.08
_BACKGROUND_EVERY = 20  # one image in 20 has no objects
_MAX_OBJECTS = 3
_SIZE_RANGE = (0.3, 0.5)  # bounding-box side as a fraction of the image side
_MAX_IOU = 0.15  # mild overlap between objects of one image
_NOISE_STD = 6.0
_TILT = np.pi / 12  # max rotation of squares and triangles (15 degrees)
_MIN_CONTRAST = 110.0  # minimum RGB distance between an object and the background under it
_SHIFT = 4  # cv2 sub-pixel bits
_SPLITS = ("train", "val")
_KEYPOINTS = ("top", "right", "bottom", "left")  # extreme points of the outline, in this order
_CROP_PAD = 0.1  # classify crops: the box grown by this fraction of its size on each side
_SEMANTIC_NAMES = {**SYNTHETIC_NAMES, len(SYNTHETIC_NAMES): "background"}  # background last, as Ultralytics' polygons
_DEPTH_SCALE = 1000  # depth PNG value 1000 = 1 metre (Ultralytics' depth8)
_FLOOR_DEPTH = (4.0, 8.0)  # metres: the background is a floor, nearest at the image's bottom row
_OBJECT_DEPTH = 1.2  # metres x (image side / object side): a larger object is nearer (2.4 to 4 m)
_NAME = re.compile(r"synthetic(\d*)")  # what `data=` takes: "synthetic" or "synthetic<N>" (as coco8, coco128)
_DEFAULT_TRAIN = 128
_VAL_PER_TRAIN = 4  # "synthetic<N>": N training and N // 4 validation images (the default's 128 and 32)
_DEFAULT_VAL = _DEFAULT_TRAIN // _VAL_PER_TRAIN


class _Shape(NamedTuple):
    """One drawn object: class, outline vertices (N, 2) and xyxy box, both in pixel-edge coordinates."""

    cls: int
    points: np.ndarray
    box: np.ndarray


_LabelFormat = Callable[[list[_Shape], int], str]  # (shapes, imgsz) -> text of one YOLO label file
_ImageWriter = Callable[[Path, str, str, np.ndarray, list[_Shape]], None]  # (folder, split, stem, image, shapes)


class _Task(NamedTuple):
    """How one Ultralytics task stores the shared images."""

    prefix: str  # dataset folder name prefix
    folders: tuple[str, ...]  # created in each split ("{split}" is replaced)
    write: _ImageWriter  # writes the files of one image
    marker: str  # written last: a folder holding it is complete
    marker_text: Callable[[Path], str]  # the marker's content, given the final dataset folder
    data: str  # what Ultralytics' `data=` takes, relative to the dataset folder


def synthetic_data(
    task: str = "detect",
    root: str | Path | None = None,
    *,
    n_train: int = _DEFAULT_TRAIN,
    n_val: int = _DEFAULT_VAL,
    imgsz: int = 64,
    seed: int = 0,
) -> Path:
    """Write (once) the synthetic dataset of `task` and return what Ultralytics' `data=` takes for it."""
    if task not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(_TASKS)}, got {task!r}")
    _check_int("n_train", n_train, 1)
    _check_int("n_val", n_val, 1)
    _check_int("imgsz", imgsz, 32)
    _check_int("seed", seed, 0)
    spec = _TASKS[task]
    root = Path(root if root is not None else os.environ.get("YOLO_LIGHTNING_CACHE") or "~/.cache/yolo_lightning")
    final = root.expanduser().resolve() / f"{spec.prefix}-v{_FORMAT_VERSION}-n{n_train}-v{n_val}-s{imgsz}-seed{seed}"
    if not _is_complete(final, spec.marker):
        _build_atomically(final, task, {"train": n_train, "val": n_val}, imgsz, seed)
    return final / spec.data


def synthetic_sizes(data: str | Path) -> tuple[int, int] | None:
    """The (training, validation) image counts ``data`` names: ``"synthetic"`` 128 and 32, ``"synthetic<N>"`` N and
    N // 4 (``"synthetic256"``: 256 and 64); None for any other ``data`` (a path)."""
    match = _NAME.fullmatch(data) if isinstance(data, str) else None
    if match is None:
        return None
    n_train = int(match[1]) if match[1] else _DEFAULT_TRAIN
    if n_train < _VAL_PER_TRAIN:
        raise ConfigurationError(
            f"data={data!r}: 'synthetic<N>' needs N >= {_VAL_PER_TRAIN} (N training images, N // {_VAL_PER_TRAIN} "
            f"validation images); 'synthetic' is {_DEFAULT_TRAIN} and {_DEFAULT_VAL}."
        )
    return n_train, n_train // _VAL_PER_TRAIN


def synthetic_source(data: str, task: str = "detect") -> str:
    """What Ultralytics' ``data=`` takes for ``data``: the embedded dataset of ``task`` (written once) for
    ``"synthetic[<N>]"``, anything else unchanged."""
    sizes = synthetic_sizes(data)
    return data if sizes is None else str(synthetic_data(task, n_train=sizes[0], n_val=sizes[1]))


def synthetic_data_yaml(
    root: str | Path | None = None, *, n_train: int = _DEFAULT_TRAIN, n_val: int = _DEFAULT_VAL, imgsz: int = 64, seed: int = 0
) -> Path:
    """Write (once) and return the path of data.yaml of the embedded synthetic detection dataset."""
    return synthetic_data("detect", root, n_train=n_train, n_val=n_val, imgsz=imgsz, seed=seed)


def _check_int(name: str, value: object, minimum: int) -> None:
    """Raise ValueError naming `name` unless `value` is an int >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _is_complete(directory: Path, marker: str) -> bool:
    """Whether `directory` holds a finished dataset (its `marker` file is written last)."""
    return (directory / marker).is_file()


def _build_atomically(final: Path, task: str, sizes: dict[str, int], imgsz: int, seed: int) -> None:
    """Generate the dataset in a unique temporary sibling folder, then rename it to `final`."""
    marker = _TASKS[task].marker
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_dataset(tmp, final, task, sizes, imgsz, seed)
        if final.exists() and not _is_complete(final, marker):  # debris of a non-atomic writer
            _discard(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, marker):  # failed for another reason than a concurrent winner
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(directory: Path) -> None:
    """Move `directory` out of the way atomically, then delete it."""
    trash = directory.with_name(f".{directory.name}.trash-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(directory, trash)
    except FileNotFoundError:  # another process already removed it
        return
    shutil.rmtree(trash, ignore_errors=True)


def _write_dataset(directory: Path, final: Path, task: str, sizes: dict[str, int], imgsz: int, seed: int) -> None:
    """Write the files of `task` and (last) its marker into `directory`, which will be renamed to `final`."""
    spec = _TASKS[task]
    for split_index, split in enumerate(_SPLITS):
        for folder in spec.folders:
            (directory / folder.format(split=split)).mkdir(parents=True)
        rng = np.random.default_rng([seed, split_index])  # the same draws for every task: the same images
        for i, classes in enumerate(_class_plan(rng, sizes[split])):
            image, shapes = _render(rng, classes, imgsz)
            spec.write(directory, split, f"{i:05d}", image, shapes)
    (directory / spec.marker).write_text(spec.marker_text(final))


def _imwrite(file: Path, image: np.ndarray) -> None:
    """Save `image` (BGR uint8) as `file` or raise OSError."""
    if not cv2.imwrite(str(file), image):
        raise OSError(f"could not write {file}")


def _yolo_writer(label: _LabelFormat) -> _ImageWriter:
    """An image writer saving images/<split>/<stem>.png and its YOLO label text `label(shapes, imgsz)`."""

    def write(directory: Path, split: str, stem: str, image: np.ndarray, shapes: list[_Shape]) -> None:
        """Save the image and its label file."""
        _imwrite(directory / "images" / split / f"{stem}.png", image)
        (directory / "labels" / split / f"{stem}.txt").write_text(label(shapes, image.shape[0]))

    return write


def _dense_writer(folder: str, dense_map: Callable[[list[_Shape], int], np.ndarray]) -> _ImageWriter:
    """An image writer saving images/<split>/<stem>.png and the per-pixel map `dense_map(shapes, imgsz)` (uint8 or
    uint16) as <folder>/<split>/<stem>.png."""

    def write(directory: Path, split: str, stem: str, image: np.ndarray, shapes: list[_Shape]) -> None:
        """Save the image and its per-pixel map."""
        _imwrite(directory / "images" / split / f"{stem}.png", image)
        _imwrite(directory / folder / split / f"{stem}.png", dense_map(shapes, image.shape[0]))

    return write


def _semantic_mask(shapes: list[_Shape], imgsz: int) -> np.ndarray:
    """Class id per pixel (uint8): each shape filled in drawing order over the background class."""
    mask = np.full((imgsz, imgsz), len(SYNTHETIC_NAMES), dtype=np.uint8)
    for shape in shapes:
        _fill(mask, shape, shape.cls)
    return mask


def _depth_map(shapes: list[_Shape], imgsz: int) -> np.ndarray:
    """Depth per pixel as a uint16 PNG value (metres x _DEPTH_SCALE): a floor, the shapes as upright planes."""
    near, far = _FLOOR_DEPTH
    rows = np.linspace(far, near, imgsz, dtype=np.float64)  # the top row is farthest
    depth = np.repeat(rows[:, None], imgsz, axis=1)
    for shape in shapes:
        side = float((shape.box[2:] - shape.box[:2]).max())
        _fill(depth, shape, _OBJECT_DEPTH * imgsz / side)
    return np.rint(depth * _DEPTH_SCALE).astype(np.uint16)


def _fill(values: np.ndarray, shape: _Shape, value: float) -> None:
    """Set `value` inside the shape's outline (hard edges: every pixel whose centre the drawn shape covers)."""
    _draw(values, shape.cls, shape.points, value, cv2.LINE_8)


def _write_crops(directory: Path, split: str, stem: str, image: np.ndarray, shapes: list[_Shape]) -> None:
    """Save each object's box, padded by _CROP_PAD and clipped to the image, as <split>/<class name>/<stem>_<k>.png."""
    for k, shape in enumerate(shapes):
        pad = (shape.box[2:] - shape.box[:2]) * _CROP_PAD
        x1, y1 = np.floor(np.maximum(shape.box[:2] - pad, 0)).astype(int)
        x2, y2 = np.ceil(np.minimum(shape.box[2:] + pad, image.shape[0])).astype(int)
        _imwrite(directory / split / SYNTHETIC_NAMES[shape.cls] / f"{stem}_{k}.png", image[y1:y2, x1:x2])


def _box_columns(box: np.ndarray, imgsz: int) -> str:
    """The normalized `x y w h` columns of an xyxy pixel box."""
    x1, y1, x2, y2 = (float(v) for v in box / imgsz)
    return f"{(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def _point_columns(points: np.ndarray, imgsz: int) -> str:
    """The normalized `x1 y1 x2 y2 ...` columns of pixel points (N, 2), clipped to the image."""
    return " ".join(f"{v:.6f}" for v in np.clip(points / imgsz, 0.0, 1.0).ravel())


def _detect_label(shapes: list[_Shape], imgsz: int) -> str:
    """YOLO detect rows: `cls x y w h`."""
    return "".join(f"{s.cls} {_box_columns(s.box, imgsz)}\n" for s in shapes)


def _segment_label(shapes: list[_Shape], imgsz: int) -> str:
    """YOLO segment rows: `cls x1 y1 x2 y2 ...`, the outline polygon (the circle as its 64-gon)."""
    return "".join(f"{s.cls} {_point_columns(s.points, imgsz)}\n" for s in shapes)


def _obb_label(shapes: list[_Shape], imgsz: int) -> str:
    """YOLO obb rows: `cls x1 y1 ... x4 y4`, the minimum-area rectangle of the outline inside the image."""
    return "".join(f"{s.cls} {_point_columns(_oriented_box(s, imgsz), imgsz)}\n" for s in shapes)


def _oriented_box(shape: _Shape, imgsz: int) -> np.ndarray:
    """Corners (4, 2) of the minimum-area rectangle around the outline that lies inside the image."""
    # Candidates: the axis-aligned box and the rectangles along each hull edge (the minimum is among them, as in
    # cv2.minAreaRect), except for the circle (any angle is minimal: it keeps the axes). Near the border the minimum
    # may leave the image: the smallest one inside wins. Equal areas (the triangle's 3 and the star's 5 edge
    # directions, among which cv2.minAreaRect picks arbitrarily) go to the one nearest the axes: one orientation each.
    angles = [0.0]
    if shape.cls != _CIRCLE:
        hull = shape.points[cv2.convexHull(shape.points.astype(np.float32), returnPoints=False)[:, 0]]
        dx, dy = (np.roll(hull, -1, 0) - hull).T
        angles += [float(a) for a in (np.arctan2(dy, dx) + np.pi / 4) % (np.pi / 2) - np.pi / 4]  # within 45 deg
    candidates = []
    for angle in angles:
        area, corners = _rectangle(shape.points, angle)
        if corners.min() >= -1e-6 and corners.max() <= imgsz + 1e-6:
            candidates.append((area, abs(angle), corners))
    smallest = min(area for area, _, _ in candidates)  # the axis-aligned box always fits
    return min((c for c in candidates if c[0] <= smallest * (1 + 1e-6)), key=lambda c: c[1])[2]


def _rectangle(points: np.ndarray, angle: float) -> tuple[float, np.ndarray]:
    """Area and corners (4, 2) of the smallest rectangle around `points` whose sides are at `angle` to the axes."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    local = points @ rotation  # coordinates along the rectangle's sides
    (x1, y1), (x2, y2) = local.min(0), local.max(0)
    return float((x2 - x1) * (y2 - y1)), np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) @ rotation.T


def _pose_label(shapes: list[_Shape], imgsz: int) -> str:
    """YOLO pose rows: `cls x y w h` + (x y v) of the top, right, bottom and left points; v=1 if drawn over, else 2."""
    rows = []
    for k, shape in enumerate(shapes):
        later = [s.points.astype(np.float32) for s in shapes[k + 1 :]]
        keypoints = []
        for point in _extreme_points(shape.points):
            covered = any(cv2.pointPolygonTest(outline, tuple(map(float, point)), False) >= 0 for outline in later)
            keypoints.append(f"{_point_columns(point, imgsz)} {1 if covered else 2}")
        rows.append(f"{shape.cls} {_box_columns(shape.box, imgsz)} {' '.join(keypoints)}\n")
    return "".join(rows)


def _extreme_points(points: np.ndarray) -> np.ndarray:
    """The top, right, bottom and left extreme vertices (4, 2) of an outline (image y points down)."""
    x, y = points.T
    return points[[y.argmin(), x.argmax(), y.argmax(), x.argmin()]]


def _data_yaml(final: Path, **extra: object) -> str:
    """data.yaml text of a YOLO-format dataset in `final`, with task-specific `extra` keys."""
    data = {"path": str(final), "train": "images/train", "val": "images/val", "names": dict(SYNTHETIC_NAMES)}
    return yaml.safe_dump({**data, **extra}, sort_keys=False)


def _yolo_task(prefix: str, label: _LabelFormat, **extra: object) -> _Task:
    """A task stored as images/ + labels/ with a data.yaml (written last)."""
    return _data_yaml_task(prefix, "labels", _yolo_writer(label), **extra)


def _data_yaml_task(prefix: str, folder: str, write: _ImageWriter, **extra: object) -> _Task:
    """A task stored as images/ + `folder`/ (labels, masks, depth) with a data.yaml (written last)."""
    return _Task(
        prefix=prefix,
        folders=("images/{split}", f"{folder}/{{split}}"),
        write=write,
        marker="data.yaml",
        marker_text=partial(_data_yaml, **extra),
        data="data.yaml",
    )


_TASKS: dict[str, _Task] = {
    "detect": _yolo_task("synthetic", _detect_label),  # the original folder name: existing caches stay valid
    "segment": _yolo_task("synthetic-segment", _segment_label),
    "pose": _yolo_task(
        "synthetic-pose",
        _pose_label,
        kpt_shape=[len(_KEYPOINTS), 3],
        flip_idx=[0, 3, 2, 1],  # a horizontal flip swaps right and left; flipud stays 0 (it would reuse flip_idx)
        kpt_names={c: list(_KEYPOINTS) for c in SYNTHETIC_NAMES},
    ),
    "obb": _yolo_task("synthetic-obb", _obb_label),
    "semantic": _data_yaml_task(
        "synthetic-semantic", "masks", _dense_writer("masks", _semantic_mask), masks_dir="masks", names=_SEMANTIC_NAMES
    ),
    "depth": _data_yaml_task(
        "synthetic-depth", "depth", _dense_writer("depth", _depth_map), names={0: "depth"}, depth_scale=_DEPTH_SCALE,
        max_depth=10.0,  # metres: DepthMetrics scores pixels below it (Ultralytics' default 100)
    ),
    # Ultralytics numbers the class folders alphabetically (circle, square, star, triangle). Every split gets every
    # class folder; a split of >= 4 images holds a crop of every class in practice (the star is always placed, the
    # common classes take turns; checked for seeds 0-199), smaller ones may leave a folder empty.
    "classify": _Task(
        prefix="synthetic-classify",
        folders=tuple(f"{{split}}/{name}" for name in SYNTHETIC_NAMES.values()),
        write=_write_crops,
        marker=".complete",
        marker_text=lambda final: "",
        data=".",  # the folder itself
    ),
}
SYNTHETIC_TASKS: tuple[str, ...] = tuple(_TASKS)


def _class_plan(rng: np.random.Generator, n_images: int) -> list[list[int]]:
    """Per image, the classes of its objects: ~5% background images, the rare class on ~8% of objects."""
    counts = rng.integers(1, _MAX_OBJECTS + 1, size=n_images)
    counts[rng.permutation(n_images)[: n_images // _BACKGROUND_EVERY]] = 0
    n_objects = int(counts.sum())
    n_rare = max(1, round(_RARE_FRACTION * n_objects)) if n_objects else 0
    common = [c for c in SYNTHETIC_NAMES if c != _RARE_CLASS]
    classes = rng.permutation([_RARE_CLASS] * n_rare + [common[k % len(common)] for k in range(n_objects - n_rare)])
    return [[int(c) for c in part] for part in np.split(classes, np.cumsum(counts)[:-1])]


def _render(rng: np.random.Generator, classes: list[int], imgsz: int) -> tuple[np.ndarray, list[_Shape]]:
    """Draw one image (BGR uint8) with the given object classes; return it and its shapes in drawing order."""
    background = _background(rng, imgsz)
    image = background.astype(np.uint8)
    placed: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index in `classes` -> (outline points, xyxy box)
    for k in sorted(range(len(classes)), key=lambda k: classes[k] != _RARE_CLASS):  # rare first: the first always fits
        placement = _place(rng, classes[k], imgsz, [box for _, box in placed.values()])
        if placement is not None:
            placed[k] = placement
    shapes = [_Shape(classes[k], points, box) for k, (points, box) in sorted(placed.items())]
    for shape in shapes:  # draw in plan order, so any class may end up on top
        box = shape.box
        under = background[int(box[1]) : int(box[3]) + 1, int(box[0]) : int(box[2]) + 1].reshape(-1, 3).mean(0)
        _draw(image, shape.cls, shape.points, _object_colour(rng, under))
    noisy = image + rng.normal(0.0, _NOISE_STD, image.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8), shapes


def _background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """A random two-colour linear gradient (float, HxWx3) in a random direction."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:imgsz, 0:imgsz] / (imgsz - 1)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / (t.max() - t.min())
    return c0 + (c1 - c0) * t[..., None]


def _object_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour (independent of class) that contrasts with the background colour `under`."""
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - under) >= _MIN_CONTRAST:
            break
    else:
        colour = 255.0 - under
    return tuple(int(v) for v in colour.round())


def _place(
    rng: np.random.Generator, cls: int, imgsz: int, boxes: list[np.ndarray], tries: int = 20
) -> tuple[np.ndarray, np.ndarray] | None:
    """Random outline points and xyxy box of a shape inside the image, overlapping others only mildly."""
    for _ in range(tries):
        side = rng.uniform(*_SIZE_RANGE) * imgsz
        points = _outline(rng, cls, side)
        lo, hi = points.min(0), points.max(0)
        offset = rng.uniform(-lo, imgsz - hi)
        points = points + offset
        box = np.concatenate([lo + offset, hi + offset])
        if all(_iou(box, other) <= _MAX_IOU for other in boxes):
            return points, box
    return None


def _outline(rng: np.random.Generator, cls: int, side: float) -> np.ndarray:
    """Vertices (N,2) of a shape of class `cls` centred on the origin whose larger box side is about `side`."""
    if cls == 0:  # square, tilted a little
        radii, angle = np.ones(4), np.pi / 4 + rng.uniform(-_TILT, _TILT)
    elif cls == 1:  # circle: a dense polygon gives its exact box, drawn with cv2.circle
        radii, angle = np.ones(64), 0.0
    elif cls == 2:  # equilateral triangle, apex up, tilted a little
        radii, angle = np.ones(3), -np.pi / 2 + rng.uniform(-_TILT, _TILT)
    else:  # five-pointed star, any orientation
        radii, angle = np.tile([1.0, 0.45], 5), rng.uniform(0, 2 * np.pi)
    theta = angle + 2 * np.pi * np.arange(len(radii)) / len(radii)
    points = radii[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
    return points * side / (points.max(0) - points.min(0)).max()


def _draw(
    image: np.ndarray, cls: int, points: np.ndarray, colour: tuple[int, int, int] | float, line: int = cv2.LINE_AA
) -> None:
    """Fill the shape in place, anti-aliased unless `line` says otherwise (`points` in pixel-edge coordinates)."""
    scale = 1 << _SHIFT
    points = points - 0.5  # cv2 puts pixel centres on integer coordinates
    if cls == 1:
        centre = tuple(int(v) for v in (points.mean(0) * scale).round())
        radius = round(float(points[:, 0].max() - points[:, 0].min()) / 2 * scale)
        cv2.circle(image, centre, radius, colour, -1, line, _SHIFT)
    else:
        cv2.fillPoly(image, [(points * scale).round().astype(np.int32)], colour, line, _SHIFT)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
