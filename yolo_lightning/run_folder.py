"""Ultralytics' run folders (``runs/detect/train``, ``train2``, ...): a new run never writes into another run's folder."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

WEIGHTS = "weights"  # Ultralytics' layout: <run folder>/weights/{best,last}.pt


def claim_run_folder(root: str | Path, exist_ok: bool = False) -> Path:
    """The first of ``root``, ``root2``, ``root3``... that no other run uses, claimed for this run (as Ultralytics'
    ``increment_path``); with ``exist_ok``, ``root`` itself.

    A run folder belongs to the run that created its ``weights`` folder (an atomic ``mkdir``), so two runs starting at
    once get two folders, and a folder that only holds other outputs (logs, validation plots) can still be used.
    """
    root = Path(root)
    if exist_ok:
        (root / WEIGHTS).mkdir(parents=True, exist_ok=True)
        return root
    for number in itertools.count(1):
        candidate = root if number == 1 else root.with_name(f"{root.name}{number}")
        candidate.mkdir(parents=True, exist_ok=True)
        try:
            (candidate / WEIGHTS).mkdir()
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
