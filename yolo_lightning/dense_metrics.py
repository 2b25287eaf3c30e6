"""Validation metrics of the per-pixel tasks as torchmetrics ``Metric``s: semantic segmentation (mIoU, pixel accuracy,
per-class IoU) and depth (delta1..3, abs_rel, rmse, silog), each computed by Ultralytics' own metrics class.

Both Ultralytics classes accumulate sums (a confusion matrix; per-image depth errors), which sum over DDP ranks as they
are: Ultralytics' validators reduce the same sums (``gather_stats``) to rank 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchmetrics import Metric
from ultralytics.utils.metrics import ConfusionMatrix, DepthMetrics, SemanticMetrics

PER_CLASS_SEMANTIC = {"IoU": 0, "pixel_acc": 1}  # metrics/<name>/<class>: the index in SemanticMetrics.class_result


class SemanticSegmentationMetrics(Metric):
    """mIoU, pixel accuracy and fitness (mIoU) exactly as Ultralytics' SemanticSegmentationValidator computes them,
    plus each class's IoU and pixel accuracy (``metrics/IoU/<class>``, ``metrics/pixel_acc/<class>``) for the classes
    with pixels in the evaluated images, and the confusion matrix.

    ``update_from(validator)`` takes the validator's confusion matrix (ground truth x prediction) and per-class image
    counts; ``compute`` sums them over every rank and runs ``SemanticMetrics.process``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, names: dict[int, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = dict(names)
        size = SemanticMetrics(names=self.names).cm_nc  # binary (one class): background and foreground
        self.add_state("matrix", default=torch.zeros(size, size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images_with_class", default=torch.zeros(len(self.names), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.results: SemanticMetrics | None = None
        self.image_count = 0
        self._matrix_names: dict[int, str] = {}
        self._summed: tuple[torch.Tensor, torch.Tensor] | None = None  # the last compute()'s, for draw() after reset

    def update(self, matrix: torch.Tensor | None, images_with_class: np.ndarray, images: int) -> None:
        """Add a confusion matrix (ground truth x prediction), the images holding each class, the images seen."""
        if matrix is not None:
            self.matrix += matrix.to(self.matrix)
        self.images_with_class += torch.from_numpy(np.asarray(images_with_class, dtype=np.int64)).to(self.device)
        self.images += int(images)

    def update_from(self, validator: Any) -> None:
        """Take what the validator's ``update_metrics`` collected since its ``init_metrics``."""
        self._matrix_names = validator.confusion_matrix.names
        self.update(validator.metrics.matrix, validator.metrics.nt_per_image, validator.seen)

    def compute(self) -> dict[str, torch.Tensor]:
        """Ultralytics' ``results_dict`` (mIoU, pixel_acc, fitness) and every class's IoU and pixel accuracy."""
        self._summed = (self.matrix.clone(), self.images_with_class.clone()) if self.images else None
        metrics = self._process()
        self.results, self.image_count = metrics, int(self.images)
        results = dict(metrics.results_dict)
        for i, c in enumerate(metrics.ap_class_index):
            values = metrics.class_result(i)
            for name, index in PER_CLASS_SEMANTIC.items():
                results[f"metrics/{name}/{self.names[c]}"] = values[index]
        return {key: torch.tensor(float(value), device=self.device) for key, value in results.items()}

    def _process(self, **plot: Any) -> SemanticMetrics:
        """SemanticMetrics processed on the last compute()'s sums (``plot``: ``save_dir``, ``plot``, ``on_plot``)."""
        metrics = SemanticMetrics(names=self.names)
        if self._summed is not None:
            metrics.matrix = self._summed[0].float()  # float32, as the validator accumulates it
            metrics.nt_per_image = self._summed[1].cpu().numpy().astype(np.int32)
        metrics.process(**plot)
        return metrics

    def confusion(self) -> ConfusionMatrix:
        """Ultralytics' semantic ``ConfusionMatrix`` (prediction x ground truth, as the validator exports it)."""
        matrix = self._summed[0] if self._summed is not None else torch.zeros_like(self.matrix)
        names = self._matrix_names or {i: str(i) for i in range(len(matrix))}
        result = ConfusionMatrix(names=names, task="semantic")
        result.matrix = matrix.cpu().numpy().T.astype(float)
        return result

    def draw(self, save_dir: Path, on_plot: Callable[..., None]) -> None:
        """The per-class IoU bars and the confusion matrices into ``save_dir``, as Ultralytics draws them."""
        self._process(save_dir=save_dir, plot=True, on_plot=on_plot)
        for normalize in (True, False):
            self.confusion().plot(normalize=normalize, save_dir=save_dir, on_plot=on_plot)

    def table(self) -> str:
        """Ultralytics' printed validation table: all classes, then each class with pixels; after ``compute``."""
        metrics = self.results
        row = "%22s" + "%11i" * 2 + "%11.3g" * len(metrics.keys)
        lines = [("%22s" + "%11s" * 4) % ("Class", "Images", "Pixels", "mIoU", "PixAcc")]
        lines.append(row % ("all", self.image_count, metrics.nt_per_class.sum(), *metrics.mean_results()))
        for i, c in enumerate(metrics.ap_class_index):
            values = metrics.class_result(i)
            lines.append(row % (self.names[c], metrics.nt_per_image[c], metrics.nt_per_class[c], *values))
        return "\n".join(lines)


class DepthEstimationMetrics(Metric):
    """delta1, delta2, delta3, abs_rel, rmse, silog and fitness (delta1) exactly as Ultralytics' DepthValidator
    computes them: per-image values (median-aligned, pixels within the data's ``max_depth``), averaged over the images
    of every rank. Depth has no classes, hence no per-class values.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, names: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("totals", default=torch.zeros(6, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.max_depth = 100.0  # the validator's (the data.yaml's max_depth), taken at update_from
        self.results: DepthMetrics | None = None
        self.image_count = 0

    def update(self, totals: torch.Tensor | None, images: float) -> None:
        """Add per-image metric sums (delta1, delta2, delta3, abs_rel, rmse, silog) over ``images`` images."""
        if totals is not None:
            self.totals += totals.to(self.totals)
            self.images += float(images)

    def update_from(self, validator: Any) -> None:
        """Take the per-image sums the validator's ``update_metrics`` collected since its ``init_metrics``."""
        self.max_depth = validator.metrics.max_depth
        # Ultralytics keeps its sums private; DepthValidator.gather_stats reads them the same way
        self.update(validator.metrics._totals, validator.metrics._count)

    def compute(self) -> dict[str, torch.Tensor]:
        """Ultralytics' ``results_dict`` over every rank's images."""
        metrics = DepthMetrics(max_depth=self.max_depth)
        if self.images:
            metrics._totals, metrics._count = self.totals.cpu(), float(self.images)
        metrics.process()
        self.results, self.image_count = metrics, int(self.images)
        return {key: torch.tensor(float(value), device=self.device) for key, value in metrics.results_dict.items()}

    def draw(self, save_dir: Path, on_plot: Callable[..., None]) -> None:
        """Nothing: Ultralytics draws no curve or matrix for depth (its validation batches are drawn as images)."""

    def table(self) -> str:
        """Ultralytics' printed depth row (DepthValidator.print_results); after ``compute``."""
        r = self.results.results_dict
        header = ("%22s" + "%11s" * 5) % ("Class", "Images", "delta1", "abs_rel", "rmse", "silog")
        values = [r[f"metrics/{k}"] for k in ("delta1", "abs_rel", "rmse", "silog")]
        return header + "\n" + ("%22s" + "%11i" + "%11.4g" * 4) % ("depth_val", self.image_count, *values)
