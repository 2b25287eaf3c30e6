"""Detection metrics as a torchmetrics ``Metric``: DDP-synced states, Ultralytics' ``DetMetrics`` for the numbers."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from ultralytics.utils.metrics import DetMetrics

_NUM_IOU_THRESHOLDS = 10  # 0.50:0.05:0.95, as DetectionValidator.iouv


class DetectionMetrics(Metric):
    """Precision, recall, mAP50, mAP50-95 and fitness exactly as Ultralytics' DetectionValidator computes them.

    ``update`` takes one image's matched predictions (the ``tp`` matrix from ``DetectionValidator._process_batch``);
    ``compute`` gathers every rank's states and runs Ultralytics' ``DetMetrics.process`` (``ap_per_class``).
    All states are 1-D float32 ``cat`` states, the layout torch.distributed gathers safely on every backend.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, names: dict[int, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = dict(names)
        for state in ("tp", "conf", "pred_cls", "target_cls", "target_img"):
            self.add_state(state, default=[], dist_reduce_fx="cat")
        self.box_metrics: DetMetrics | None = None  # the last compute()'s full Ultralytics result (per-class arrays)

    def update(self, tp: torch.Tensor, conf: torch.Tensor, pred_cls: torch.Tensor, target_cls: torch.Tensor) -> None:
        """Add one image: ``tp`` (N, 10) bool, ``conf``/``pred_cls`` (N,), ``target_cls`` (M,)."""
        device = self.device
        self.tp.append(tp.to(device=device, dtype=torch.float32).flatten())
        self.conf.append(conf.to(device=device, dtype=torch.float32).flatten())
        self.pred_cls.append(pred_cls.to(device=device, dtype=torch.float32).flatten())
        self.target_cls.append(target_cls.to(device=device, dtype=torch.float32).flatten())
        self.target_img.append(torch.unique(self.target_cls[-1]))

    def compute(self) -> dict[str, torch.Tensor]:
        """Ultralytics' ``results_dict``: ``metrics/precision(B)`` ... ``metrics/mAP50-95(B)`` and ``fitness``."""
        stats = {name: _as_numpy(getattr(self, name)) for name in ("tp", "conf", "pred_cls", "target_cls", "target_img")}
        stats["tp"] = stats["tp"].reshape(-1, _NUM_IOU_THRESHOLDS).astype(bool)
        metrics = DetMetrics(names=self.names)
        metrics.stats = {key: [value] for key, value in stats.items()}
        metrics.process()
        self.box_metrics = metrics
        return {key: torch.tensor(float(value)) for key, value in metrics.results_dict.items()}


def _as_numpy(state: list[torch.Tensor] | torch.Tensor) -> np.ndarray:
    """A ``cat`` state (a list before sync, a tensor after) as one numpy array."""
    if isinstance(state, list) and not state:
        return np.zeros(0, dtype=np.float32)
    return dim_zero_cat(state).cpu().numpy()
