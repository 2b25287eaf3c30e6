"""Per-class weights for the classification loss, applied as BCE ``pos_weight`` to an Ultralytics criterion.

Ultralytics' guide weights classes by subclassing ``v8DetectionLoss`` and replacing ``self.bce`` with
``nn.BCEWithLogitsLoss(pos_weight=w, reduction="none")``. This module does the same to the criterion that
``model.init_criterion()`` returns, with no custom model or trainer class:

* ``v8DetectionLoss`` (YOLOv8, YOLO11, and its segment/pose/OBB subclasses): ``criterion.bce`` is replaced.
* ``E2ELoss`` / ``E2EDetectLoss`` (YOLO26): both branches, ``one2many`` and ``one2one``, are weighted.
* ``v8ClassificationLoss`` (classify): replaced by ``WeightedClassificationLoss``, cross-entropy with ``weight=w``
  (a weighted mean over the batch; Ultralytics has no classification class weights).
* ``DETRLoss`` / ``RTDETRDetectionLoss`` (RT-DETR): ``criterion.vfl`` (used whenever the batch has objects) and
  ``criterion.fl`` (used when it has none) are replaced by versions whose BCE has ``pos_weight``. Every decoder layer,
  the encoder output and the denoising queries go through them, so all are weighted.
* ``SemanticSegmentationLoss`` (semantic): its cross-entropy gets ``weight=w``, the buffer Ultralytics' own ``cls_pw``
  weights fill (a weighted mean over the valid pixels); a binary model (one class, BCE) takes none, as in Ultralytics.
  ``"inverse_frequency"`` is that trainer's own rule (pixel counts, ENet's inverse log; ``tasks.SEMANTIC``).
* ``DepthLoss26`` (depth): no classes to weight; refused.

``pos_weight`` scales only the positive-target term, ``-w_c * y * log(sigmoid(x))``; the negative term is untouched.
That differs from Ultralytics' native ``model.class_weights`` (``cls_pw``), which multiplies the whole BCE term of a
class; this module never sets it. All loss objects are plain module-level classes, so weighted criteria can be deep-
copied and pickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.models.utils.loss import DETRLoss
from ultralytics.utils.loss import (
    DepthLoss26,
    E2EDetectLoss,
    E2ELoss,
    SemanticSegmentationLoss,
    FocalLoss,
    VarifocalLoss,
    v8ClassificationLoss,
    v8DetectionLoss,
)
from ultralytics.utils.torch_utils import autocast

from yolo_lightning.errors import ConfigurationError

__all__ = [
    "CLASS_WEIGHT_SCHEMES",
    "WeightedBCEWithLogitsLoss",
    "WeightedClassificationLoss",
    "WeightedFocalLoss",
    "WeightedVarifocalLoss",
    "apply_class_weights",
    "attach_criterion",
    "class_instance_counts",
    "inverse_frequency_weights",
    "resolve_class_weights",
    "weighted_criterion",
]

CLASS_WEIGHT_SCHEMES = ("inverse_frequency",)


class WeightedBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss(pos_weight=w, reduction="none")`` whose ``pos_weight`` follows the input's device."""

    def __init__(self, pos_weight: torch.Tensor) -> None:
        """Keep ``pos_weight`` (one weight per class, the last input dimension) as a buffer."""
        super().__init__(reduction="none", pos_weight=_as_weight_tensor(pos_weight))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Element-wise ``-(w * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))``."""
        self.pos_weight = _on_device(self.pos_weight, input.device)
        return F.binary_cross_entropy_with_logits(input, target, pos_weight=self.pos_weight, reduction=self.reduction)


class WeightedClassificationLoss(v8ClassificationLoss):
    """Ultralytics' classification loss with per-class cross-entropy ``weight``.

    PyTorch's weighted mean: ``sum_i w[y_i] * CE_i / sum_i w[y_i]`` over the batch, so the loss keeps its scale and
    a weighted class's images count ``w`` times as much as an unweighted one's.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = _as_weight_tensor(weight)

    def __call__(self, preds: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``v8ClassificationLoss`` with ``F.cross_entropy(..., weight=w)``."""
        preds = preds[1] if isinstance(preds, (list, tuple)) else preds
        self.weight = _on_device(self.weight, preds.device)
        loss = F.cross_entropy(preds, batch["cls"], weight=self.weight.to(preds.dtype), reduction="mean")
        return loss, {"loss": loss.detach()}


class WeightedVarifocalLoss(VarifocalLoss):
    """Ultralytics' ``VarifocalLoss`` with a class-weighted BCE: ``BCE(pred, gt_score, pos_weight=w) * vfl_weight``."""

    def __init__(self, gamma: float, alpha: float, pos_weight: torch.Tensor) -> None:
        """Same ``gamma``/``alpha`` as ``VarifocalLoss``, plus one ``pos_weight`` per class."""
        super().__init__(gamma=gamma, alpha=alpha)
        self.register_buffer("pos_weight", _as_weight_tensor(pos_weight))

    def forward(self, pred_score: torch.Tensor, gt_score: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Varifocal loss as ``VarifocalLoss.forward``, its BCE weighted per class on the positive term."""
        weight = self.alpha * pred_score.sigmoid().pow(self.gamma) * (1 - label) + gt_score * label
        self.pos_weight = _on_device(self.pos_weight, pred_score.device)
        with autocast(enabled=False, device=pred_score.device.type):
            bce = F.binary_cross_entropy_with_logits(
                pred_score.float(), gt_score.float(), pos_weight=self.pos_weight, reduction="none"
            )
            return (bce * weight).mean(1).sum()


class WeightedFocalLoss(FocalLoss):
    """Ultralytics' ``FocalLoss`` with a class-weighted BCE (``pos_weight``) under its focal and alpha factors."""

    def __init__(self, gamma: float, alpha: float, pos_weight: torch.Tensor) -> None:
        """Same ``gamma``/``alpha`` as ``FocalLoss``, plus one ``pos_weight`` per class."""
        super().__init__(gamma=gamma, alpha=alpha)
        self.register_buffer("pos_weight", _as_weight_tensor(pos_weight))

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Focal loss as ``FocalLoss.forward``, its BCE weighted per class on the positive term."""
        self.pos_weight = _on_device(self.pos_weight, pred.device)
        loss = F.binary_cross_entropy_with_logits(pred, label, pos_weight=self.pos_weight.to(pred.dtype), reduction="none")
        pred_prob = pred.sigmoid()
        p_t = label * pred_prob + (1 - label) * (1 - pred_prob)
        loss *= (1.0 - p_t) ** self.gamma
        if (self.alpha > 0).any():
            self.alpha = self.alpha.to(device=pred.device, dtype=pred.dtype)
            loss *= label * self.alpha + (1 - label) * (1 - self.alpha)
        return loss.mean(1).sum()


def class_instance_counts(source: Any, nc: int) -> np.ndarray:
    """Per-class instance counts (int64, length ``nc``) of an Ultralytics dataset: its objects' classes (``.labels``
    of a YOLO dataset, or that list itself), or its images' (``.samples`` of a classification dataset)."""
    if hasattr(source, "samples"):  # ClassificationDataset: (file, class index, ...) per image
        labels = [{"cls": sample[1]} for sample in source.samples]
    else:
        labels = getattr(source, "labels", source)
    classes = [np.asarray(label["cls"]).reshape(-1) for label in labels]
    classes = np.concatenate(classes).astype(np.int64) if classes else np.zeros(0, dtype=np.int64)
    bad = classes[(classes < 0) | (classes >= nc)]
    if bad.size:
        raise ConfigurationError(
            f"class_weights: the dataset labels contain class index {int(bad[0])}, outside 0..{nc - 1} (nc={nc}); "
            f"fix the labels or the dataset's names."
        )
    return np.bincount(classes, minlength=nc).astype(np.int64)


def inverse_frequency_weights(counts: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Per-class weights ``(max(counts) / counts) ** power``; classes with no instances get the mean weight."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or not np.isfinite(counts).all() or (counts < 0).any():
        raise ConfigurationError(
            f"class_weights='inverse_frequency' needs per-class instance counts as a non-empty 1-D array of finite "
            f"numbers >= 0, got {counts.tolist()}."
        )
    if (
        not isinstance(power, (int, float, np.integer, np.floating))
        or isinstance(power, bool)
        or not math.isfinite(power)
        or power < 0
    ):
        raise ConfigurationError(f"class_weights='inverse_frequency': power={power!r} must be a finite number >= 0.")
    present = counts > 0
    if not present.any():
        raise ConfigurationError(
            "class_weights='inverse_frequency': every class has zero instances in the training labels; "
            "check the dataset, or pass explicit per-class weights."
        )
    weights = (counts.max() / np.where(present, counts, 1.0)) ** power
    # As Ultralytics' compute_class_weights: absent classes get the mean weight of the present ones. With pos_weight
    # the value never matters for them (it only scales positive targets, and an absent class has none).
    return np.where(present, weights, weights[present].mean())


def resolve_class_weights(
    class_weights: Sequence[float] | Mapping[int | str, float] | str | None,
    names: dict[int, str],
    counts: np.ndarray | None = None,
    power: float = 1.0,
) -> torch.Tensor | None:
    """Turn a ``class_weights`` setting (None, 'inverse_frequency', a list or a {class: weight} dict) into a tensor."""
    nc = len(names)
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        if class_weights not in CLASS_WEIGHT_SCHEMES:
            raise ConfigurationError(
                f"class_weights={class_weights!r} is not a known scheme: valid choices are "
                f"{', '.join(repr(s) for s in CLASS_WEIGHT_SCHEMES)}, a list of {nc} per-class weights, "
                f"or a {{class_name: weight}} dict."
            )
        if counts is None:
            raise ConfigurationError(
                "class_weights='inverse_frequency' needs the training set's per-class instance counts: pass "
                "counts=class_instance_counts(dataset.labels, nc)."
            )
        counts = np.asarray(counts)
        if counts.shape != (nc,):
            raise ConfigurationError(
                f"class_weights='inverse_frequency': got counts for {counts.size} classes, expected {nc} "
                f"({_class_list(names)})."
            )
        return torch.as_tensor(inverse_frequency_weights(counts, power), dtype=torch.float32)
    if isinstance(class_weights, Mapping):
        values = _weights_from_mapping(class_weights, names)
    else:
        values = _weights_from_sequence(class_weights, names)
    for i, value in enumerate(values):
        if not _is_positive_finite(value):
            raise ConfigurationError(
                f"class_weights[{i}] ({_name(names, i)!r}) = {_show(value)} must be a finite number > 0."
            )
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def apply_class_weights(criterion: object, weights: torch.Tensor) -> object:
    """Make ``criterion``'s classification loss use BCE ``pos_weight=weights`` on every branch; returns it."""
    if isinstance(criterion, (E2ELoss, E2EDetectLoss)):  # YOLO26: weight both the one-to-many and one-to-one branch
        apply_class_weights(criterion.one2many, weights)
        apply_class_weights(criterion.one2one, weights)
    elif isinstance(criterion, v8ClassificationLoss):  # no object to patch: a weighted replacement
        return WeightedClassificationLoss(_checked_weights(weights, len(weights), type(criterion).__name__))
    elif isinstance(criterion, v8DetectionLoss):
        weights = _checked_weights(weights, criterion.nc, type(criterion).__name__)
        criterion.bce = WeightedBCEWithLogitsLoss(weights.to(criterion.device))
    elif isinstance(criterion, SemanticSegmentationLoss):
        if criterion.nc == 1:
            raise ConfigurationError(
                "class_weights: a one-class (binary) semantic model trains with BCE, which Ultralytics leaves unweighted; "
                "drop class_weights or add classes"
            )
        weights = _checked_weights(weights, criterion.nc, type(criterion).__name__)
        criterion.ce.register_buffer("weight", weights.to(criterion.device, criterion.dtype), persistent=False)
    elif isinstance(criterion, DepthLoss26):
        raise ConfigurationError("class_weights: a depth model has no classes to weight; drop class_weights")
    elif isinstance(criterion, DETRLoss):
        weights = _checked_weights(weights, criterion.nc, type(criterion).__name__)
        if criterion.fl is None:  # its BCE fallback builds nn.BCEWithLogitsLoss inline: there is no object to replace
            raise ConfigurationError(
                f"class_weights cannot be applied to a {type(criterion).__name__} built with use_fl=False (its plain "
                f"BCE is created inside _get_loss_class); use the criterion RTDETRDetectionModel.init_criterion() "
                f"returns (focal + varifocal loss)."
            )
        device = criterion.device if criterion.device is not None else weights.device
        weights = weights.to(device)
        criterion.fl = WeightedFocalLoss(criterion.fl.gamma, _scalar(criterion.fl.alpha), weights)
        if criterion.vfl is not None:
            criterion.vfl = WeightedVarifocalLoss(criterion.vfl.gamma, _scalar(criterion.vfl.alpha), weights)
    else:
        raise ConfigurationError(
            f"class_weights cannot be applied to a {type(criterion).__name__} criterion: supported are "
            f"v8DetectionLoss (YOLOv8/YOLO11 and its subclasses), E2ELoss (YOLO26) and DETRLoss/RTDETRDetectionLoss "
            f"(RT-DETR). Leave class_weights=None for this model."
        )
    return criterion


def attach_criterion(model: nn.Module, criterion: object) -> None:
    """Set ``model.criterion`` (what Ultralytics' ``model.loss`` uses) without registering it as a submodule.

    RT-DETR's criterion is an ``nn.Module``, and a class-weighted one holds ``pos_weight`` buffers: registered, they
    would enter the module's ``state_dict`` after the EMA copied it, so a checkpoint's raw weights hold keys that a
    resumed run (whose criterion does not exist yet) rejects. They are loss constants, rebuilt from the checkpoint's
    class weights, not model state; Ultralytics strips the criterion from every file it saves.
    """
    model._modules.pop("criterion", None)
    object.__setattr__(model, "criterion", criterion)


def weighted_criterion(model: nn.Module, weights: torch.Tensor | None) -> object:
    """``model.init_criterion()`` with ``weights`` applied as classification ``pos_weight`` (plain when None)."""
    criterion = model.init_criterion()
    return criterion if weights is None else apply_class_weights(criterion, weights)


def _on_device(weights: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``weights`` on ``device``, moved at the first step there and kept (the criterion is not model state, so the
    module's ``.to()`` never moves it): no host-to-device copy per step."""
    return weights if weights.device == device else weights.to(device)


def _as_weight_tensor(weights: torch.Tensor) -> torch.Tensor:
    """A detached float32 copy of a 1-D weight tensor."""
    return torch.as_tensor(weights, dtype=torch.float32).detach().clone()


def _checked_weights(weights: torch.Tensor, nc: int, criterion_name: str) -> torch.Tensor:
    """Validate a weight tensor against a criterion's class count and return it as float32."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.shape != (nc,):
        raise ConfigurationError(
            f"class_weights has shape {tuple(weights.shape)}, expected ({nc},): one weight per class of the "
            f"{criterion_name} criterion (nc={nc}). Build it with resolve_class_weights(..., names=model.names)."
        )
    bad = (~torch.isfinite(weights)) | (weights <= 0)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ConfigurationError(f"class_weights[{i}] = {_show(weights[i].item())} must be a finite number > 0.")
    return weights


def _weights_from_sequence(class_weights: object, names: dict[int, str]) -> list[object]:
    """The entries of a per-class weight sequence (list, tuple, array or tensor), checked for length."""
    if isinstance(class_weights, torch.Tensor):
        class_weights = class_weights.detach().cpu().tolist()
    elif isinstance(class_weights, np.ndarray):
        class_weights = class_weights.tolist()
    if not isinstance(class_weights, Sequence) or any(isinstance(v, (list, tuple)) for v in class_weights):
        raise ConfigurationError(
            f"class_weights={class_weights!r} must be None, 'inverse_frequency', a list of {len(names)} per-class "
            f"weights ({_class_list(names)}), or a {{class_name: weight}} dict."
        )
    if len(class_weights) != len(names):
        raise ConfigurationError(
            f"class_weights: got {len(class_weights)} weights, expected {len(names)}: "
            f"one weight per class, in class-index order ({_class_list(names)})."
        )
    return list(class_weights)


def _weights_from_mapping(class_weights: Mapping[int | str, float], names: dict[int, str]) -> list[object]:
    """Per-class weights from a {class name or index: weight} dict; classes not named get 1.0."""
    index_of = {name: i for i, name in names.items()}
    values: list[object] = [1.0] * len(names)
    seen: dict[int, object] = {}
    for key, value in class_weights.items():
        if isinstance(key, str) and key in index_of:
            i = index_of[key]
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= int(key) < len(names):
            i = int(key)
        else:
            raise ConfigurationError(
                f"class_weights has unknown class {key!r}: use class names or indices of {_class_list(names)}."
            )
        if i in seen:
            raise ConfigurationError(
                f"class_weights names class {i} ({_name(names, i)!r}) twice (as {seen[i]!r} and {key!r}); keep one."
            )
        seen[i] = key
        values[i] = value
    return values


def _is_positive_finite(value: object) -> bool:
    """True for a real number (not a bool) that is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(value)) and float(value) > 0


def _show(value: object) -> str:
    """A weight as it appears in error messages (``nan``, ``inf``, ``-1.0``, ``'a'``)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return str(float(value))
    return repr(value)


def _name(names: dict[int, str], i: int) -> str:
    """The name of class ``i`` (its index as text when unnamed)."""
    return names.get(i, str(i))


def _class_list(names: dict[int, str]) -> str:
    """The classes as ``0: 'a', 1: 'b'`` for error messages."""
    return ", ".join(f"{i}: {name!r}" for i, name in sorted(names.items()))


def _scalar(value: float | torch.Tensor) -> float:
    """A float from a number or a one-element tensor (FocalLoss keeps ``alpha`` as a tensor)."""
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)
