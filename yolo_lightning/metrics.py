"""Validation metrics as torchmetrics ``Metric``s: DDP-synced states, Ultralytics' own metrics classes for the numbers.

Validation runs each task's Ultralytics validator (``update_metrics``), which collects per-image statistics exactly as
in Ultralytics; at the epoch's end these metrics take them over, gather them from every rank and let the task's
metrics class (``DetMetrics``, ``SegmentMetrics``, ``PoseMetrics``, ``OBBMetrics``, ``ClassifyMetrics``) compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision
from torchmetrics.utilities import dim_zero_cat
from ultralytics.utils.metrics import ClassifyMetrics, ConfusionMatrix, DepthMetrics, DetMetrics, SemanticMetrics

from yolo_lightning.dense_metrics import DepthEstimationMetrics, SemanticSegmentationMetrics
from yolo_lightning.reports import classification_table, per_class_table
from yolo_lightning.tasks import DETECT, Task

_NUM_IOU_THRESHOLDS = 10  # 0.50:0.05:0.95, as DetectionValidator.iouv
MEAN_F1_KEY = "metrics/F1(B)"
# Logged per class as ``metrics/<name>(<part>)/<class name>``: the attribute of Ultralytics' per-part Metric it reads.
PER_CLASS_METRICS = {"precision": "p", "recall": "r", "F1": "f1", "mAP50": "ap50", "mAP50-95": "ap"}


def validation_metrics(task: Task, names: dict[int, str]) -> Metric:
    """The validation Metric of ``task``, by the Ultralytics metrics class it reproduces: the object tasks share
    DetectionMetrics (their metrics classes collect the same per-image statistics)."""
    own = _METRICS_OF.get(task.metrics_class)
    return own(names) if own is not None else DetectionMetrics(names, task)


class DetectionMetrics(Metric):
    """Precision, recall, mAP50, mAP50-95 and fitness of each part (boxes, masks, keypoints) exactly as the task's
    Ultralytics validator computes them, plus mean and per-class F1/P/R/AP of each part and the confusion matrix.

    ``update`` takes per-image statistics as Ultralytics' metrics classes collect them (``DetMetrics.stats``: ``tp``,
    ``conf``, ``pred_cls``, ``target_cls``, ``target_img``, plus ``tp_m`` for masks or ``tp_p`` for keypoints);
    ``update_from(validator)`` takes what a validator's ``update_metrics`` collected. ``compute`` gathers every rank's
    states and runs the task's metrics class (``ap_per_class``). All statistics are 1-D float32 ``cat`` states, the
    layout torch.distributed gathers safely on every backend; the confusion matrix is summed.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, names: dict[int, str], task: Task = DETECT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = dict(names)
        self.task = task
        self.stat_keys = tuple(task.metrics_class(names=self.names).stats)  # what the task's metrics class collects
        for key in self.stat_keys:
            self.add_state(key, default=[], dist_reduce_fx="cat")
        self.add_state("images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        size = len(self.names) + 1  # + background
        self.add_state("matrix", default=torch.zeros(size, size, dtype=torch.float64), dist_reduce_fx="sum")
        self.results: DetMetrics | None = None  # the last compute()'s full Ultralytics result (per-class arrays)
        self.image_count = 0  # images behind the last compute(), over every rank
        self._stats: dict[str, np.ndarray] = {}
        self._matrix = np.zeros((size, size))

    def update(self, stats: dict[str, list[Any]], matrix: np.ndarray | None = None) -> None:
        """Add images: ``stats[key]`` holds one array per image (as ``DetMetrics.stats``); ``matrix`` a confusion matrix."""
        device = self.device
        for key in self.stat_keys:
            arrays = [np.asarray(a, dtype=np.float32).reshape(-1) for a in stats[key]]
            if arrays:
                getattr(self, key).append(torch.from_numpy(np.concatenate(arrays)).to(device))
        self.images += len(stats[self.stat_keys[0]])
        if matrix is not None:
            self.matrix += torch.from_numpy(np.asarray(matrix, dtype=np.float64)).to(self.matrix)

    def update_from(self, validator: Any) -> None:
        """Take what the validator's ``update_metrics`` collected since its ``init_metrics``."""
        self.update(validator.metrics.stats, validator.confusion_matrix.matrix)

    def compute(self) -> dict[str, torch.Tensor]:
        """Ultralytics' ``results_dict``, mean F1 of each part (``metrics/F1(B)``) and every metric per class.

        Per-class values are read at the confidence Ultralytics picks (max of the smoothed mean F1 curve), for the
        classes that have labels in the evaluated images (Ultralytics' ``ap_class_index``), as
        ``validator.metrics.box.f1`` / ``.p`` / ``.r`` / ``.ap50`` / ``.ap`` hold them (``.seg``/``.pose`` likewise).
        """
        stats = {key: _as_numpy(getattr(self, key)) for key in self.stat_keys}
        for key in self.stat_keys:
            if key.startswith("tp"):  # (N, 10) match matrices at IoU 0.50:0.95
                stats[key] = stats[key].reshape(-1, _NUM_IOU_THRESHOLDS).astype(bool)
        self._stats, self._matrix = stats, self.matrix.cpu().numpy()  # kept for draw()/confusion() after reset
        metrics = self._process(stats)
        self.results, self.image_count = metrics, int(self.images)
        results = dict(metrics.results_dict)
        for suffix, attribute in self.task.parts:
            part = getattr(metrics, attribute)
            results[f"metrics/F1({suffix})"] = float(np.mean(part.f1)) if len(part.f1) else 0.0
            results.update(per_class_results(metrics, part, suffix))
        return {key: torch.tensor(float(value), device=self.device) for key, value in results.items()}

    def _process(self, stats: dict[str, np.ndarray], **plot: Any) -> DetMetrics:
        """The task's Ultralytics metrics class, processed on ``stats`` (``plot``: ``save_dir``, ``plot``, ``on_plot``)."""
        metrics = self.task.metrics_class(names=self.names)
        metrics.stats = {key: [value] for key, value in stats.items()}
        metrics.process(**plot)
        return metrics

    def confusion(self) -> ConfusionMatrix:
        """Ultralytics' ``ConfusionMatrix`` holding the global matrix (ready for its ``plot``); after ``compute``."""
        result = ConfusionMatrix(names=self.names, task=self.task.name)
        result.matrix = self._matrix
        return result

    def draw(self, save_dir: Path, on_plot: Callable[..., None]) -> None:
        """Ultralytics' curves of every part (F1/P/R/PR) and the confusion matrices into ``save_dir``."""
        self._process(self._stats, save_dir=save_dir, plot=True, on_plot=on_plot)
        for normalize in (True, False):
            self.confusion().plot(normalize=normalize, save_dir=save_dir, on_plot=on_plot)

    def table(self) -> str:
        """Ultralytics' printed validation table (one column group per part) with F1 columns; after ``compute``."""
        return per_class_table(self.results, self.task.parts, self.image_count)


def per_class_results(metrics: DetMetrics, part: Any, suffix: str = "B") -> dict[str, float]:
    """``metrics/<metric>(<suffix>)/<class name>`` for every class with labels, from one processed part."""
    return {
        f"metrics/{metric}({suffix})/{metrics.names[int(c)]}": float(getattr(part, attribute)[j])
        for metric, attribute in PER_CLASS_METRICS.items()
        for j, c in enumerate(part.ap_class_index)
    }


class ClassificationMetrics(Metric):
    """Top-1/top-5 accuracy and fitness exactly as Ultralytics' ClassificationValidator computes them, plus per-class
    precision, recall and F1 of the top-1 prediction and the confusion matrix.

    Ultralytics reports no per-class classification metric; these are yolo-lightning's own, over the validation
    images: for class c, precision = top-1 predictions of c that are right / top-1 predictions of c, recall = images of
    c predicted c / images of c, F1 their harmonic mean (0 when both are 0), logged as ``metrics/precision/<class>``,
    ``metrics/recall/<class>``, ``metrics/F1/<class>``, with their mean over the classes with images as
    ``metrics/precision``, ``metrics/recall``, ``metrics/F1``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, names: dict[int, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = dict(names)
        self.top_k = min(len(self.names), 5)  # as ClassificationValidator.update_metrics
        self.add_state("pred", default=[], dist_reduce_fx="cat")  # top-k class indices, flattened
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.results: ClassifyMetrics | None = None
        self.image_count = 0
        self._per_class: dict[str, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._matrix: np.ndarray | None = None

    def update(self, pred: list[torch.Tensor], target: list[torch.Tensor]) -> None:
        """Add batches: ``pred`` of shape (N, top_k) sorted by confidence, ``target`` (N,), as the validator keeps them."""
        if pred:
            self.pred.append(torch.cat(pred).to(self.device, torch.float32).reshape(-1))
            self.target.append(torch.cat(target).to(self.device, torch.float32).reshape(-1))

    def update_from(self, validator: Any) -> None:
        """Take what the validator's ``update_metrics`` collected since its ``init_metrics``."""
        self.update(validator.pred, validator.targets)

    def compute(self) -> dict[str, torch.Tensor]:
        """Ultralytics' ``results_dict`` (accuracy_top1/top5, fitness) and the per-class top-1 P/R/F1."""
        pred = torch.from_numpy(_as_numpy(self.pred)).long().reshape(-1, self.top_k)
        target = torch.from_numpy(_as_numpy(self.target)).long()
        metrics = ClassifyMetrics()
        metrics.process([target], [pred])
        self.results, self.image_count = metrics, len(target)
        matrix = ConfusionMatrix(names=self.names, task="classify")
        matrix.process_cls_preds([pred], [target])
        self._matrix = matrix.matrix
        results = dict(metrics.results_dict)
        results.update(self._per_class_results(pred[:, 0].numpy(), target.numpy()))
        return {key: torch.tensor(float(value), device=self.device) for key, value in results.items()}

    def _per_class_results(self, top1: np.ndarray, target: np.ndarray) -> dict[str, float]:
        """Top-1 precision, recall and F1 of every class with validation images, and their means."""
        results: dict[str, float] = {}
        present = [c for c in self.names if (target == c).any()]
        values = {"precision": [], "recall": [], "F1": []}
        for c in present:
            right = float(((top1 == c) & (target == c)).sum())
            precision = right / max(float((top1 == c).sum()), 1.0)
            recall = right / float((target == c).sum())
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            for metric, value in zip(values, (precision, recall, f1)):
                values[metric].append(value)
                results[f"metrics/{metric}/{self.names[c]}"] = value
        for metric, per_class in values.items():
            results[f"metrics/{metric}"] = float(np.mean(per_class)) if per_class else 0.0
        self._per_class = {"classes": np.array(present), **{k: np.array(v) for k, v in values.items()}}
        self._counts = {c: int((target == c).sum()) for c in present}
        return results

    def confusion(self) -> ConfusionMatrix:
        """Ultralytics' classification ``ConfusionMatrix`` of the top-1 predictions; after ``compute``."""
        result = ConfusionMatrix(names=self.names, task="classify")
        result.matrix = self._matrix
        return result

    def draw(self, save_dir: Path, on_plot: Callable[..., None]) -> None:
        """The confusion matrices into ``save_dir`` (Ultralytics draws no curves for classification)."""
        for normalize in (True, False):
            self.confusion().plot(normalize=normalize, save_dir=save_dir, on_plot=on_plot)

    def table(self) -> str:
        """Top-1/top-5 accuracy and the per-class top-1 precision, recall and F1; after ``compute``."""
        return classification_table(self.results, self.names, self._per_class, self._counts, self.image_count)


def _as_numpy(state: list[torch.Tensor] | torch.Tensor) -> np.ndarray:
    """A ``cat`` state (a list before sync, a tensor after) as one numpy array."""
    if isinstance(state, list) and not state:
        return np.zeros(0, dtype=np.float32)
    return dim_zero_cat(state).cpu().numpy()


_METRICS_OF: dict[type, Callable[[dict[int, str]], Metric]] = {
    ClassifyMetrics: ClassificationMetrics,
    SemanticMetrics: SemanticSegmentationMetrics,
    DepthMetrics: DepthEstimationMetrics,
}


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

    def running_means(self) -> dict[str, float]:
        """``{name: mean so far}`` over this process's batches (one host sync)."""
        if not self._sums:
            return {}
        means = (torch.stack([total.float() for total in self._sums.values()]) / self.batches).tolist()
        return dict(zip(self._sums, means))

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


class DistributedMeanAveragePrecision(MeanAveragePrecision):
    """torchmetrics' COCO mAP (``map_cross_check``) whose per-image states cross DDP ranks whole, one collective.

    torchmetrics gathers ``MeanAveragePrecision``'s list states element by element, so ranks that saw different numbers
    of images (uneven validation shards, a rank left idle) issue different numbers of collectives: gloo aborts, NCCL
    hangs or mixes another state's data in. Here each rank's lists go as one object; in rank order, the images come
    back in the validation order one process sees.
    """

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        group = process_group or self.process_group
        names = [name for name, default in self._defaults.items() if isinstance(default, list)]
        local = {name: [_to_cpu(item) for item in getattr(self, name)] for name in names}
        gathered: list[Any] = [None] * torch.distributed.get_world_size(group)
        torch.distributed.all_gather_object(gathered, local, group=group)
        for name in names:
            setattr(self, name, [_to_device(item, self.device) for part in gathered for item in part[name]])


def _to_cpu(item: Any) -> Any:
    """A state entry (a tensor, or a tuple of them for masks) on the CPU, to be pickled."""
    return tuple(_to_cpu(t) for t in item) if isinstance(item, tuple) else item.cpu()


def _to_device(item: Any, device: torch.device) -> Any:
    """A gathered state entry back on the metric's device."""
    return tuple(_to_device(t, device) for t in item) if isinstance(item, tuple) else item.to(device)
