"""Human-facing validation reports: the per-class table, Ultralytics' plots in the run folder, images for loggers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ultralytics.utils.metrics import ConfusionMatrix, DetMetrics

_COLUMNS = ("Class", "Images", "Instances", "P", "R", "F1", "mAP50", "mAP50-95")


def per_class_table(metrics: DetMetrics, images: int) -> str:
    """Ultralytics' validation table plus an F1 column: an ``all`` row over ``images``, then one row per labelled class."""
    box = metrics.box
    rows = [("all", images, int(metrics.nt_per_class.sum()))]
    values = [(box.mp, box.mr, float(np.mean(box.f1)) if len(box.f1) else 0.0, box.map50, box.map)]
    for j, c in enumerate(box.ap_class_index):
        rows.append((metrics.names[int(c)], int(metrics.nt_per_image[c]), int(metrics.nt_per_class[c])))
        values.append((box.p[j], box.r[j], box.f1[j], box.ap50[j], box.ap[j]))
    width = max(len(_COLUMNS[0]), *(len(str(r[0])) for r in rows))
    lines = [f"{_COLUMNS[0]:>{width}}" + "".join(f"{c:>11}" for c in _COLUMNS[1:])]
    for (name, image_count, instances), numbers in zip(rows, values):
        lines.append(f"{name:>{width}}{image_count:>11}{instances:>11}" + "".join(f"{float(v):>11.3f}" for v in numbers))
    return "\n".join(lines)


def save_validation_plots(metrics: DetMetrics, confusion: ConfusionMatrix | None, save_dir: Path) -> list[Path]:
    """Ultralytics' F1/P/R/PR curves and confusion matrices (raw and normalised) written atomically into ``save_dir``.

    Each figure is drawn into a temporary folder next to ``save_dir`` and moved into place, so a crash never leaves a
    half-written image. Returns the final paths.
    """
    save_dir.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    with tempfile.TemporaryDirectory(dir=save_dir, prefix=".plots-") as scratch:
        scratch_dir = Path(scratch)

        def collect(path: str | Path, data: Any = None) -> None:
            drawn.append(Path(path))

        metrics.process(save_dir=scratch_dir, plot=True, on_plot=collect)
        if confusion is not None:
            for normalize in (True, False):
                confusion.plot(normalize=normalize, save_dir=scratch_dir, on_plot=collect)
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
