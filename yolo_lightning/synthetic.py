"""Deterministic synthetic YOLO-format detection dataset of simple shapes (square, circle, triangle, rare star)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import yaml

__all__ = ["SYNTHETIC_NAMES", "synthetic_data_yaml"]

SYNTHETIC_NAMES: dict[int, str] = {0: "square", 1: "circle", 2: "triangle", 3: "star"}

_FORMAT_VERSION = 2  # bump whenever the generated content changes: caches are keyed on it
_RARE_CLASS = 3  # "star": about 8% of all objects
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


def synthetic_data_yaml(
    root: str | Path | None = None, *, n_train: int = 128, n_val: int = 32, imgsz: int = 64, seed: int = 0
) -> Path:
    """Write (once) and return the path of data.yaml of the embedded synthetic dataset."""
    _check_int("n_train", n_train, 1)
    _check_int("n_val", n_val, 1)
    _check_int("imgsz", imgsz, 32)
    _check_int("seed", seed, 0)
    root = Path(root if root is not None else os.environ.get("YOLO_LIGHTNING_CACHE") or "~/.cache/yolo_lightning")
    final = root.expanduser().resolve() / f"synthetic-v{_FORMAT_VERSION}-n{n_train}-v{n_val}-s{imgsz}-seed{seed}"
    if not _is_complete(final):
        _build_atomically(final, {"train": n_train, "val": n_val}, imgsz, seed)
    return final / "data.yaml"


def _check_int(name: str, value: object, minimum: int) -> None:
    """Raise ValueError naming `name` unless `value` is an int >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _is_complete(directory: Path) -> bool:
    """Whether `directory` holds a finished dataset (data.yaml is written last)."""
    return (directory / "data.yaml").is_file()


def _build_atomically(final: Path, sizes: dict[str, int], imgsz: int, seed: int) -> None:
    """Generate the dataset in a unique temporary sibling folder, then rename it to `final`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_dataset(tmp, final, sizes, imgsz, seed)
        if final.exists() and not _is_complete(final):  # debris of a non-atomic writer
            _discard(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final):  # failed for another reason than a concurrent winner
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


def _write_dataset(directory: Path, final: Path, sizes: dict[str, int], imgsz: int, seed: int) -> None:
    """Write images, labels and (last) data.yaml into `directory`, with `path:` pointing at `final`."""
    for split_index, split in enumerate(_SPLITS):
        rng = np.random.default_rng([seed, split_index])
        image_dir, label_dir = directory / "images" / split, directory / "labels" / split
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        for i, classes in enumerate(_class_plan(rng, sizes[split])):
            image, labels = _render(rng, classes, imgsz)
            image_file = image_dir / f"{i:05d}.png"
            if not cv2.imwrite(str(image_file), image):
                raise OSError(f"could not write {image_file}")
            lines = (f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
            (label_dir / f"{i:05d}.txt").write_text("".join(lines))
    data = {"path": str(final), "train": "images/train", "val": "images/val", "names": dict(SYNTHETIC_NAMES)}
    (directory / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _class_plan(rng: np.random.Generator, n_images: int) -> list[list[int]]:
    """Per image, the classes of its objects: ~5% background images, the rare class on ~8% of objects."""
    counts = rng.integers(1, _MAX_OBJECTS + 1, size=n_images)
    counts[rng.permutation(n_images)[: n_images // _BACKGROUND_EVERY]] = 0
    n_objects = int(counts.sum())
    n_rare = max(1, round(_RARE_FRACTION * n_objects)) if n_objects else 0
    common = [c for c in SYNTHETIC_NAMES if c != _RARE_CLASS]
    classes = rng.permutation([_RARE_CLASS] * n_rare + [common[k % len(common)] for k in range(n_objects - n_rare)])
    return [[int(c) for c in part] for part in np.split(classes, np.cumsum(counts)[:-1])]


def _render(
    rng: np.random.Generator, classes: list[int], imgsz: int
) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """Draw one image (BGR uint8) with the given object classes; return it and its normalized labels."""
    background = _background(rng, imgsz)
    image = background.astype(np.uint8)
    placed: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index in `classes` -> (outline points, xyxy box)
    for k in sorted(range(len(classes)), key=lambda k: classes[k] != _RARE_CLASS):  # rare first: the first always fits
        placement = _place(rng, classes[k], imgsz, [box for _, box in placed.values()])
        if placement is not None:
            placed[k] = placement
    labels: list[tuple[int, float, float, float, float]] = []
    for k, (points, box) in sorted(placed.items()):  # draw in plan order, so any class may end up on top
        under = background[int(box[1]) : int(box[3]) + 1, int(box[0]) : int(box[2]) + 1].reshape(-1, 3).mean(0)
        _draw(image, classes[k], points, _object_colour(rng, under))
        x1, y1, x2, y2 = (float(v) for v in box / imgsz)
        labels.append((classes[k], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1))
    noisy = image + rng.normal(0.0, _NOISE_STD, image.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8), labels


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


def _draw(image: np.ndarray, cls: int, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Fill the shape in place with anti-aliased edges (`points` in pixel-edge coordinates)."""
    scale = 1 << _SHIFT
    points = points - 0.5  # cv2 puts pixel centres on integer coordinates
    if cls == 1:
        centre = tuple(int(v) for v in (points.mean(0) * scale).round())
        radius = round(float(points[:, 0].max() - points[:, 0].min()) / 2 * scale)
        cv2.circle(image, centre, radius, colour, -1, cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillPoly(image, [(points * scale).round().astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
