"""Finiteness checks over many tensors with at most one host synchronisation."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def finite_flag(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """A 0-d bool tensor, True when every floating-point tensor holds only finite values (no host sync)."""
    checks = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return torch.stack(checks).all() if checks else torch.tensor(True)


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """``finite_flag`` as a Python bool (one host sync)."""
    return bool(finite_flag(tensors))
