"""Ultralytics' run folders (``runs/detect/train``, ``train2``, ...): a new run never writes into another run's folder."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

WEIGHTS = "weights"  # Ultralytics' layout: <run folder>/weights/{best,last}.pt


STAGE_FOLDERS = {"fit": "train", "validate": "val", "test": "test", "predict": "predict"}  # runs/<task>/<this>


def default_run_folder(task: str, stage: str | None) -> Path:
    """Ultralytics' run folder of a task and a Trainer stage: ``runs/detect/train``, ``runs/pose/predict``..."""
    return Path("runs", task, STAGE_FOLDERS.get(str(stage), "train"))


def run_root(trainer: Any, task: str) -> Path:
    """The Trainer's run folder: its ``default_root_dir``, or ``runs/<task>/<stage>`` when that was left at
    Lightning's default, the current folder, so a run never scatters its files among the user's own."""
    root = Path(trainer.default_root_dir)
    return default_run_folder(task, trainer.state.fn).absolute() if root.absolute() == Path.cwd() else root


def claim_run_folder(root: str | Path, exist_ok: bool = False, marker: str | None = WEIGHTS) -> Path:
    """The first of ``root``, ``root2``, ``root3``... that no other run uses, claimed for this run (as Ultralytics'
    ``increment_path``); with ``exist_ok``, ``root`` itself.

    A training run folder belongs to the run that created its ``marker`` folder (``weights``, an atomic ``mkdir``), so
    two runs starting at once get two folders, and a folder that only holds other outputs (logs, validation plots) can
    still be used. With ``marker=None`` (validation, prediction) the folder itself must be new.
    """
    root = Path(root)
    if exist_ok:
        (root / marker if marker else root).mkdir(parents=True, exist_ok=True)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        candidate = root if number == 1 else root.with_name(f"{root.name}{number}")
        try:
            if marker:
                candidate.mkdir(exist_ok=True)
            (candidate / marker if marker else candidate).mkdir()
        except FileExistsError:  # another run's folder
            continue
        return candidate
    raise AssertionError("unreachable")


def run_folder_of(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/weights/last.ckpt`` -> ``<run>``), if it is in that layout."""
    path = Path(checkpoint)
    return path.parent.parent if path.parent.name == WEIGHTS else None


def move_run_folder(trainer: Any, root: Path) -> None:
    """Make ``root`` the Trainer's run folder, and the save folder of loggers that were derived from the old one.

    Lightning creates each logger's (empty) version folder before any hook runs; a logger that has written nothing
    yet has that folder removed and is re-pointed, so its files land in the run folder too.
    """
    old = os.path.abspath(trainer.default_root_dir)
    if os.path.abspath(root) == old:
        return
    trainer._default_root_dir = str(root)  # Lightning has no setter; the run folder is claimed once the run starts
    for logger in trainer.loggers:
        attributes = [a for a in ("_save_dir", "_root_dir") if os.path.abspath(getattr(logger, a, None) or "\0") == old]
        if not attributes or not _forget_empty_experiment(logger, Path(old)):
            continue  # not derived from the run folder, or already writing: it stays where it is
        for attribute in attributes:  # CSVLogger / TensorBoardLogger built by the Trainer
            setattr(logger, attribute, str(root))
        # Created again now, as Lightning did in the old folder: a file written into its folder before (LightningCLI's
        # config.yaml) would otherwise make it warn that the folder is not empty
        _ = logger.experiment
    rank_zero_info(f"Run folder: {root}")


def _forget_empty_experiment(logger: Any, old_root: Path) -> bool:
    """Drop a logger's experiment (and its folders, up to ``old_root``) if it has written nothing yet."""
    if getattr(logger, "_experiment", None) is None:
        return True
    folder = Path(os.path.abspath(logger.log_dir))  # as absolute as old_root, where the removal stops
    if not folder.is_dir() or any(folder.iterdir()):
        return False
    while folder != old_root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
    logger._experiment = None
    # A version Lightning numbered (the next free one in the old folder) is numbered again in the new folder; a given
    # one (a SLURM job id) stays
    if hasattr(logger, "_get_next_version") and logger._version == logger._get_next_version():
        logger._version = None
    return True


def stage_folder(trainer: Any, task: str, claimed: Path | None) -> Path:
    """Where a module's files go in this Trainer stage: the fit's run folder (see UltralyticsCheckpoint), or outside
    ``fit`` the Trainer's folder, a new ``runs/<task>/val`` (``val2``...) when that was left at the current folder,
    claimed by global rank 0 once (``claimed``: the folder claimed before, if any)."""
    if trainer.state.fn == "fit" or Path(trainer.default_root_dir).absolute() != Path.cwd():
        return run_root(trainer, task)
    if claimed is None:
        folder = claim_run_folder(default_run_folder(task, trainer.state.fn), marker=None) if trainer.is_global_zero else None
        claimed = Path(trainer.strategy.broadcast(str(folder) if folder else None))
    return claimed
