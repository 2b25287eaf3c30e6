"""Ultralytics' run folders (``runs/detect/train``, ``train2``, ...): a new run never writes into another run's folder."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

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


_LAUNCHED_RUN = "YOLO_LIGHTNING_RUN_FOLDER"  # "<launching pid>:<run folder>" for the DDP processes it starts


def announce_to_child_processes(folder: Path) -> None:
    """Let the processes Lightning's DDP launcher starts from this one (they re-run the command) use ``folder``."""
    os.environ[_LAUNCHED_RUN] = f"{os.getpid()}:{folder}"


def folder_from_launching_process() -> Path | None:
    """The run folder this process's parent claimed, if this is one of the DDP processes it started."""
    pid, _, folder = os.environ.get(_LAUNCHED_RUN, "").partition(":")
    return Path(folder) if pid == str(os.getppid()) and folder else None
