"""Detection metrics as a torchmetrics ``Metric``: DDP-synced states, Ultralytics' ``DetMetrics`` for the numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from ultralytics.utils.metrics import ConfusionMatrix, DetMetrics

_NUM_IOU_THRESHOLDS = 10  # 0.50:0.05:0.95, as DetectionValidator.iouv
MEAN_F1_KEY = "metrics/F1(B)"
# Logged per class as ``metrics/<name>(B)/<class name>``: the attribute of Ultralytics' ``DetMetrics.box`` it reads.
PER_CLASS_METRICS = {"precision": "p", "recall": "r", "F1": "f1", "mAP50": "ap50", "mAP50-95": "ap"}


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
        self.add_state("images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.box_metrics: DetMetrics | None = None  # the last compute()'s full Ultralytics result (per-class arrays)
        self.image_count = 0  # images behind the last compute(), over every rank

    def update(self, tp: torch.Tensor, conf: torch.Tensor, pred_cls: torch.Tensor, target_cls: torch.Tensor) -> None:
        """Add one image: ``tp`` (N, 10) bool, ``conf``/``pred_cls`` (N,), ``target_cls`` (M,)."""
        device = self.device
        self.tp.append(tp.to(device=device, dtype=torch.float32).flatten())
        self.conf.append(conf.to(device=device, dtype=torch.float32).flatten())
        self.pred_cls.append(pred_cls.to(device=device, dtype=torch.float32).flatten())
        self.target_cls.append(target_cls.to(device=device, dtype=torch.float32).flatten())
        self.target_img.append(torch.unique(self.target_cls[-1]))
        self.images += 1

    def compute(self) -> dict[str, torch.Tensor]:
        """Ultralytics' ``results_dict``, mean F1 (``metrics/F1(B)``) and every metric per class (``.../<name>``).

        Per-class values are read at the confidence Ultralytics picks (max of the smoothed mean F1 curve), for the
        classes that have labels in the evaluated images (Ultralytics' ``ap_class_index``), as
        ``validator.metrics.box.f1`` / ``.p`` / ``.r`` / ``.ap50`` / ``.ap`` hold them.
        """
        stats = {name: _as_numpy(getattr(self, name)) for name in ("tp", "conf", "pred_cls", "target_cls", "target_img")}
        stats["tp"] = stats["tp"].reshape(-1, _NUM_IOU_THRESHOLDS).astype(bool)
        metrics = DetMetrics(names=self.names)
        metrics.stats = {key: [value] for key, value in stats.items()}
        metrics.process()
        self.box_metrics, self.image_count = metrics, int(self.images)
        results = {**metrics.results_dict, MEAN_F1_KEY: float(np.mean(metrics.box.f1)) if len(metrics.box.f1) else 0.0}
        results.update(per_class_results(metrics))
        return {key: torch.tensor(float(value), device=self.device) for key, value in results.items()}


def per_class_results(metrics: DetMetrics) -> dict[str, float]:
    """``metrics/<metric>(B)/<class name>`` for every class with labels, from a processed ``DetMetrics``."""
    box = metrics.box
    return {
        f"metrics/{metric}(B)/{metrics.names[int(c)]}": float(getattr(box, attribute)[j])
        for metric, attribute in PER_CLASS_METRICS.items()
        for j, c in enumerate(box.ap_class_index)
    }


class DetectionConfusionMatrix(Metric):
    """Ultralytics' detection ``ConfusionMatrix`` as a torchmetrics ``Metric`` (summed over DDP ranks).

    ``update`` runs ``ConfusionMatrix.process_batch`` (greedy one-to-one matching at IoU 0.45) on one image, as
    DetectionValidator does when it plots; ``compute`` returns the global ``(nc + 1, nc + 1)`` matrix.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, names: dict[int, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = dict(names)
        size = len(self.names) + 1  # + background
        self.add_state("matrix", default=torch.zeros(size, size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, detections: dict[str, torch.Tensor], target: dict[str, Any], conf: float) -> None:
        """Add one image's detections (``bboxes``/``conf``/``cls``) against its ``target`` (``bboxes``/``cls``)."""
        image = ConfusionMatrix(names=self.names, task="detect")
        image.process_batch(detections, target, conf=conf)
        self.matrix += torch.from_numpy(image.matrix).to(self.matrix)

    def compute(self) -> ConfusionMatrix:
        """Ultralytics' ``ConfusionMatrix`` holding the global matrix (ready for its ``plot``)."""
        result = ConfusionMatrix(names=self.names, task="detect")
        result.matrix = self.matrix.cpu().numpy()
        return result


def _as_numpy(state: list[torch.Tensor] | torch.Tensor) -> np.ndarray:
    """A ``cat`` state (a list before sync, a tensor after) as one numpy array."""
    if isinstance(state, list) and not state:
        return np.zeros(0, dtype=np.float32)
    return dim_zero_cat(state).cpu().numpy()


class EpochLossMeans:
    """Per-epoch means of Ultralytics' loss items (``box_loss``...), summed on the device like BaseTrainer's ``tloss``.

    Logging each batch through ``LightningModule.log`` costs ~1 ms per key and step on CPU; summing here and logging
    the means once per epoch keeps the hot path as light as DetectionTrainer's. Under DDP the means are over every
    rank's batches, also when a rank had none (a validation set smaller than the number of ranks).
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.reset()

    def reset(self) -> None:
        """Start a new epoch."""
        self._sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    def update(self, loss_items: dict[str, torch.Tensor]) -> None:
        """Add one batch's (detached) loss items."""
        for name, value in loss_items.items():
            self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()
        self.batches += 1

    def compute(self, device: torch.device) -> dict[str, torch.Tensor]:
        """``{"<prefix>/<name>": mean over the epoch's batches of every rank}`` on ``device`` (empty before any batch).

        Under DDP this is a collective: every rank must call it, batches or not.
        """
        names = _names_over_ranks(list(self._sums))
        if not names:
            return {}
        zero = torch.zeros((), device=device)
        totals = torch.stack([self._sums.get(n, zero).to(device=device, dtype=torch.float32) for n in names])
        totals = torch.cat([totals, torch.tensor([float(self.batches)], device=device)])
        if _world_size() > 1:
            torch.distributed.all_reduce(totals)
        return {f"{self.prefix}/{name}": totals[i] / totals[-1] for i, name in enumerate(names)}


def _world_size() -> int:
    """Processes in the default process group (1 without one)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if distributed else 1


def _names_over_ranks(names: list[str]) -> list[str]:
    """The loss names any rank saw (a rank that ran no batch knows none), the same list on every rank."""
    if _world_size() == 1:
        return names
    gathered: list[list[str] | None] = [None] * _world_size()
    torch.distributed.all_gather_object(gathered, names)
    return next((g for g in gathered if g), [])
