"""Ultralytics' tasks as data: one description per task of what the module, datamodule, metrics and export change.

Every per-task difference lives here, so ``YOLOModule``, ``YOLODataModule``, the metrics, the checks, the export and
the CLI read a ``Task`` instead of branching on the task's name. The classes come from Ultralytics itself (its
models, validators, metrics classes and datasets), so every task keeps Ultralytics' numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from torch import nn
from torch.utils.data import Dataset
from ultralytics.data.build import build_yolo_dataset
from ultralytics.data.dataset import ClassificationDataset
from ultralytics.models.rtdetr.predict import RTDETRPredictor
from ultralytics.models.rtdetr.train import RTDETRTrainer
from ultralytics.models.rtdetr.val import RTDETRDataset, RTDETRValidator
from ultralytics.models.yolo.classify import (
    ClassificationPredictor,
    ClassificationTrainer,
    ClassificationValidator,
)
from ultralytics.models.yolo.detect import (
    DetectionPredictor,
    DetectionTrainer,
    DetectionValidator,
)
from ultralytics.models.yolo.obb import OBBPredictor, OBBTrainer, OBBValidator
from ultralytics.models.yolo.depth import DepthPredictor, DepthTrainer, DepthValidator
from ultralytics.models.yolo.pose import PosePredictor, PoseTrainer, PoseValidator
from ultralytics.models.yolo.segment import (
    SegmentationPredictor,
    SegmentationTrainer,
    SegmentationValidator,
)
from ultralytics.models.yolo.semantic import (
    SemanticSegmentationPredictor,
    SemanticSegmentationTrainer,
    SemanticSegmentationValidator,
)
from ultralytics.nn.tasks import (
    ClassificationModel,
    DepthModel,
    DetectionModel,
    OBBModel,
    PoseModel,
    RTDETRDetectionModel,
    SegmentationModel,
    SemanticSegmentationModel,
    guess_model_task,
)
from ultralytics.utils import IterableSimpleNamespace
from ultralytics.data.utils import add_polygon_background
from ultralytics.utils.metrics import (
    ClassifyMetrics,
    DepthMetrics,
    DetMetrics,
    OBBMetrics,
    PoseMetrics,
    SegmentMetrics,
    SemanticMetrics,
)

from yolo_lightning.depth_calibration import calibrate_depth_weights
from yolo_lightning.errors import ConfigurationError

GRID_STRIDE = 32  # DetectionTrainer rounds imgsz to max(model stride, 32); every shipped detector has stride 32


def _yolo_dataset(hyp: IterableSimpleNamespace, path: str, batch: int, data: dict[str, Any], mode: str) -> Dataset:
    """DetectionTrainer.build_dataset: YOLODataset for the namespace's task (val: rect, pad 0.5)."""
    return build_yolo_dataset(hyp, path, batch, data, mode=mode, rect=mode == "val", stride=GRID_STRIDE)


def _rtdetr_dataset(hyp: IterableSimpleNamespace, path: str, batch: int, data: dict[str, Any], mode: str) -> Dataset:
    """RTDETRTrainer.build_dataset: RTDETRDataset, no rect validation."""
    return RTDETRDataset(
        img_path=path, imgsz=hyp.imgsz, batch_size=batch, augment=mode == "train", hyp=hyp, rect=False,
        cache=hyp.cache or None, single_cls=hyp.single_cls, prefix=f"{mode}: ", classes=hyp.classes, data=data,
        fraction=hyp.fraction if mode == "train" else 1.0,
    )  # fmt: skip


def _classification_dataset(
    hyp: IterableSimpleNamespace, path: str, batch: int, data: dict[str, Any], mode: str
) -> Dataset:
    """ClassificationTrainer.build_dataset: an image-folder dataset aligned to the data's class names."""
    return ClassificationDataset(path, hyp, augment=mode == "train", prefix=mode, names=data["names"])


def _no_model_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    return {}


def _pose_model_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    """PoseTrainer.get_model: the keypoint shape comes from the data (a list, as Ultralytics' loss compares it)."""
    return {"data_kpt_shape": list(data["kpt_shape"])}


def _data_as_read(data: dict[str, Any]) -> dict[str, Any]:
    """The dataset config as check_det_dataset reads it."""
    return data


def _pixel_class_weights(dataset: Dataset, nc: int, power: float) -> Any:
    """SemanticSegmentationTrainer's class weights: pixels per class (``get_class_counts``), ENet's inverse-log
    ``(1 / ln(1.02 + p)) ** power`` (``compute_class_weights``), normalised to a mean of 1 (``set_class_weights``)."""
    view = SEMANTIC.trainer_view(data={"nc": nc}, train_loader=SimpleNamespace(dataset=dataset))
    counts = SEMANTIC.trainer_class.get_class_counts(view)
    if not counts.any():
        raise ConfigurationError("class_weights='inverse_frequency': no mask pixel of a class in the training masks.")
    view.args = SimpleNamespace(cls_pw=power)
    weights = SEMANTIC.trainer_class.compute_class_weights(view, counts)
    return weights / weights.mean()


def _no_data_attributes(data: dict[str, Any], nc: int) -> dict[str, Any]:
    return {}


def _pose_attributes(data: dict[str, Any], nc: int) -> dict[str, Any]:
    """PoseTrainer.set_model_attributes: keypoint shape, OKS sigmas and keypoint names (default "0", "1"...)."""
    kpt_shape = list(data["kpt_shape"])
    names = data.get("kpt_names") or {i: [str(k) for k in range(kpt_shape[0])] for i in range(nc)}
    return {"kpt_shape": kpt_shape, "kpt_oks_sigmas": data.get("kpt_oks_sigmas"), "kpt_names": names}


@dataclass(frozen=True)
class Task:
    """What one Ultralytics task changes, read by every part of yolo-lightning instead of branching on its name.

    Attributes:
        name: Ultralytics' task name (``train_args["task"]``, ``runs/<name>/train``).
        model_class: the network class, built as ``model_class(cfg, nc=..., **model_kwargs(data))``.
        validator_class: the task's validator, whose ``preprocess``/``postprocess``/``update_metrics`` validation
            reuses.
        metrics_class: Ultralytics' metrics class the validator fills (its ``stats`` keys are the states to gather).
        trainer_class: the task's Ultralytics trainer, whose ``preprocess_batch`` prepares training batches and whose
            plotting methods draw the run folder's images.
        predictor_class: the task's Ultralytics predictor (letterbox, post-processing, ``Results``).
        parts: ``(key suffix, metrics attribute)`` of each evaluated part, e.g. ``("M", "seg")``: ``metrics/mAP50(M)``.
        build_dataset: ``(hyp, path, batch, data, mode) -> Dataset``, as the task's trainer builds it.
        model_kwargs: extra ``model_class`` arguments taken from the data (pose: ``data_kpt_shape``).
        data_attributes: ``(data, nc) -> {attribute: value}`` set on the model, as the trainer's
            ``set_model_attributes`` (pose: ``kpt_shape``, ``kpt_oks_sigmas``, ``kpt_names``).
        val_batch_factor: validation batch = training batch x this (DetectionTrainer: 2, but 1 for OBB).
        default_imgsz: Ultralytics' image size for the task (classify: 224).
        finds_objects: boxes, NMS, mosaic, ``max_det``; False for classify.
        val_shuffled: the validation loader is shuffled like the training one (classify: build_dataloader's default).
        coco_cross_check: axis-aligned boxes torchmetrics' COCO mAP can cross-check (detect).
        labels: how the data stores its labels: ``"rows"`` (YOLO txt files), ``"folders"`` (an image-folder tree),
            ``"masks"`` (a class id per pixel: ``masks_dir`` PNGs, else polygon rows), ``"depth"`` (depth maps).
        multi_scale: the trainer's ``preprocess_batch`` resizes batches for ``multi_scale`` (not classify).
        complete_data: what the task's trainer ``get_dataset`` adds to the dataset config (semantic polygons: a
            background class).
        calibrate_weights: what the task's trainer does to best.pt and last.pt after the final validation, as
            ``(weights, validation dataset, batch, device, data, plot folder, network)`` (depth: the output
            calibration, also set on the trained network).
        weighted_classes: the loss has per-class terms ``class_weights`` can weight (not depth).
        inverse_frequency: ``(training dataset, nc, power) -> weights`` of ``class_weights="inverse_frequency"``
            where the task's trainer has its own rule (semantic: pixel counts, ENet's inverse log); None: objects
            (images for classify) counted, ``(max / count) ** power``.
    """

    name: str
    model_class: type[nn.Module]
    validator_class: type
    metrics_class: type
    trainer_class: type
    predictor_class: type
    parts: tuple[tuple[str, str], ...]
    build_dataset: Callable[..., Dataset] = _yolo_dataset
    model_kwargs: Callable[[dict[str, Any]], dict[str, Any]] = _no_model_kwargs
    data_attributes: Callable[[dict[str, Any], int], dict[str, Any]] = _no_data_attributes
    val_batch_factor: int = 2
    default_imgsz: int = 640
    finds_objects: bool = True
    val_shuffled: bool = False
    coco_cross_check: bool = False
    labels: str = "rows"
    multi_scale: bool = True
    complete_data: Callable[[dict[str, Any]], dict[str, Any]] = _data_as_read
    calibrate_weights: Callable[..., None] | None = None
    weighted_classes: bool = True
    inverse_frequency: Callable[[Dataset, int, float], Any] | None = None

    def trainer_view(self, **attributes: Any) -> Any:
        """An instance of the task's Ultralytics trainer, not initialised, holding only ``attributes``: what its
        methods (``preprocess_batch``, plotting, ``get_class_counts``) read, so yolo-lightning calls them as they are."""
        view = object.__new__(self.trainer_class)
        view.__dict__.update(attributes)
        return view

    def per_pixel_labels(self, config: dict[str, Any]) -> bool:
        """True when ``config``'s labels are per-pixel files (masks in ``masks_dir``, depth maps), not label rows."""
        return self.labels == "depth" or (self.labels == "masks" and bool(config.get("masks_dir")))

    @property
    def is_rtdetr(self) -> bool:
        """True for RT-DETR, whose loss, dataset and validator differ from YOLO's detect."""
        return self.model_class is RTDETRDetectionModel


DETECT = Task(
    "detect", DetectionModel, DetectionValidator, DetMetrics, DetectionTrainer, DetectionPredictor, (("B", "box"),),
    coco_cross_check=True,
)  # fmt: skip
RTDETR = Task(
    "detect", RTDETRDetectionModel, RTDETRValidator, DetMetrics, RTDETRTrainer, RTDETRPredictor, (("B", "box"),),
    build_dataset=_rtdetr_dataset, coco_cross_check=True,
)  # fmt: skip
SEGMENT = Task(
    "segment", SegmentationModel, SegmentationValidator, SegmentMetrics, SegmentationTrainer, SegmentationPredictor,
    (("B", "box"), ("M", "seg")),
)  # fmt: skip
POSE = Task(
    "pose", PoseModel, PoseValidator, PoseMetrics, PoseTrainer, PosePredictor, (("B", "box"), ("P", "pose")),
    model_kwargs=_pose_model_kwargs, data_attributes=_pose_attributes,
)  # fmt: skip
OBB = Task("obb", OBBModel, OBBValidator, OBBMetrics, OBBTrainer, OBBPredictor, (("B", "box"),), val_batch_factor=1)
CLASSIFY = Task(
    "classify", ClassificationModel, ClassificationValidator, ClassifyMetrics, ClassificationTrainer,
    ClassificationPredictor, (), build_dataset=_classification_dataset, default_imgsz=224,
    finds_objects=False, val_shuffled=True, labels="folders", multi_scale=False,
)  # fmt: skip
SEMANTIC = Task(
    "semantic", SemanticSegmentationModel, SemanticSegmentationValidator, SemanticMetrics, SemanticSegmentationTrainer,
    SemanticSegmentationPredictor, (), val_batch_factor=1, finds_objects=False, labels="masks",
    complete_data=add_polygon_background, inverse_frequency=_pixel_class_weights,
)  # fmt: skip
DEPTH = Task(
    "depth", DepthModel, DepthValidator, DepthMetrics, DepthTrainer, DepthPredictor, (), val_batch_factor=1,
    finds_objects=False, labels="depth", calibrate_weights=calibrate_depth_weights, weighted_classes=False,
)  # fmt: skip
TASKS: dict[str, Task] = {task.name: task for task in (DETECT, SEGMENT, SEMANTIC, DEPTH, CLASSIFY, POSE, OBB)}


def task_named(name: str) -> Task:
    """The Task called ``name`` (one of Ultralytics' ``TASKS``), or a clear error."""
    if name in TASKS:
        return TASKS[name]
    raise ConfigurationError(f"task={name!r}: choose one of {', '.join(TASKS)}.")


def task_of(cfg: dict[str, Any], task: str | None = None) -> Task:
    """The Task of a parsed model YAML, as Ultralytics infers it (``guess_model_task``), or the explicit ``task``.

    An explicit task must match the network's head: a detect YAML cannot train as ``segment``.
    """
    if any("RTDETRDecoder" in str(layer[2]) for layer in cfg.get("head", [])):
        guessed, spec = "detect", RTDETR
    else:
        guessed = guess_model_task(cfg) or "detect"
        spec = task_named(guessed)
    if task is not None and task != guessed:
        raise ConfigurationError(
            f"task={task!r} does not fit the model: its head ({cfg['head'][-1][-2]}) makes it a {guessed!r} model. "
            f"Use a {task} model YAML or .pt, or leave task unset."
        )
    return spec
