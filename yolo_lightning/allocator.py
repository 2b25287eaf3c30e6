"""Stop glibc from handing freed activation memory back to the OS after every forward pass (CPU page-fault cost).

Every CPU forward allocates and frees activations of several MB. With glibc's default, dynamic thresholds the
top of the heap is trimmed after each batch and re-grown (zero-filled pages, one minor fault per 4 KiB) in the
next: measured here, ~28,000 faults and ~20% of a yolo26n validation forward at 160 px. A process reaches the
ceiling of glibc's dynamic rule (mmap threshold 32 MiB, trim threshold twice that) only once it happens to free a
block that large: native Ultralytics training gets there by chance, a Lightning run did not. We set that ceiling
explicitly, as ``mallopt`` allows.
"""

from __future__ import annotations

import ctypes
import os
import platform

from lightning.pytorch.utilities.rank_zero import rank_zero_debug, rank_zero_warn

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its dynamic rule stops
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # the trim threshold glibc's dynamic rule pairs with it
_USER_MALLOC_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory_for_reuse() -> bool:
    """Raise glibc's trim and mmap thresholds to its dynamic ceiling; False (nothing done) off glibc or if user-tuned.

    Malloc settings the user chose (``MALLOC_*_`` variables, ``glibc.malloc`` tunables) are left alone.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_MALLOC_SETTINGS) or "glibc.malloc." in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        rank_zero_debug("yolo-lightning: malloc settings come from the environment; thresholds left unchanged")
        return False
    libc = ctypes.CDLL("libc.so.6")
    # Order matters: setting either disables glibc's dynamic rule, so the mmap threshold goes first.
    applied = (
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
    if not applied:
        rank_zero_warn("glibc's mallopt refused the mmap/trim thresholds: CPU forward passes keep paying page faults")
    return applied
