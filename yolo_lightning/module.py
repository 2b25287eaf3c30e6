"""``YOLOModule``: an Ultralytics model of any task, its own loss and its trainer's recipe as a LightningModule.

The class is the table of Lightning hooks; each hook hands its work to a collaborator with one job: the network and its
data (``network``), the optimizer side of the training loop (``optimization``), validation and metrics
(``evaluation``), hardware and precision (``hardware``), prediction (``predict``), the callbacks a plain
``Trainer().fit`` needs (``callbacks.defaults``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import nn
from ultralytics.cfg import DEFAULT_CFG
from ultralytics.engine.results import Results
from ultralytics.utils import IterableSimpleNamespace

from yolo_lightning._offline import USER_THREADS
from yolo_lightning.allocator import keep_freed_memory_for_reuse
from yolo_lightning.arguments import check_fit_settings, check_module_arguments
from yolo_lightning.callbacks.defaults import ultralytics_trainer_callbacks
from yolo_lightning.class_weights import attach_criterion, weighted_criterion
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.evaluation import Evaluation
from yolo_lightning.hardware import (
    apply_trainer_settings,
    clear_accelerator_memory,
    evaluation_autocast,
    evaluation_half,
    fall_back_from_broken_amp,
    keep_runtime_fused,
    set_cpu_threads,
    use_channels_last,
)
from yolo_lightning.hyperparameters import check_no_unknown_arguments, run_arguments
from yolo_lightning.metrics import EpochLossMeans
from yolo_lightning.models import build_model, model_config
from yolo_lightning.network import (
    check_classes_match,
    check_same_network,
    class_names,
    class_weight_values,
    freeze,
    keep_frozen_batchnorm_in_eval,
    preprocess_batch,
    raise_max_det,
    set_task_attributes,
    training_criterion,
    warn_without_yolo_data,
)
from yolo_lightning.optimization import DEFAULT_MAX_NORM, Optimization, global_batch
from yolo_lightning.predict import predict_batch, task_predictor
from yolo_lightning.run_folder import stage_folder
from yolo_lightning.sampling import restore_loader_position
from yolo_lightning.tasks import Task, task_of
from yolo_lightning.version import yolo_lightning_version

D = DEFAULT_CFG


class YOLOModule(L.LightningModule):
    """Train and validate an Ultralytics model of any task (detect, segment, semantic, depth, classify, pose, obb;
    RT-DETR) exactly as its Ultralytics trainer does (``DetectionTrainer``, ``SegmentationTrainer``...), inside
    ``lightning.Trainer``.

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
        box, cls, dfl, pose, kobj, rle, dlog, dgrad, dlam: loss gains, as Ultralytics names them (pose, kobj, rle:
            pose models; dlog, dgrad, dlam: depth models).
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
        dlog: float = D.dlog,
        dgrad: float = D.dgrad,
        dlam: float = D.dlam,
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
        self.task: Task = task_of(model_config(model_yaml or model), task)
        check_module_arguments(self.task, {k: v for k, v in locals().items() if k not in {"self", "unknown", "task"}})
        self.save_hyperparameters()
        self.model: nn.Module | None = None
        self.evaluation: Evaluation | None = None
        self.optimization = Optimization()
        self._train_losses = EpochLossMeans("train")
        self._predictor: Any = None
        self._evaluation_folder: Path | None = None
        self.freeze_layer_names: list[str] = []  # parameter-name fragments whose BatchNorm stays in eval mode
        self.gradient_clip_norm: float | None = DEFAULT_MAX_NORM  # None: a callback (or nobody) clips instead
        self.class_weight_values: torch.Tensor | None = None  # resolved class_weights (in setup or from a checkpoint)
        # Under DDP a rank may get no validation batch (fewer val batches than ranks); metrics and losses still sync.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        if names is not None:
            self._build(names)

    # ----------------------------------------------------------------------------------------- network & data
    @property
    def is_rtdetr(self) -> bool:
        """True for an RT-DETR detector (the datamodule then serves RTDETRDataset, as RTDETRTrainer does)."""
        return self.task.is_rtdetr

    @property
    def val_metrics(self) -> Any:
        """The validation metrics (a torchmetrics ``Metric`` over every rank's images), once the network is built."""
        return self.evaluation.metrics if self.evaluation is not None else None

    @property
    def _validator(self) -> Any:  # the task's Ultralytics validator that validation reuses (after setup)
        return self.evaluation.validator if self.evaluation is not None else None

    def setup(self, stage: str) -> None:
        """Build the network for the datamodule's classes, give it Ultralytics' arguments and the task's attributes."""
        keep_freed_memory_for_reuse()  # in every process (DDP ranks included): see yolo_lightning/allocator.py
        apply_trainer_settings(self.trainer, self.hparams.channels_last)
        if stage == "fit":
            check_fit_settings(self.trainer)
        set_cpu_threads(self.trainer, USER_THREADS)
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.model is None:
            self._build(class_names(datamodule, self.hparams.model))
        else:
            check_classes_match(self.model, datamodule)
        self.model.args = self.ultralytics_args()
        self.model.end2end = self.hparams.nms is False
        set_task_attributes(self.model, self.task, datamodule, self.hparams.dropout)
        self.evaluation.make_validator(self.task, self.model, self._data(), Path(self.trainer.default_root_dir))
        if stage == "fit" and self._data() is None:
            warn_without_yolo_data()
        elif stage == "fit" and self.task.finds_objects:
            raise_max_det(self.model, self._validator, datamodule)
        hp = self.hparams
        self.class_weight_values = class_weight_values(
            self.task, hp.class_weights, self.model.names, hp.class_weights_power, datamodule, self.class_weight_values, stage
        )

    def _data(self) -> dict[str, Any] | None:
        """The attached YOLODataModule's dataset config (its data.yaml's contents); None for DataLoaders of your own."""
        return getattr(getattr(self._trainer, "datamodule", None), "data_config", None)

    def configure_model(self) -> None:
        """Channels-last weights on CUDA, like Ultralytics' trainer; set before the strategy moves and wraps the model."""
        trainer = self._trainer
        if self.model is not None and trainer and use_channels_last(self.hparams.channels_last, trainer.strategy.root_device):
            self.model.to(memory_format=torch.channels_last)

    def _build(self, names: dict[int, str]) -> None:
        """Build the network and its evaluation for ``names``; apply ``freeze``."""
        names = {int(k): str(v) for k, v in names.items()}
        self.hparams.names = names  # saved with checkpoints: load_from_checkpoint rebuilds the same network
        self.model = build_model(self.task, self.hparams.model_yaml or self.hparams.model, names, self._data())
        self.evaluation = Evaluation(self.task, names, self.hparams.map_cross_check)
        self.freeze_layer_names = freeze(self.model, self.hparams.freeze)

    def ultralytics_args(self) -> IterableSimpleNamespace:
        """The IterableSimpleNamespace Ultralytics' losses and validator read (``model.args``)."""
        trainer, model = self._trainer, self.hparams.model
        name = str(model.get("yaml_file", "model.yaml")) if isinstance(model, dict) else str(model)
        epochs = trainer.max_epochs if trainer is not None else None
        return run_arguments(self.hparams, getattr(trainer, "datamodule", None), epochs, name, self.task.name)

    def ultralytics_train_args(self) -> dict[str, Any]:
        """Ultralytics' ``train_args`` for this run (the ``model.args`` namespace as a dict)."""
        return dict(self.model.args) if self.model is not None and hasattr(self.model, "args") else {}

    def last_metrics(self) -> dict[str, float]:
        """The latest logged validation metrics (``metrics/...``, ``fitness``, ``val/...``) as floats."""
        logged = self._trainer.callback_metrics.items() if self._trainer is not None else ()
        return {k: float(v) for k, v in logged if k.startswith(("metrics/", "val/", "fitness"))}

    def configure_callbacks(self) -> list[L.Callback]:
        """What a plain ``Trainer().fit(model, dm)`` needs to run as Ultralytics' trainer does (see
        ``ultralytics_trainer_callbacks``); a callback of the same kind given to the Trainer is kept instead."""
        return ultralytics_trainer_callbacks(self._trainer)

    # --------------------------------------------------------------------------------------------- training
    def on_fit_start(self) -> None:
        """Ultralytics' AMP self-test, once the network is on its device (see ``fall_back_from_broken_amp``); a
        resumed optimizer keeps the kernel built for this device (see ``keep_runtime_fused``)."""
        fall_back_from_broken_amp(self.trainer, self.model)
        keep_runtime_fused(self.trainer)

    def configure_optimizers(self) -> dict[str, Any]:
        """Ultralytics' parameter groups, ``optimizer="auto"`` rule and per-epoch LambdaLR (see ``Optimization``)."""
        _ = self.trainer.estimated_stepping_batches  # sets up the training loader (configure_optimizers runs first)
        source = self.trainer.train_dataloader.dataset
        dataset_size = len(getattr(source, "images", source))  # a stream's length is this rank's share: its images'
        return self.optimization.configure(
            self.model, self.model.args, global_batch(self.trainer), dataset_size, self.trainer.max_epochs,
            self.hparams.backbone_lr_ratio, self.is_rtdetr,
        )  # fmt: skip

    def on_train_start(self) -> None:
        """Fix warmup and nominal accumulation; build the (class-weighted) loss, fast-forwarding YOLO26's on resume."""
        trainer = self.trainer
        restore_loader_position(trainer)
        self.optimization.start(self.model.args, global_batch(trainer), trainer.num_training_batches, trainer.max_epochs)
        attach_criterion(self.model, training_criterion(self.model, self.class_weight_values, self.current_epoch))
        if self.class_weight_values is not None:
            weights = {f"class_weights/{self.model.names[i]}": w for i, w in enumerate(self.class_weight_values.tolist())}
            for logger in self.loggers:
                logger.log_hyperparams(weights)

    def on_train_epoch_start(self) -> None:
        """Re-apply eval mode to frozen BatchNorm layers and restart the epoch's loss sums."""
        keep_frozen_batchnorm_in_eval(self.model, self.freeze_layer_names)
        self._train_losses.reset()

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Per-iteration warmup of lr, momentum and the accumulation count, as BaseTrainer does."""
        ni = batch_idx + self.trainer.num_training_batches * self.current_epoch
        self.optimization.before_batch(self.trainer.optimizers[0], ni, self.current_epoch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Ultralytics' loss, scaled like DetectionTrainer's (sum over the batch, times world size under DDP)."""
        loss, loss_items = self.model.loss(preprocess_batch(self.task, self.model, self.device, batch))
        self._train_losses.update(loss_items)  # summed on the device like BaseTrainer's tloss: no host sync
        return loss.sum() * self.trainer.world_size

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step only when ``accumulate`` batches have been back-propagated since the last step (nominal batch)."""
        ni = batch_idx + self.trainer.num_training_batches * epoch
        self.optimization.step(optimizer, ni, optimizer_closure, self.trainer.precision_plugin)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Zero gradients only after a real optimizer step, so accumulated batches add up."""
        self.optimization.zero_grad(optimizer)

    def on_validation_model_zero_grad(self) -> None:
        """Keep gradients accumulated before an epoch-end validation: BaseTrainer accumulates across epochs."""

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:  # fmt: skip
        """Clip the (already unscaled) gradients at ``gradient_clip_norm`` (10.0, like DetectionTrainer); a
        ``Trainer(gradient_clip_val=...)`` takes precedence; ``gradient_clip_norm=None`` leaves clipping to a callback."""
        max_norm = self.gradient_clip_norm if gradient_clip_val is None else gradient_clip_val
        self.optimization.clip(self.model.parameters(), max_norm, gradient_clip_algorithm)

    def running_losses(self) -> dict[str, float]:
        """This epoch's mean loss items so far on this process (one host sync; for progress bars, not per batch)."""
        return self._train_losses.running_means()

    def on_train_epoch_end(self) -> None:
        """Advance YOLO26's one-to-many/one-to-one loss weights; log the epoch's mean losses and each group's lr."""
        if hasattr(getattr(self.model, "criterion", None), "update"):  # no criterion yet if no batch ran
            self.model.criterion.update()
        clear_accelerator_memory(self.device)  # as BaseTrainer at each epoch's end
        losses = self._train_losses.compute(self.device)  # the epoch's mean loss items over every rank's batches
        lrs = {f"lr/pg{i}": lr for i, lr in enumerate(self.optimization.epoch_lrs)}  # what the epoch trained with
        self._log_epoch_values({**losses, **lrs})

    # ------------------------------------------------------------------------------------------- evaluation
    def on_validation_start(self) -> None:
        """Point the validator at the module's device, precision and run folder; in ``fit``, free cached GPU memory
        first as BaseTrainer does; outside ``fit``, build the (class-weighted) criterion on that device."""
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if fitting:
            clear_accelerator_memory(self.device)
        half = fitting and evaluation_half(self.trainer.precision, self.device)
        self.evaluation.prepare(self.device, half, self.run_folder())
        if getattr(self.model, "criterion", None) is None:
            attach_criterion(self.model, weighted_criterion(self.model, self.class_weight_values))

    def on_validation_epoch_start(self) -> None:
        """Plot (like Ultralytics) after the last epoch of ``fit`` and in ``validate``/``test``, never in sanity checks."""
        trainer = self.trainer
        last_epoch = trainer.state.fn != TrainerFn.FITTING or trainer.current_epoch == trainer.max_epochs - 1
        self.evaluation.start_epoch(self.model, bool(self.hparams.plots) and last_epoch and not trainer.sanity_checking)

    def on_validation_model_train(self) -> None:
        """Back to train mode after validation, frozen BatchNorm excepted."""
        super().on_validation_model_train()
        keep_frozen_batchnorm_in_eval(self.model, self.freeze_layer_names)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Validation loss, then the task validator's own post-processing (NMS) and matching, as Ultralytics runs them."""
        precision = self._trainer.precision if self._trainer is not None else "32-true"
        autocast = evaluation_autocast(precision, self.device)  # Ultralytics': float16 for AMP on CUDA, else float32
        self.evaluation.step(self.model, batch, batch_idx, autocast, self._float32, self.trainer.is_global_zero)

    def on_validation_epoch_end(self) -> None:
        """Log Ultralytics' metric keys, mean and per-class values over every rank's images; print the table."""
        self._log_epoch_values(self.evaluation.results(self.device))  # global already: the all-reduce mean keeps them
        if not self.trainer.sanity_checking:
            rank_zero_info(self.val_metrics.table())
        if self.evaluation.plotting:
            self._save_plots()

    @rank_zero_only
    def _save_plots(self) -> None:
        """Ultralytics' curves, confusion matrices and validation batches into the run folder, and to image loggers."""
        folder = self.run_folder()
        paths = self.evaluation.save_plots(folder, self.loggers, self.global_step)
        rank_zero_info(f"Plots saved to {folder.resolve()}: {', '.join(p.name for p in paths)}")

    def run_folder(self) -> Path:
        """Where this run's files go (see ``yolo_lightning.run_folder.stage_folder``), claimed once per module."""
        self._evaluation_folder = stage_folder(self.trainer, self.task.name, self._evaluation_folder)
        return self._evaluation_folder

    # The ``test`` split is evaluated exactly like validation, under Ultralytics' keys
    on_test_start, on_test_epoch_start = on_validation_start, on_validation_epoch_start
    test_step, on_test_epoch_end = validation_step, on_validation_epoch_end

    # ------------------------------------------------------------------------------------------- prediction
    def on_predict_start(self) -> None:
        """Set up the task's Ultralytics predictor on a copy of the network, for the datamodule's source."""
        if self.trainer.world_size > 1:
            raise ConfigurationError("predict runs in one process, as Ultralytics' predictor: use Trainer(devices=1).")
        datamodule = self.trainer.datamodule
        args = {**vars(self.ultralytics_args()), "imgsz": datamodule.imgsz, "conf": self.hparams.conf}  # None: 0.25
        self._predictor = task_predictor(self.task, self.model, args, datamodule.predict_source, self.device)

    def predict_step(self, batch: tuple[list[str], list[Any], list[str]], batch_idx: int) -> list[Results]:
        """``YOLO.predict`` on one batch of the source: Ultralytics ``Results`` per image, through the task predictor's
        letterbox and post-processing, in float32 as Ultralytics predicts by default."""
        with self._float32():
            return predict_batch(self._predictor, batch)

    # ---------------------------------------------------------------------------------------------- helpers
    def _log_epoch_values(self, values: dict[str, torch.Tensor | float]) -> None:
        """Log epoch values averaged over ranks, every tensor on the module's device (NCCL reduces only those)."""
        device = self.device
        self.log_dict({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()}, sync_dist=True)

    def _float32(self) -> Any:
        """No autocast: Ultralytics post-processes and matches predictions outside autocast."""
        return torch.autocast(self.device.type, enabled=False)


    # ------------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the accumulation cadence (for resume), Ultralytics' train_args/metrics (for export) and the network's
        architecture (``model_yaml``: the checkpoint rebuilds it without the file ``model`` named)."""
        checkpoint["hyper_parameters"]["model_yaml"] = dict(self.model.yaml)
        checkpoint["yolo_lightning"] = {
            "version": yolo_lightning_version(), "last_opt_step": self.optimization.last_opt_step,
            "train_args": self.ultralytics_train_args(), "train_metrics": self.last_metrics(),
            "class_weights": None if self.class_weight_values is None else self.class_weight_values.tolist(),
        }  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the checkpoint holds this network and these classes; restore the accumulation cadence of a resumed
        run and its resolved class weights."""
        check_same_network(checkpoint.get("hyper_parameters", {}), self.hparams)
        extra = checkpoint.get("yolo_lightning", {})
        self.optimization.last_opt_step = extra.get("last_opt_step", -1)
        if extra.get("class_weights") is not None:
            self.class_weight_values = torch.tensor(extra["class_weights"], dtype=torch.float32)
