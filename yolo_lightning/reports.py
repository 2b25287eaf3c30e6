"""Human-facing validation reports: the per-class table, Ultralytics' plots in the run folder, images for loggers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ultralytics.utils.metrics import DetMetrics

_VALUES = ("P", "R", "F1", "mAP50", "mAP50-95")
_PART_NAMES = {"B": "Box", "M": "Mask", "P": "Pose"}


def per_class_table(metrics: DetMetrics, parts: tuple[tuple[str, str], ...], images: int) -> str:
    """Ultralytics' validation table plus F1 columns: an ``all`` row over ``images``, then one row per labelled class;
    one column group (P, R, F1, mAP50, mAP50-95) per evaluated part (Box, and Mask or Pose)."""
    groups = [getattr(metrics, attribute) for _, attribute in parts]
    header = ["Class", "Images", "Instances"]
    for suffix, _ in parts:  # one part: plain names; several: Ultralytics' "Box(P ... mAP50-95)" groups
        named = len(parts) > 1
        header += [f"{_PART_NAMES[suffix]}(P" if named else "P", *_VALUES[1:-1], "mAP50-95)" if named else "mAP50-95"]
    rows = [["all", images, int(metrics.nt_per_class.sum())] + [v for g in groups for v in _means(g)]]
    for j, c in enumerate(groups[0].ap_class_index):
        counts = [metrics.names[int(c)], int(metrics.nt_per_image[c]), int(metrics.nt_per_class[c])]
        rows.append(counts + [v for g in groups for v in (g.p[j], g.r[j], g.f1[j], g.ap50[j], g.ap[j])])
    return _format(header, rows)


def classification_table(
    metrics: Any, names: dict[int, str], per_class: dict[str, Any], counts: dict[int, int], images: int
) -> str:
    """Top-1/top-5 accuracy over ``images``, then yolo-lightning's per-class top-1 precision, recall and F1."""
    lines = [f"{'all':>12}{images:>11} images   top1_acc {metrics.top1:.3f}   top5_acc {metrics.top5:.3f}"]
    rows = [
        [names[int(c)], counts[int(c)], per_class["precision"][j], per_class["recall"][j], per_class["F1"][j]]
        for j, c in enumerate(per_class.get("classes", []))
    ]
    return "\n".join([*lines, _format(["Class", "Images", "P(top1)", "R(top1)", "F1(top1)"], rows)])


def _means(part: Any) -> list[float]:
    """Mean P, R, F1, mAP50, mAP50-95 of one part."""
    return [part.mp, part.mr, float(np.mean(part.f1)) if len(part.f1) else 0.0, part.map50, part.map]


def _format(header: list[str], rows: list[list[Any]]) -> str:
    """Right-aligned columns: a text first column, counts as integers, metrics with 3 decimals."""
    width = max(len(header[0]), *(len(str(r[0])) for r in rows)) if rows else len(header[0])
    lines = [f"{header[0]:>{width}}" + "".join(f"{h:>11}" for h in header[1:])]
    for row in rows:
        cells = [f"{v:>11}" if isinstance(v, (int, np.integer)) else f"{float(v):>11.3f}" for v in row[1:]]
        lines.append(f"{row[0]:>{width}}" + "".join(cells))
    return "\n".join(lines)


def save_validation_plots(metrics: Any, save_dir: Path) -> list[Path]:
    """The metric's plots (Ultralytics' curves and confusion matrices, its ``draw``) written atomically into
    ``save_dir``.

    Each figure is drawn into a temporary folder next to ``save_dir`` and moved into place, so a crash never leaves a
    half-written image. Returns the final paths.
    """
    save_dir.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    with tempfile.TemporaryDirectory(dir=save_dir, prefix=".plots-") as scratch:

        def collect(path: str | Path, data: Any = None) -> None:
            drawn.append(Path(path))

        metrics.draw(Path(scratch), on_plot=collect)
        final = []
        for path in drawn:
            target = save_dir / path.name
            os.replace(path, target)
            final.append(target)
    return final


def log_images(loggers: list[Any], paths: list[Path], step: int) -> int:
    """Send each image to every logger that takes images; return how many logger calls were made.

    Loggers with ``log_image(key, images, step)`` (``WandbLogger``) get the file paths; loggers whose ``experiment``
    has ``add_image`` (``TensorBoardLogger``) get the pixels. Others (``CSVLogger``) are skipped.
    """
    calls = 0
    for logger in loggers:
        experiment = getattr(logger, "experiment", None) if not hasattr(logger, "log_image") else None
        for path in paths:
            key = f"plots/{path.stem}"
            if hasattr(logger, "log_image"):
                logger.log_image(key=key, images=[str(path)], step=step)
            elif hasattr(experiment, "add_image"):
                experiment.add_image(key, _read_rgb(path), step, dataformats="HWC")
            else:
                break
            calls += 1
    return calls


def _read_rgb(path: Path) -> np.ndarray:
    """An image file as an ``(H, W, 3)`` uint8 array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
