"""``YOLOModule``: an Ultralytics model of any task, its own loss and its trainer's recipe as a LightningModule."""

from __future__ import annotations

import importlib.util
from contextlib import AbstractContextManager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from ultralytics.cfg import DEFAULT_CFG
from ultralytics.engine.results import Results
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import IterableSimpleNamespace

from yolo_lightning._offline import USER_THREADS
from yolo_lightning.allocator import keep_freed_memory_for_reuse
from yolo_lightning.backbone_lr import (
    apply_rtdetr_auto_optimizer,
    check_backbone_lr_ratio,
    split_backbone_groups,
)
from yolo_lightning.callbacks import (
    CloseMosaic,
    NonFiniteRecovery,
    RunReport,
    UltralyticsCheckpoint,
    UltralyticsEMA,
    UltralyticsModelSummary,
    UltralyticsProgressBar,
)
from yolo_lightning.class_weights import (
    attach_criterion,
    class_instance_counts,
    resolve_class_weights,
    weighted_criterion,
)
from yolo_lightning.sampling import PADDING_KEY
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.finite import finite_flag
from yolo_lightning.freezing import freeze_layer_fragments
from yolo_lightning.hardware import (
    check_precision,
    clear_accelerator_memory,
    cores_per_process,
    evaluation_autocast,
    evaluation_half,
    fall_back_from_broken_amp,
    keep_runtime_fused,
    other_programs_load,
    plan_threads,
    unscale_before_clipping,
    use_channels_last,
)
from yolo_lightning.hyperparameters import (
    DATAMODULE_ARGS,
    MODULE_ARGS,
    check_no_unknown_arguments,
    ultralytics_namespace,
)
from yolo_lightning.metrics import (
    ClassificationMetrics,
    DetectionMetrics,
    DistributedMeanAveragePrecision,
    EpochLossMeans,
    validation_metrics,
)
from yolo_lightning.models import build_model, model_config, weights_names
from yolo_lightning.predict import predict_batch, task_predictor
from yolo_lightning.recipe import Warmup, build_optimizer, lr_lambda
from yolo_lightning.reports import log_images, save_validation_plots
from yolo_lightning.run_folder import claim_run_folder, default_run_folder, run_root
from yolo_lightning.tasks import Task, task_of
from yolo_lightning.version import yolo_lightning_version

D = DEFAULT_CFG
DEFAULT_MAX_NORM = 10.0  # DetectionTrainer.optimizer_step clips at this norm
# The data arguments of the run (batch, mosaic, workers...): read by losses and validators, written to args.yaml and
# best.pt's train_args. Not the data path (set once resolved) nor predict's source.
DATA_ARGS_IN_MODEL_ARGS = DATAMODULE_ARGS - {"data", "source", "vid_stride"}
PLOTTED_VAL_BATCHES = 3  # BaseValidator: val_batch0..2_labels.jpg / _pred.jpg


class YOLOModule(L.LightningModule):
    """Train and validate an Ultralytics model of any task (detect, segment, pose, obb, classify; RT-DETR) exactly as
    its Ultralytics trainer does (``DetectionTrainer``, ``SegmentationTrainer``...), inside ``lightning.Trainer``.

    Hyper-parameters keep Ultralytics' train-argument names and defaults. The task comes from the model, as Ultralytics
    infers it; everything that differs per task is read from its ``Task`` description (``yolo_lightning.tasks``). The
    network is built in ``setup`` once the datamodule's class names are known (or at once when ``names`` is given, as
    when loading a checkpoint).

    Args:
        model: A model YAML shipped with Ultralytics (``yolo26n.yaml``, ``yolo26n-seg.yaml``, ``yolo11n-pose.yaml``,
            ``yolov8n-obb.yaml``, ``yolo26n-cls.yaml``, ``rtdetr-l.yaml``...), a YAML path, or a ``.pt`` checkpoint
            whose weights are transferred (also when ``nc`` differs): a local file, or official weights by name
            (``yolo11n.pt``, ``yolo26n-seg.pt``, ``rtdetr-l.pt``...), downloaded as Ultralytics does.
        task: Ultralytics' ``task``; inferred from the model when omitted, and an error when the model does not fit.
        box, cls, dfl, pose, kobj, rle: loss gains, as Ultralytics names them (pose, kobj, rle: pose models).
        dropout: classification head dropout (classify models).
        freeze: Ultralytics' ``freeze``: the first N layers, or a list of layer indices / parameter-name fragments.
        conf, iou, max_det, nms, agnostic_nms: validation settings, as ``DetectionValidator`` uses them
            (``nms=False`` validates YOLO26's end-to-end one-to-one head).
        channels_last: Ultralytics' ``channels_last``: ``None`` (default) trains in channels-last memory format on CUDA,
            as Ultralytics does; ``False`` turns it off; ``True`` asks for it (CUDA only, with a warning elsewhere).
        names: class names; taken from the datamodule when omitted.
        model_yaml: the network's architecture (a parsed model YAML). Checkpoints store it, so a ``.ckpt`` rebuilds its
            network without the ``.pt`` or YAML file ``model`` named; when given, the network is built from it.
        plots: like Ultralytics, after the last epoch's validation (and after ``Trainer.validate``/``test``) save the
            F1/P/R/PR curves and confusion matrices in the run folder and send them to loggers that take images.
        map_cross_check: also compute COCO mAP with ``torchmetrics.detection.MeanAveragePrecision`` (faster-coco-eval,
            300 detections), logged as ``metrics/coco/mAP50(B)`` and ``metrics/coco/mAP50-95(B)``.
        backbone_lr_ratio: per-layer learning rates: the backbone (``model.yaml["backbone"]``'s layers) trains at
            ``lr x backbone_lr_ratio`` in its own weight/bn/bias groups, through warmup and schedule. For RT-DETR,
            ``optimizer="auto"`` then means AdamW, lr0 1e-4, warmup_bias_lr 0 (the guide's RTDETRBackboneLRTrainer).
        class_weights: per-class weights of the classification loss, applied as BCE ``pos_weight`` (both branches of
            YOLO26's end-to-end loss, the v8 loss, RT-DETR's varifocal/focal loss): a list with one weight per class,
            a ``{class name: weight}`` dict (others 1.0), or ``"inverse_frequency"``: ``max(count) / count`` over the
            training labels, raised to ``class_weights_power`` (like Ultralytics' ``cls_pw``; 0.5 dampens).
    """

    def __init__(
        self,
        model: str | dict[str, Any] = "yolo26n.yaml",
        task: str | None = None,
        optimizer: str = D.optimizer,
        lr0: float = D.lr0,
        lrf: float = D.lrf,
        momentum: float = D.momentum,
        weight_decay: float = D.weight_decay,
        warmup_epochs: float = D.warmup_epochs,
        warmup_momentum: float = D.warmup_momentum,
        warmup_bias_lr: float = D.warmup_bias_lr,
        nbs: int = D.nbs,
        cos_lr: bool = D.cos_lr,
        multi_scale: float = D.multi_scale,
        box: float = D.box,
        cls: float = D.cls,
        dfl: float = D.dfl,
        pose: float = D.pose,
        kobj: float = D.kobj,
        rle: float = D.rle,
        dropout: float = D.dropout,
        freeze: int | list[int | str] | None = None,
        conf: float | None = None,
        iou: float = D.iou,
        max_det: int = D.max_det,
        nms: bool | None = None,
        agnostic_nms: bool = D.agnostic_nms,
        channels_last: bool | None = None,
        names: dict[int, str] | None = None,
        model_yaml: dict[str, Any] | None = None,
        plots: bool = D.plots,
        map_cross_check: bool = False,
        backbone_lr_ratio: float | None = None,
        class_weights: list[float] | dict[str, float] | str | None = None,
        class_weights_power: float = 1.0,
        **unknown: Any,
    ) -> None:
        """Check the arguments and keep them as hyper-parameters (saved in checkpoints)."""
        super().__init__()
        check_no_unknown_arguments("YOLOModule", unknown)
        if nbs < 1:
            raise ConfigurationError(f"nbs={nbs} must be >= 1.")
        check_backbone_lr_ratio(backbone_lr_ratio)
        if map_cross_check and importlib.util.find_spec("faster_coco_eval") is None:
            raise ConfigurationError(
                "map_cross_check=True needs the faster-coco-eval package: pip install 'yolo-lightning[coco]' "
                "(or faster-coco-eval), or leave map_cross_check off."
            )
        if class_weights_power != 1.0 and class_weights != "inverse_frequency":
            raise ConfigurationError(
                f"class_weights_power={class_weights_power} only applies to class_weights='inverse_frequency' "
                f"(got class_weights={class_weights!r}); drop it or switch to 'inverse_frequency'."
            )
        ultralytics_namespace("YOLOModule", **{k: v for k, v in locals().items() if k in MODULE_ARGS})  # range checks
        self.task: Task = task_of(model_config(model_yaml or model), task)
        if multi_scale and not self.task.finds_objects:
            raise ConfigurationError(
                f"multi_scale={multi_scale} resizes detection-family batches; Ultralytics' {self.task.trainer_class.__name__} "
                f"ignores it: drop it for {self.task.name} models."
            )
        if map_cross_check and not self.task.coco_cross_check:
            raise ConfigurationError(f"map_cross_check=True compares axis-aligned boxes: detect models only, not {self.task.name}.")
        self.save_hyperparameters()
        self.model: nn.Module | None = None
        self.val_metrics: DetectionMetrics | ClassificationMetrics | None = None
        self.val_coco_map: DistributedMeanAveragePrecision | None = None
        self._plotting = False
        self._validator: DetectionValidator | None = None
        self._warmup: Warmup | None = None
        self._accumulate = 1
        self._last_opt_step = -1
        self._zero_grad_due = True
        self._train_losses, self._val_losses = EpochLossMeans("train"), EpochLossMeans("val")
        self._predictor: Any = None
        self._epoch_lrs: list[float] = []
        self._evaluation_folder: Path | None = None
        self._validated_weights_finite = torch.tensor(True)
        self.freeze_layer_names: list[str] = []  # parameter-name fragments whose BatchNorm stays in eval mode
        self.gradient_clip_norm: float | None = DEFAULT_MAX_NORM  # None: a callback (or nobody) clips instead
        self.class_weight_values: torch.Tensor | None = None  # resolved class_weights (in setup or from a checkpoint)
        # Under DDP a rank may get no validation batch (fewer val batches than ranks); metrics and losses still sync.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        if names is not None:
            self._build(names)

    # ----------------------------------------------------------------------------------------------- model & data
    @property
    def is_rtdetr(self) -> bool:
        """True for an RT-DETR detector (the datamodule then serves RTDETRDataset, as RTDETRTrainer does)."""
        return self.task.is_rtdetr

    def setup(self, stage: str) -> None:
        """Build the network for the datamodule's classes and attach Ultralytics' argument namespace to it."""
        keep_freed_memory_for_reuse()  # in every process (DDP ranks included): see yolo_lightning/allocator.py
        self._check_hardware_settings()
        if stage == "fit":
            self._check_fit_settings()
        self._set_cpu_threads()
        if self.model is None:
            self._build(self._datamodule_names())
        else:
            self._check_classes_match_the_data()
        self.model.args = self.ultralytics_args()
        self.model.end2end = self.hparams.nms is False
        self._set_model_attributes()
        self._validator = self._make_validator()
        if stage == "fit" and not self._has_yolo_data():
            rank_zero_warn(
                "Fitting from your own DataLoaders (no YOLODataModule): labels.jpg, train_batch*.jpg, close_mosaic, "
                "DetectionTrainer's max_det check and the final validation of best.pt are skipped (they read the "
                "datamodule's datasets and data.yaml)."
            )
        elif stage == "fit" and self.task.finds_objects:
            self._check_max_det()
        self.class_weight_values = self._resolve_class_weights(stage)

    def _has_yolo_data(self) -> bool:
        """True when a YOLODataModule (its datasets and data.yaml) is attached, not just DataLoaders."""
        return self._data() is not None

    def _data(self) -> dict[str, Any] | None:
        """The attached datamodule's dataset config (its data.yaml's contents), if any."""
        return getattr(getattr(self._trainer, "datamodule", None), "data_config", None)

    def _set_model_attributes(self) -> None:
        """What the task's trainer sets on its model: the data's task attributes (pose keypoints), the classification
        head's dropout and the inference transforms classify exports carry."""
        data = self._data()
        if data is not None:
            for name, value in self.task.data_attributes(data, len(self.model.names)).items():
                setattr(self.model, name, value)
        for module in self.model.modules():
            if isinstance(module, nn.Dropout) and self.hparams.dropout:
                module.p = self.hparams.dropout
        val_dataset = getattr(getattr(self._trainer, "datamodule", None), "val_dataset", None)
        if hasattr(val_dataset, "torch_transforms"):  # ClassificationTrainer.get_dataloader attaches them
            self.model.transforms = val_dataset.torch_transforms

    def _check_max_det(self) -> None:
        """DetectionTrainer's ``_check_max_det``: raise ``max_det`` to the most objects an image of the data holds."""
        datamodule = self.trainer.datamodule
        datasets = {"train": datamodule.train_dataset, "val": datamodule.val_dataset}
        DetectionValidator._check_max_det(self.model.args, {k: v for k, v in datasets.items() if v is not None})
        self._validator.args.max_det = self.model.args.max_det
        self.model.set_head_attr(max_det=self.model.args.max_det)

    def _check_fit_settings(self) -> None:
        """Reject Trainer settings the recipe cannot follow, before anything is built for them."""
        trainer = self.trainer
        if trainer.accumulate_grad_batches != 1:
            raise ConfigurationError(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) is not supported: "
                f"YOLOModule accumulates to the nominal batch itself; set YOLOModule(nbs=...) instead."
            )
        if not trainer.max_epochs or trainer.max_epochs < 1:
            raise ConfigurationError(
                f"Trainer(max_epochs={trainer.max_epochs}): YOLOModule's LR schedule needs a number of epochs >= 1 "
                f"(Ultralytics' epochs; the default is 100)."
            )

    def _check_classes_match_the_data(self) -> None:
        """A network built for other classes (from a checkpoint, or ``names=``) must not silently train on this data."""
        datamodule_names = getattr(getattr(self._trainer, "datamodule", None), "names", None)
        if datamodule_names is None:
            return
        data = {int(k): str(v) for k, v in datamodule_names.items()}
        if data != self.model.names:
            raise ConfigurationError(
                f"the model's classes ({len(self.model.names)}: {list(self.model.names.values())}) differ from the "
                f"dataset's ({len(data)}: {list(data.values())}). A checkpoint resumes or evaluates on the classes it "
                f"was trained on; to train on new classes start from its weights: YOLOModule(model='best.pt')."
            )

    def _set_cpu_threads(self) -> None:
        """torch's intra-op threads for this process, from the cores, loader workers and load (see ``plan_threads``)."""
        trainer, datamodule = self.trainer, getattr(self.trainer, "datamodule", None)
        workers = datamodule.workers_per_process() if hasattr(datamodule, "workers_per_process") else 0
        local = trainer.num_devices
        load = 0.0 if USER_THREADS else other_programs_load(local)
        plan = plan_threads(USER_THREADS, cores_per_process(local), workers, self.device.type, load)
        if torch.get_num_threads() != plan.threads:
            torch.set_num_threads(plan.threads)
        rank_zero_info(f"torch threads: {plan.threads} ({plan.reason})")

    def _check_hardware_settings(self) -> None:
        """Refuse half-precision weights; follow Ultralytics' deterministic mode and its AMP default on CUDA."""
        trainer = self._trainer
        if trainer is None:
            return
        check_precision(trainer.precision)
        if torch.are_deterministic_algorithms_enabled():  # Trainer(deterministic=...): as Ultralytics' init_seeds
            if not torch.is_deterministic_algorithms_warn_only_enabled():
                # Lightning's deterministic=True is strict: on CUDA, NLLLoss, AdaptiveAvgPool2d's backward (classify)
                # and grid_sample's backward (RT-DETR) raise. Ultralytics' deterministic=True warns for them instead.
                torch.use_deterministic_algorithms(True, warn_only=True)
                rank_zero_info(
                    "Deterministic algorithms with warn_only=True, as Ultralytics' deterministic=True: operations "
                    "without a deterministic implementation warn instead of raising."
                )
            torch.utils.deterministic.fill_uninitialized_memory = False  # no NaN fill kernel per new tensor
        if trainer.strategy.root_device.type == "cuda" and trainer.precision == "32-true":
            rank_zero_info(
                "Training in float32 on CUDA. Ultralytics trains with AMP by default (amp=True): "
                "Trainer(precision='16-mixed') does the same."
            )
        if self.hparams.channels_last and trainer.strategy.root_device.type != "cuda":
            rank_zero_warn(f"channels_last=True is only supported on CUDA, ignoring on {trainer.strategy.root_device.type!r}.")

    def configure_model(self) -> None:
        """Channels-last weights on CUDA, like Ultralytics' trainer; set before the strategy moves and wraps the model."""
        trainer = self._trainer
        if self.model is not None and trainer is not None:
            if use_channels_last(self.hparams.channels_last, trainer.strategy.root_device):
                self.model.to(memory_format=torch.channels_last)

    def _build(self, names: dict[int, str]) -> None:
        """Build the network and its metric for ``names``; apply ``freeze``."""
        names = {int(k): str(v) for k, v in names.items()}
        self.hparams.names = names  # saved with checkpoints: load_from_checkpoint rebuilds the same network
        self.model = build_model(self.task, self.hparams.model_yaml or self.hparams.model, names, self._data())
        self.val_metrics = validation_metrics(self.task, names)
        if self.hparams.map_cross_check:
            self.val_coco_map = DistributedMeanAveragePrecision(
                box_format="xyxy", iou_type="bbox", max_detection_thresholds=[1, 10, 300], backend="faster_coco_eval"
            )
        self.freeze_layer_names = self._apply_freeze()

    def _datamodule_names(self) -> dict[int, str]:
        """Class names from the attached datamodule, else (predicting from a source) those of the ``.pt`` weights."""
        names = getattr(getattr(self._trainer, "datamodule", None), "names", None)
        names = names or weights_names(self.hparams.model)
        if names is None:
            raise ConfigurationError("YOLOModule needs class names: use a YOLODataModule, or pass names={0: 'cat', ...}.")
        return names

    def _resolve_class_weights(self, stage: str) -> torch.Tensor | None:
        """``class_weights`` as a tensor; ``"inverse_frequency"`` counts the training labels (or reuses a checkpoint's)."""
        spec, names = self.hparams.class_weights, self.model.names
        counts = None
        if spec == "inverse_frequency":
            dataset = getattr(getattr(self._trainer, "datamodule", None), "train_dataset", None)
            if dataset is None and stage == "fit" and self.class_weight_values is None:
                raise ConfigurationError(
                    "class_weights='inverse_frequency' counts the training labels of a YOLODataModule; with your own "
                    "DataLoaders pass the weights themselves (class_weights=[...] or {'name': weight})."
                )
            if dataset is None:  # validate/test/predict (or a resumed run): the checkpoint's weights, if any
                return self.class_weight_values
            counts = class_instance_counts(dataset, len(names))
        weights = resolve_class_weights(spec, names, counts, self.hparams.class_weights_power)
        if weights is not None:
            rank_zero_info("class_weights: " + ", ".join(f"{names[i]} {w:.3f}" for i, w in enumerate(weights.tolist())))
        return weights

    def ultralytics_args(self) -> IterableSimpleNamespace:
        """The IterableSimpleNamespace Ultralytics' losses and validator read (``model.args``)."""
        trainer = self._trainer
        epochs = trainer.max_epochs if trainer is not None and trainer.max_epochs and trainer.max_epochs > 0 else 1
        datamodule = getattr(trainer, "datamodule", None)
        data_args = {}
        if datamodule is not None:
            data_args = {k: datamodule.hparams[k] for k in sorted(DATA_ARGS_IN_MODEL_ARGS) if k in datamodule.hparams}
            data_args["imgsz"] = datamodule.imgsz
            if getattr(datamodule, "data_config", None):
                data_args["data"] = datamodule.data_path  # lets YOLO("best.pt").val() find the data
        module_args = {k: self.hparams[k] for k in MODULE_ARGS}
        return ultralytics_namespace(
            "YOLOModule", **module_args, **data_args, epochs=epochs, model=self._model_name(), task=self.task.name
        )

    def _model_name(self) -> str:
        """What ``model`` named (a YAML or ``.pt`` path), or the architecture's own YAML file name."""
        model = self.hparams.model
        return str(model.get("yaml_file", "model.yaml")) if isinstance(model, dict) else str(model)

    def ultralytics_train_args(self) -> dict[str, Any]:
        """Ultralytics' ``train_args`` for this run (the ``model.args`` namespace as a dict)."""
        return dict(self.model.args) if self.model is not None and hasattr(self.model, "args") else {}

    def last_metrics(self) -> dict[str, float]:
        """The latest logged validation metrics (``metrics/...``, ``fitness``, ``val/...``) as floats."""
        if self._trainer is None:
            return {}
        return {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(("metrics/", "val/", "fitness"))
        }

    def _make_validator(self) -> Any:
        """The task's Ultralytics validator, whose preprocess, post-processing (NMS) and matching validation reuses."""
        save_dir = Path(self._trainer.default_root_dir) if self._trainer is not None else Path.cwd()
        validator = self.task.validator_class(save_dir=save_dir, args={**vars(self.model.args), "plots": False, "mode": "val"})
        validator.training = True  # as inside BaseTrainer: no dataloader of its own, no max_det re-check
        validator.data = self._data() or {"names": self.model.names, "kpt_shape": getattr(self.model, "kpt_shape", None)}
        return validator

    # -------------------------------------------------------------------------------------------------- freezing
    def _apply_freeze(self) -> list[str]:
        """Ultralytics' freeze: listed layers and ``.dfl`` frozen, every other float parameter trainable."""
        freeze = self.hparams.freeze
        names = freeze_layer_fragments(freeze, self.model, f"freeze={freeze!r}") + [".dfl"]
        for name, param in self.model.named_parameters():
            if any(fragment in name for fragment in names):
                param.requires_grad = False
            elif param.dtype.is_floating_point:
                param.requires_grad = True
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ConfigurationError(f"freeze={freeze!r} freezes every parameter: nothing would train.")
        return names

    def _keep_frozen_batchnorm_in_eval(self) -> None:
        """Frozen layers' BatchNorm stays in eval mode (Lightning's ``model.train()`` would undo it)."""
        for name, module in self.model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(f in name for f in self.freeze_layer_names):
                module.eval()

    def on_train_epoch_start(self) -> None:
        """Re-apply eval mode to frozen BatchNorm layers and restart the epoch's loss sums."""
        self._keep_frozen_batchnorm_in_eval()
        self._train_losses.reset()

    def on_validation_model_train(self) -> None:
        """Back to train mode after validation, frozen BatchNorm excepted."""
        super().on_validation_model_train()
        self._keep_frozen_batchnorm_in_eval()

    # ---------------------------------------------------------------------------------------------- optimisation
    def configure_callbacks(self) -> list[L.Callback]:
        """What a plain ``Trainer().fit(model, dm)`` needs to run as Ultralytics' trainer does: the EMA, close_mosaic,
        NaN recovery, best.pt/last.pt (``UltralyticsCheckpoint``, in place of Lightning's default checkpoint), the run
        folder's files and final validation (``RunReport``), Ultralytics' progress columns (in place of Lightning's
        default bar, same refresh rate) and its model summary line (in place of Lightning's layer table).

        A callback of the same kind given to the Trainer (``UltralyticsEMA(decay=...)``, a ``ModelCheckpoint`` of your
        own...) is kept instead; with ``enable_checkpointing=False`` no checkpoint is added.
        """
        trainer = self._trainer
        given = trainer.callbacks if trainer is not None else []
        defaults: list[L.Callback] = [UltralyticsEMA(), CloseMosaic(), NonFiniteRecovery(), RunReport()]
        checkpoints = trainer.checkpoint_callbacks if trainer is not None else []
        if len(checkpoints) == 1 and _is_lightning_default_checkpoint(checkpoints[0]):
            defaults.append(UltralyticsCheckpoint())
        bar = trainer.progress_bar_callback if trainer is not None else None
        if type(bar) is TQDMProgressBar:  # Lightning's own bar (a bar of your own stays)
            defaults.append(UltralyticsProgressBar(refresh_rate=bar.refresh_rate, process_position=bar.process_position))
        summary = next((c for c in given if type(c) is ModelSummary), None)  # Lightning's own (a rich one stays)
        if summary is not None:
            defaults.append(UltralyticsModelSummary(max_depth=summary._max_depth))
        return [c for c in defaults if not any(isinstance(g, type(c)) for g in given)]

    def configure_optimizers(self) -> dict[str, Any]:
        """Ultralytics' parameter groups (and ``optimizer="auto"`` rule) with its per-epoch LambdaLR.

        With ``backbone_lr_ratio``, each group is split into head and backbone groups (see ``split_backbone_groups``).
        """
        loader = self._train_loader()
        epochs = self.trainer.max_epochs
        ratio = self.hparams.backbone_lr_ratio
        if ratio is not None and self.is_rtdetr:
            apply_rtdetr_auto_optimizer(self.model.args)
        optimizer = build_optimizer(
            self.model, self.model.args, len(self.model.names), self._global_batch(), len(loader.dataset), epochs
        )
        if ratio is not None:
            split_backbone_groups(optimizer, self.model, ratio)
        schedule = lr_lambda(self.model.args.cos_lr, self.model.args.lrf, epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "epoch"}}

    def on_train_start(self) -> None:
        """Fix warmup and nominal accumulation; build the (class-weighted) loss, fast-forwarding YOLO26's on resume."""
        args = self.model.args
        self._warmup = Warmup.from_args(args, self._global_batch(), self.trainer.num_training_batches, self.trainer.max_epochs)
        self._lr_factor = lr_lambda(args.cos_lr, args.lrf, self.trainer.max_epochs)
        criterion = weighted_criterion(self.model, self.class_weight_values)  # on the training device
        if self.current_epoch > 0 and hasattr(criterion, "update"):  # YOLO26's E2ELoss: o2m/o2o as after N epochs
            criterion.updates = self.current_epoch - 1
            criterion.update()
        attach_criterion(self.model, criterion)
        if self.class_weight_values is not None:
            names = self.model.names
            for logger in self.loggers:
                logger.log_hyperparams({f"class_weights/{names[i]}": w for i, w in enumerate(self.class_weight_values.tolist())})

    def on_fit_start(self) -> None:
        """Ultralytics' AMP self-test, once the network is on its device (see ``fall_back_from_broken_amp``); a
        resumed optimizer keeps the kernel built for this device (see ``keep_runtime_fused``)."""
        fall_back_from_broken_amp(self.trainer, self.model)
        keep_runtime_fused(self.trainer)

    def on_validation_start(self) -> None:
        """Point the validator at the module's device, precision and run folder; in ``fit``, free cached GPU memory
        first as BaseTrainer does; outside ``fit``, build the (class-weighted) criterion on that device."""
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if fitting:
            clear_accelerator_memory(self.device)
        self._validator.device = self.device  # Ultralytics' _prepare_batch builds its scale tensors on it
        # BaseValidator in training: half-precision images for an AMP run on a GPU (its preprocess halves them)
        self._validator.args.quantize = 16 if fitting and evaluation_half(self.trainer.precision, self.device) else None
        self._validator.save_dir = self.run_folder()  # its val_batch*_labels/pred.jpg go there
        if getattr(self.model, "criterion", None) is None:
            attach_criterion(self.model, weighted_criterion(self.model, self.class_weight_values))

    def run_folder(self) -> Path:
        """Where this run's files go: the fit's run folder (see UltralyticsCheckpoint), or outside ``fit`` the Trainer's
        folder, a new ``runs/<task>/val`` (``val2``...) when that was left at the current folder."""
        trainer = self.trainer
        root = Path(trainer.default_root_dir)
        if trainer.state.fn == TrainerFn.FITTING or root.absolute() != Path.cwd():
            return run_root(trainer, self.task.name)
        if self._evaluation_folder is None:
            claimed = claim_run_folder(default_run_folder(self.task.name, trainer.state.fn), marker=None) if trainer.is_global_zero else None
            self._evaluation_folder = Path(trainer.strategy.broadcast(str(claimed) if claimed else None))
        return self._evaluation_folder

    def on_test_start(self) -> None:
        """As validation."""
        self.on_validation_start()

    def on_predict_start(self) -> None:
        """Set up the task's Ultralytics predictor on a copy of the network, for the datamodule's source."""
        if self.trainer.world_size > 1:
            raise ConfigurationError("predict runs in one process, as Ultralytics' predictor: use Trainer(devices=1).")
        datamodule = self.trainer.datamodule
        args = {**vars(self.ultralytics_args()), "imgsz": datamodule.imgsz, "conf": self.hparams.conf}  # None: 0.25
        self._predictor = task_predictor(self.task, self.model, args, datamodule.predict_source, self.device)

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Per-iteration warmup of lr, momentum and the accumulation count, as BaseTrainer does; note the lr this batch
        trains with (Lightning steps an epoch scheduler before the epoch-end hooks, where BaseTrainer reads it)."""
        ni = batch_idx + self.trainer.num_training_batches * self.current_epoch
        optimizer = self.trainer.optimizers[0]
        self._accumulate = self._warmup.apply(optimizer, ni, self._lr_factor(self.current_epoch))
        self._epoch_lrs = [group["lr"] for group in optimizer.param_groups]

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step only when ``accumulate`` batches have been back-propagated since the last step (nominal batch)."""
        ni = batch_idx + self.trainer.num_training_batches * epoch
        if ni - self._last_opt_step >= self._accumulate:
            optimizer.step(closure=self._closure_then_unscale(optimizer, optimizer_closure))  # then clipping, step
            self._last_opt_step = ni
            self._zero_grad_due = True
        else:
            optimizer_closure()  # forward + backward only: gradients keep accumulating

    def _closure_then_unscale(self, optimizer: Any, closure: Any) -> Any:
        """The forward/backward closure, then AMP's unscale where Lightning leaves it to a fused optimizer's step, so
        clipping and every ``on_before_optimizer_step`` hook see true gradients (see ``unscale_before_clipping``)."""

        def closure_then_unscale() -> Any:
            result = closure()
            if result is not None:  # None: the step skipped backward, nothing to unscale (as Lightning's own rule)
                unscale_before_clipping(self.trainer.precision_plugin, optimizer)
            return result

        return closure_then_unscale

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Zero gradients only after a real optimizer step, so accumulated batches add up."""
        if self._zero_grad_due:
            optimizer.zero_grad()
            self._zero_grad_due = False

    def on_validation_model_zero_grad(self) -> None:
        """Keep gradients accumulated before an epoch-end validation: BaseTrainer accumulates across epochs."""

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Clip the (already unscaled) gradient norm at ``gradient_clip_norm`` (10.0, like DetectionTrainer).

        A ``Trainer(gradient_clip_val=...)`` takes precedence; ``gradient_clip_norm=None`` leaves clipping to a callback.
        """
        max_norm = self.gradient_clip_norm if gradient_clip_val is None else gradient_clip_val
        if not max_norm:
            return
        if (gradient_clip_algorithm or "norm") == "norm":
            # In model.parameters() order, as DetectionTrainer: summed in the optimizer's group order, the norm differs
            # in its last bits, and that difference grows into another training trajectory within an epoch or two.
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=max_norm)
        else:  # directly, as the norm: Lightning's clip_gradients refuses fused optimizers, unscaled here already
            torch.nn.utils.clip_grad_value_(self.model.parameters(), clip_value=max_norm)

    # ------------------------------------------------------------------------------------------- steps & logging
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Ultralytics' loss, scaled like DetectionTrainer's (sum over the batch, times world size under DDP)."""
        batch = self._preprocess(batch)
        loss, loss_items = self.model.loss(batch)
        self._train_losses.update(loss_items)  # summed on the device like BaseTrainer's tloss: no host sync
        return loss.sum() * self.trainer.world_size

    def running_losses(self) -> dict[str, float]:
        """This epoch's mean loss items so far on this process (one host sync; for progress bars, not per batch)."""
        return self._train_losses.running_means()

    def on_train_epoch_end(self) -> None:
        """Advance YOLO26's one-to-many/one-to-one loss weights; log the epoch's mean losses and each group's lr."""
        if hasattr(getattr(self.model, "criterion", None), "update"):  # no criterion yet if no batch ran
            self.model.criterion.update()
        clear_accelerator_memory(self.device)  # as BaseTrainer at each epoch's end
        losses = self._train_losses.compute(self.device)  # the epoch's mean loss items over every rank's batches
        lrs = {f"lr/pg{i}": lr for i, lr in enumerate(self._epoch_lrs)}  # what the epoch trained with
        self._log_epoch_values({**losses, **lrs})

    def _log_epoch_values(self, values: dict[str, torch.Tensor | float]) -> None:
        """Log epoch values averaged over ranks, every tensor on the module's device (NCCL reduces only those)."""
        device = self.device
        self.log_dict({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()}, sync_dist=True)

    def _evaluation_autocast(self) -> AbstractContextManager:
        """The precision Ultralytics validates in (float16 autocast for AMP on CUDA, float32 on CPU)."""
        precision = self._trainer.precision if self._trainer is not None else "32-true"
        return evaluation_autocast(precision, self.device)

    def _float32(self) -> AbstractContextManager:
        """No autocast: Ultralytics post-processes and matches predictions outside autocast."""
        return torch.autocast(self.device.type, enabled=False)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Validation loss, then the task validator's own post-processing (NMS) and matching, as Ultralytics runs them."""
        if batch.get(PADDING_KEY):  # an idle DDP rank's stand-in batch (see ContiguousValSampler)
            return
        batch = self._validator.preprocess(batch)  # the task's: images to float (and /255), masks, keypoints
        with self._evaluation_autocast():
            preds = self.model(batch["img"])
            self._val_losses.update(self.model.loss(batch, preds)[1])
        with self._float32():
            predictions = self._validator.postprocess(preds)
            self._validator.update_metrics(predictions, batch)  # collected per image, taken over at the epoch's end
            if self.val_coco_map is not None:
                self._update_coco_map(predictions, batch)
            if self._plotting and batch_idx < PLOTTED_VAL_BATCHES and self.trainer.is_global_zero:
                self._validator.plot_val_samples(batch, batch_idx)  # val_batch{i}_labels.jpg, val_batch{i}_pred.jpg
                self._validator.plot_predictions(batch, predictions, batch_idx)

    def _update_coco_map(self, detections: list[dict[str, torch.Tensor]], batch: dict[str, Any]) -> None:
        """torchmetrics' COCO mAP on the same detections and targets (``map_cross_check``)."""
        for i, found in enumerate(detections):
            target = self._validator._prepare_batch(i, batch)
            self.val_coco_map.update(
                [{"boxes": found["bboxes"], "scores": found["conf"], "labels": found["cls"].long()}],
                [{"boxes": target["bboxes"], "labels": target["cls"].long()}],
            )

    def on_validation_epoch_start(self) -> None:
        """Plot (like Ultralytics) after the last epoch of ``fit`` and in ``validate``/``test``, never in sanity checks."""
        trainer = self.trainer
        last_epoch = trainer.state.fn != TrainerFn.FITTING or trainer.current_epoch == trainer.max_epochs - 1
        self._plotting = bool(self.hparams.plots) and last_epoch and not trainer.sanity_checking
        self._validator.args.plots = self._plotting  # the validator then fills its confusion matrix too
        self._validator.init_metrics(self.model)  # empty statistics for this epoch
        self._validator.plots = {}
        self._val_losses.reset()
        self._validated_weights_finite = finite_flag(self.model.state_dict().values())  # the EMA in fit; no sync

    def on_validation_epoch_end(self) -> None:
        """Log Ultralytics' metric keys, mean and per-class values over every rank's images; print the table."""
        self.val_metrics.update_from(self._validator)
        results = {**self._val_losses.compute(self.device), **self.val_metrics.compute()}  # both over every rank
        self.val_metrics.reset()
        if not bool(self._validated_weights_finite):  # NaN weights find nothing: their metrics are NaN, not 0
            results.update({k: torch.full_like(v, float("nan")) for k, v in results.items() if not k.startswith("val/")})
        if self.val_coco_map is not None:
            coco = self.val_coco_map.compute()
            self.val_coco_map.reset()
            results.update({"metrics/coco/mAP50(B)": coco["map_50"], "metrics/coco/mAP50-95(B)": coco["map"]})
        self._log_epoch_values(results)  # global values already: the all-reduce mean leaves them as they are
        if not self.trainer.sanity_checking:
            rank_zero_info(self.val_metrics.table())
        if self._plotting:
            self._save_plots()

    @rank_zero_only
    def _save_plots(self) -> None:
        """Ultralytics' curves, confusion matrices and validation batches into the run folder, and to image loggers."""
        folder = self.run_folder()
        paths = save_validation_plots(self.val_metrics, folder) + [Path(p) for p in self._validator.plots]
        log_images(self.loggers, paths, step=self.global_step)
        rank_zero_info(f"Plots saved to {folder.resolve()}: {', '.join(p.name for p in paths)}")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Evaluate the ``test`` split exactly like validation."""
        self.validation_step(batch, batch_idx)

    def on_test_epoch_start(self) -> None:
        """Reset and decide plotting exactly like validation."""
        self.on_validation_epoch_start()

    def on_test_epoch_end(self) -> None:
        """Log the test split's metrics under Ultralytics' keys."""
        self.on_validation_epoch_end()

    def predict_step(self, batch: tuple[list[str], list[Any], list[str]], batch_idx: int) -> list[Results]:
        """``YOLO.predict`` on one batch of the source: Ultralytics ``Results`` per image (boxes, masks, keypoints,
        oriented boxes or class probabilities), through the task predictor's letterbox and post-processing, in float32
        as Ultralytics predicts by default."""
        with self._float32():
            return predict_batch(self._predictor, batch)

    def _preprocess(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The task trainer's own ``preprocess_batch`` (images to float in [0, 1]; ``multi_scale``'s random size for
        the detection family), run on the trainer attributes it reads."""
        trainer = SimpleNamespace(device=self.device, args=self.model.args, stride=self._grid_stride())
        return self.task.trainer_class.preprocess_batch(trainer, batch)

    def _grid_stride(self) -> int:
        """The trainer's ``stride``: the model's largest stride, at least 32 (``BaseTrainer._setup_train``)."""
        return max(int(self.model.stride.max()) if hasattr(self.model, "stride") else 32, 32)

    # -------------------------------------------------------------------------------------------------- helpers
    def _train_loader(self):
        """The training DataLoader (forces Lightning to set it up, as configure_optimizers runs before that)."""
        _ = self.trainer.estimated_stepping_batches
        return self.trainer.train_dataloader

    def _global_batch(self) -> int:
        """Ultralytics' ``batch``: the batch size over all ranks."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "batch"):
            return datamodule.batch
        return self._train_loader().batch_size * self.trainer.world_size

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the accumulation cadence (for resume), Ultralytics' train_args/metrics (for export) and the network's
        architecture (``model_yaml``: the checkpoint rebuilds it without the file ``model`` named)."""
        checkpoint["hyper_parameters"]["model_yaml"] = dict(self.model.yaml)
        checkpoint["yolo_lightning"] = {
            "version": yolo_lightning_version(),
            "last_opt_step": self._last_opt_step,
            "train_args": self.ultralytics_train_args(),
            "train_metrics": self.last_metrics(),
            "class_weights": None if self.class_weight_values is None else self.class_weight_values.tolist(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the checkpoint holds this network and these classes; restore the accumulation cadence of a resumed
        run and its resolved class weights."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("model", "names"):
            if key in saved and self.hparams.get(key) is not None and _comparable(saved[key]) != _comparable(self.hparams[key]):
                raise ConfigurationError(
                    f"the checkpoint was trained with {key}={_comparable(saved[key])!r}, this YOLOModule has "
                    f"{key}={_comparable(self.hparams[key])!r}: resume or evaluate it with the checkpoint's {key} "
                    f"(YOLOModule.load_from_checkpoint(path) builds it), or start a new run from its weights."
                )
        extra = checkpoint.get("yolo_lightning", {})
        self._last_opt_step = extra.get("last_opt_step", -1)
        if extra.get("class_weights") is not None:
            self.class_weight_values = torch.tensor(extra["class_weights"], dtype=torch.float32)


def _comparable(value: Any) -> Any:
    """A ``model``/``names`` hyper-parameter in a form that compares equal across checkpoints (names keyed by int)."""
    if isinstance(value, dict) and all(str(k).lstrip("-").isdigit() for k in value):
        return {int(k): str(v) for k, v in value.items()}
    return value


def _is_lightning_default_checkpoint(callback: L.Callback) -> bool:
    """True for the ModelCheckpoint Lightning adds itself when no checkpoint callback was given."""
    return type(callback) is ModelCheckpoint and callback.dirpath is None and callback.monitor is None
