"""``cache="disk"``: each image's ``.npy`` file written once, atomically, before any rank reads it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from ultralytics.utils import NUM_THREADS
from ultralytics.utils.patches import imread


def write_disk_cache(dataset: Dataset) -> None:
    """Write the ``.npy`` files Ultralytics' ``cache="disk"`` reads, each to a temporary file renamed into place.

    Ultralytics writes them with ``np.save`` straight to their names (detection datasets while they are built, the
    classification dataset while it serves images): every DDP rank building the dataset, or two nodes on a shared
    filesystem, writes the same files at once, and a reader may load a half-written one. Written here first (from
    ``prepare_data``), they exist whole before any dataset looks for them; a concurrent writer only replaces a whole
    file with an identical one.
    """
    if hasattr(dataset, "npy_files"):  # YOLODataset and its kin (BaseDataset.cache_images_to_disk's reader)
        pairs = list(zip(dataset.im_files, dataset.npy_files))
        read: Callable[[str], np.ndarray] = lambda f: imread(f, flags=dataset.cv2_flag)  # noqa: E731
    elif hasattr(dataset, "samples") and getattr(dataset, "cache_disk", False):  # ClassificationDataset
        pairs = [(sample[0], sample[2]) for sample in dataset.samples]
        read = dataset.imread
    else:
        return
    with ThreadPool(NUM_THREADS) as pool:
        pool.starmap(_write_npy, [(image, Path(npy), read) for image, npy in pairs])


def _write_npy(image: str, npy: Path, read: Callable[[str], Any]) -> None:
    """One image's ``.npy``, unless a current one exists (Ultralytics rewrites a cache older than its image)."""
    if npy.exists() and npy.stat().st_mtime >= Path(image).stat().st_mtime:
        return
    staged = npy.with_name(f".{npy.stem}.{os.getpid()}.{threading.get_ident()}.npy")
    try:
        np.save(staged, read(image), allow_pickle=False)
        os.replace(staged, npy)
    except (OSError, ValueError):  # unreadable image (None): left to Ultralytics' own writer, which warns naming it
        return
    finally:
        staged.unlink(missing_ok=True)
