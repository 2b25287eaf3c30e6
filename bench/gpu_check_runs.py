"""The runs of ``bench/gpu_check.py``, each executed in its own process (``gpu_check.py --runner NAME``).

Every runner trains or validates through yolo-lightning's public API (``YOLOModule``, ``YOLODataModule``, the
callbacks, ``lightning.Trainer``) or Ultralytics' (``YOLO(...).train/val``), measures what its check needs and returns
plain numbers (a JSON object on the last stdout line); ``gpu_check.py`` turns them into verdicts. Nothing here decides
PASS or FAIL, so a runner that crashes reports where (``stage``) and the check says why.

Heavy imports (torch, lightning, ultralytics) happen inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

MODEL = "yolo26n.yaml"
RECIPE = {"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1}  # bench/benchmark.py's
KEYS = {
    "mAP50": "metrics/mAP50(B)",
    "mAP50-95": "metrics/mAP50-95(B)",
    "P": "metrics/precision(B)",
    "R": "metrics/recall(B)",
}
COCO_KEYS = {"mAP50": "metrics/coco/mAP50(B)", "mAP50-95": "metrics/coco/mAP50-95(B)"}  # map_cross_check's
AUGMENTATION_OFF = dict(
    mosaic=0.0, mixup=0.0, cutmix=0.0, copy_paste=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, degrees=0.0,
    translate=0.0, scale=0.0, shear=0.0, perspective=0.0, flipud=0.0, fliplr=0.0, bgr=0.0,
)  # fmt: skip  (tests/parity.py's: a resumed run then sees exactly the images the uninterrupted one saw)
STAGE = {"name": "start"}  # what the runner was doing, for the error line when it raises


def stage(name: str) -> None:
    """Record what the runner does now (reported if it raises)."""
    STAGE["name"] = name


# ------------------------------------------------------------------------------------------------------ helpers
def now() -> float:
    """Wall-clock seconds once the GPU's queued work is done (when CUDA is in use), so spans hold their kernels."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def uses_cuda(args: argparse.Namespace) -> bool:
    """Whether this run trains on CUDA."""
    import torch

    return args.accelerator == "gpu" and torch.cuda.is_available()


def reset_peak_memory(args: argparse.Namespace) -> None:
    """Start a new peak-memory window on the GPU."""
    import torch

    if uses_cuda(args):
        torch.cuda.reset_peak_memory_stats()


def device_summary(args: argparse.Namespace) -> dict[str, Any]:
    """Peak GPU memory (MiB) since the last reset, and the device's name."""
    import torch

    if not uses_cuda(args):
        return {"peak_mib": None, "device": f"CPU ({os.cpu_count()} cores)"}
    return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20, "device": torch.cuda.get_device_name()}


def ultralytics_device(args: argparse.Namespace) -> int | str:
    """``device=`` for Ultralytics: GPU 0, or the CPU in a dry run."""
    return 0 if uses_cuda(args) else "cpu"


def read_results_csv(path: Path) -> list[dict[str, float]]:
    """The rows of a results.csv (yolo-lightning's RunReport or Ultralytics' trainer), keys and values stripped."""
    with open(path, encoding="utf-8") as file:
        return [
            {k.strip(): float(v) for k, v in row.items() if k is not None and v is not None and v.strip() != ""}
            for row in csv.DictReader(file)
        ]


def epoch_losses(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """The per-epoch mean training losses of a results.csv (``train/*_loss``: box, cls and dfl, or YOLO26's l1)."""
    return [{k: v for k, v in row.items() if k.startswith("train/") and k.endswith("_loss")} for row in rows]


def float_state(module: Any) -> dict[str, Any]:
    """A network's floating-point parameters and buffers, as float32 CPU copies."""
    return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def relative_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """``||a - b|| / ||a||`` over every tensor of two state dicts (the same keys)."""
    import torch

    if a.keys() != b.keys():
        return float("inf")
    difference = math.sqrt(sum(float(torch.sum((a[k] - b[k]) ** 2)) for k in a))
    size = math.sqrt(sum(float(torch.sum(a[k] ** 2)) for k in a))
    return difference / max(size, 1e-12)


def finite(values: list[float]) -> list[float]:
    """The finite ones."""
    return [v for v in values if math.isfinite(v)]


def memory_logger():
    """A Lightning logger that keeps every logged metric and hyper-parameter in memory (public Logger API)."""
    from lightning.pytorch.loggers import Logger

    class MemoryLogger(Logger):
        """Keeps ``log_metrics`` calls (in order) and ``log_hyperparams`` values."""

        def __init__(self) -> None:
            super().__init__()
            self.metrics: list[dict[str, float]] = []
            self.hyperparams: dict[str, Any] = {}

        @property
        def name(self) -> str:
            return "memory"

        @property
        def version(self) -> int:
            return 0

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.metrics.append({k: float(v) for k, v in metrics.items()})

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            self.hyperparams.update(params if isinstance(params, dict) else vars(params))

        def series(self, key: str) -> list[float]:
            """Every logged value of ``key``, in order."""
            return [m[key] for m in self.metrics if key in m]

    return MemoryLogger()


def fit(
    args: argparse.Namespace,
    spec: dict[str, Any],
    root: Path,
    *,
    precision: str,
    epochs: int,
    module: dict[str, Any] | None = None,
    datamodule: dict[str, Any] | None = None,
    callbacks: tuple = (),
    checkpoint: bool = True,
    logger: Any = None,
    ckpt_path: str | None = None,
    seed: int = 0,
    trainer: dict[str, Any] | None = None,
) -> tuple[Any, Any, float]:
    """One ``Trainer.fit`` of yolo26n on the small synthetic data: (trainer, module, seconds).

    The recipe is bench/benchmark.py's (AdamW lr0 0.003, warmup 1 epoch, nbs = batch), close_mosaic 0,
    ``deterministic="warn"`` like Ultralytics' ``deterministic=True``; RunReport without its final validation (every
    run but the CLI's: what it validates is checked elsewhere) and, unless ``checkpoint=False``, UltralyticsCheckpoint.
    """
    import lightning as L

    from yolo_lightning import YOLODataModule, YOLOModule
    from yolo_lightning.callbacks import RunReport, UltralyticsCheckpoint

    batch = spec["batch"]
    yolo_module = YOLOModule(**{"model": MODEL, "nbs": batch, "plots": False, **RECIPE, **(module or {})})
    data = YOLODataModule(
        **{"data": spec["data"], "imgsz": spec["imgsz"], "batch": batch, "workers": spec["workers"], "seed": 0,
           "close_mosaic": 0, **(datamodule or {})}
    )  # fmt: skip
    extra = [RunReport(final_validation=False)] + ([UltralyticsCheckpoint()] if checkpoint else [])
    lightning_trainer = L.Trainer(
        **{"accelerator": args.accelerator, "devices": 1, "precision": precision, "deterministic": "warn",
           "max_epochs": epochs, "logger": logger if logger is not None else False, "enable_progress_bar": False,
           "enable_model_summary": False, "num_sanity_val_steps": 0, "default_root_dir": str(root),
           "enable_checkpointing": checkpoint, "callbacks": [*callbacks, *extra], **(trainer or {})}
    )  # fmt: skip
    L.seed_everything(seed, verbose=False)
    start = now()
    lightning_trainer.fit(yolo_module, data, ckpt_path=ckpt_path)
    return lightning_trainer, yolo_module, now() - start


def ema_callback(trainer: Any) -> Any:
    """The run's UltralyticsEMA (YOLOModule adds one when none is given)."""
    from yolo_lightning.callbacks import UltralyticsEMA

    return next((c for c in trainer.callbacks if isinstance(c, UltralyticsEMA)), None)


def validate_best_pt(args: argparse.Namespace, spec: dict[str, Any], best: Path, root: Path) -> dict[str, Any]:
    """``YOLO(best.pt).val(device=0)`` against the metrics logged for best.pt's epoch (stored in the file)."""
    import torch
    from ultralytics import YOLO

    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    results = YOLO(str(best)).val(
        data=spec["data"], imgsz=spec["imgsz"], batch=2 * spec["batch"], device=ultralytics_device(args),
        workers=spec["workers"], plots=False, verbose=False, project=str(root), name="val", exist_ok=True,
    ).results_dict  # fmt: skip
    return {
        "epoch": checkpoint["epoch"],
        "logged": {name: float(checkpoint["train_metrics"][key]) for name, key in KEYS.items()},
        "ultralytics": {name: float(results[key]) for name, key in KEYS.items()},
    }


# ----------------------------------------------------------------------------- the speed runs (fits, best-pt, speed)
def rates(args: argparse.Namespace, epochs: list[float], validations: list[float]) -> dict[str, float]:
    """Training and validation images/s over the steady epochs and validations (the first of each excluded)."""
    return {
        "train_ips": args.images / statistics.mean(epochs[1:]),
        "val_ips": args.val_images / statistics.mean(validations[1:]),
    }


def run_fit(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """yolo-lightning: ``Trainer.fit`` at ``--precision`` with UltralyticsCheckpoint, timed by a callback."""
    import lightning as L
    from ultralytics.utils import NUM_THREADS

    from yolo_lightning import YOLODataModule, YOLOModule
    from yolo_lightning.callbacks import UltralyticsCheckpoint

    class Timer(L.Callback):
        """Epochs up to their in-epoch validation, and validations from start to end."""

        def __init__(self) -> None:
            """No epochs or validations timed yet."""
            self.epochs: list[float] = []
            self.validations: list[float] = []
            self.epoch_start: float | None = None
            self.validation_start = 0.0

        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """An epoch's batches begin."""
            self.epoch_start = now()

        def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """A validation begins, and with it the end of the epoch's batches."""
            self.validation_start = now()
            if self.epoch_start is not None:  # the epoch's batches end where its validation begins
                self.epochs.append(self.validation_start - self.epoch_start)
                self.epoch_start = None

        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """Like native's on_val_start..on_val_end: the loop, the metrics, the logging and the printed table."""
            self.validations.append(now() - self.validation_start)

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """Close the epoch's span if no validation did."""
            if self.epoch_start is not None:  # an epoch without validation
                self.epochs.append(now() - self.epoch_start)
                self.epoch_start = None

    stage(f"{args.precision} fit")
    if args.accelerator == "cpu":  # like for like: the thread count Ultralytics' select_device("cpu") sets
        import torch

        torch.set_num_threads(NUM_THREADS)
    timer = Timer()
    module = YOLOModule(model=MODEL, nbs=args.batch, plots=False, **RECIPE)
    datamodule = YOLODataModule(
        data=args.data, imgsz=args.imgsz, batch=args.batch, workers=args.workers, seed=0, close_mosaic=0
    )
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, deterministic="warn", max_epochs=args.epochs,
        logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[timer, UltralyticsCheckpoint()], default_root_dir=args.root,
    )  # fmt: skip
    L.seed_everything(0, verbose=False)
    reset_peak_memory(args)
    trainer.fit(module, datamodule)
    best = Path(args.root) / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"UltralyticsCheckpoint wrote no {best}")
    return {
        **rates(args, timer.epochs, timer.validations), **device_summary(args),
        "precision": str(trainer.precision), "best_pt": str(best),
    }  # fmt: skip


def run_native(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Ultralytics' DetectionTrainer: ``YOLO(MODEL).train(...)`` with AMP on CUDA, timed by its callbacks."""
    import ultralytics.engine.trainer
    from ultralytics import YOLO

    stage("native fit")
    # Its AMP check downloads yolo26n.pt; offline, Ultralytics skips it and keeps AMP on, as this does without trying.
    ultralytics.engine.trainer.check_amp = lambda model: True
    epochs: list[float] = []
    validations: list[float] = []
    starts: dict[str, float] = {}
    model = YOLO(MODEL)
    model.add_callback("on_train_epoch_start", lambda trainer: starts.update(epoch=now()))
    model.add_callback("on_train_epoch_end", lambda trainer: epochs.append(now() - starts["epoch"]))
    model.add_callback("on_val_start", lambda validator: starts.update(val=now()))
    model.add_callback("on_val_end", lambda validator: validations.append(now() - starts["val"]))
    cuda = uses_cuda(args)
    reset_peak_memory(args)
    model.train(
        data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, nbs=args.batch, workers=args.workers,
        device=0 if cuda else "cpu", amp=cuda, plots=False, verbose=False, project=str(Path(args.root).parent),
        name=Path(args.root).name, exist_ok=True, seed=0, close_mosaic=0, **RECIPE,
    )  # fmt: skip
    # validations[args.epochs] is train()'s final re-validation of best.pt, not an epoch's
    precision = "amp" if cuda else "fp32"
    return {**rates(args, epochs, validations[: args.epochs]), **device_summary(args), "precision": precision}


def run_check(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """For each ``--weights`` best.pt: its logged metrics, ``YOLO(best.pt).val()`` and yolo-lightning's ``validate``."""
    import lightning as L
    import torch
    from ultralytics import YOLO

    from yolo_lightning import YOLODataModule, YOLOModule

    # Both validations in strict float32 and NCHW (YOLO.val's layout on CUDA): TF32 convolutions (10-bit mantissa) and
    # another memory format pick other kernels, whose rounding can reorder near-tied detections between the two.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    results = {}
    for i, weights in enumerate(args.weights):
        stage(f"validating {weights}")
        checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
        ultralytics = YOLO(weights).val(
            data=args.data, imgsz=args.imgsz, batch=2 * args.batch, device=ultralytics_device(args),
            workers=args.workers, plots=False, verbose=False, project=args.root, name=f"val{i}", exist_ok=True,
        ).results_dict  # fmt: skip
        trainer = L.Trainer(
            accelerator=args.accelerator, devices=1, precision="32-true", logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(Path(args.root) / f"validate{i}"),
        )  # fmt: skip
        datamodule = YOLODataModule(data=args.data, imgsz=args.imgsz, batch=args.batch, workers=args.workers)
        trainer.validate(YOLOModule(model=weights, plots=False, channels_last=False), datamodule, verbose=False)
        results[weights] = {
            "epoch": checkpoint["epoch"],
            "logged": {name: float(checkpoint["train_metrics"][key]) for name, key in KEYS.items()},
            "ultralytics": {name: float(ultralytics[key]) for name, key in KEYS.items()},
            "lightning": {name: float(trainer.callback_metrics[key]) for name, key in KEYS.items()},
        }
    return {"checks": results, **device_summary(args)}


# ------------------------------------------------------------------------------------------------------- resume
def run_resume(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """16-mixed: two uninterrupted fits of ``epochs`` (their difference is the run-to-run noise), a fit that stops after
    ``stop_after`` epochs, then a fresh Trainer and module resuming it with ``fit(ckpt_path=<run>/weights/last.ckpt)``.

    Augmentations are off (``AUGMENTATION_OFF``) so every run sees the same images in the same order (the shuffle order
    is restored from the checkpoint). The final weights (the EMA, copied into the module when fit ends) and the
    per-epoch losses of results.csv are compared; a probe records where UltralyticsEMA's average lives in every
    resumed batch, the epoch the resumed fit starts at and the best score UltralyticsCheckpoint restored.
    """
    import lightning as L
    import torch

    epochs, stop_after = spec["epochs"], spec["stop_after"]
    precision, root = spec["precision"], Path(args.root)

    class StopAfter(L.Callback):
        """Stop the fit once epoch ``stop_after - 1`` is done (its last.ckpt is already written)."""

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.current_epoch >= stop_after - 1:
                trainer.should_stop = True

    class Probe(L.Callback):
        """Where the EMA copy lives during training; the epoch and best score a fit starts with."""

        def __init__(self) -> None:
            self.ema_devices: set[str] = set()
            self.ema_dtypes: set[str] = set()
            self.module_device = ""
            self.first_epoch: int | None = None
            self.best_at_start: float | None = None
            self.initial: dict[str, torch.Tensor] = {}

        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self.initial = float_state(pl_module.model)  # before the first step (of a fresh fit: the initial weights)
            score = trainer.checkpoint_callback.best_model_score
            self.best_at_start = None if score is None else float(score)

        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if self.first_epoch is None:  # on_train_start may still see the checkpoint's (finished) epoch
                self.first_epoch = trainer.current_epoch

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
            self.module_device = str(pl_module.device)
            ema = ema_callback(trainer)
            average = ema.averaged_module() if ema is not None else None
            if average is None:
                self.ema_devices.add("none")
                return
            tensors = [*average.parameters(), *average.buffers()]
            self.ema_devices.update(str(t.device) for t in tensors)
            self.ema_dtypes.update(str(t.dtype) for t in tensors if t.is_floating_point())

    common = dict(precision=precision, datamodule=AUGMENTATION_OFF)
    runs: dict[str, Any] = {}
    for name in ("uninterrupted", "repeat"):
        stage(f"{name} fit ({epochs} epochs)")
        probe = Probe()
        trainer, module, seconds = fit(args, spec, root / name, epochs=epochs, callbacks=(probe,), **common)
        runs[name] = {"state": float_state(module.model), "rows": read_results_csv(root / name / "results.csv"),
                      "seconds": seconds, "ema_devices": sorted(probe.ema_devices), "precision": str(trainer.precision),
                      "initial": probe.initial}  # fmt: skip
    stage(f"fit stopped after {stop_after} epochs")
    trainer, _, seconds = fit(args, spec, root / "resumed", epochs=epochs, callbacks=(StopAfter(),), **common)
    last_ckpt = root / "resumed" / "weights" / "last.ckpt"
    stopped_rows = read_results_csv(root / "resumed" / "results.csv")
    stopped_best = trainer.checkpoint_callback.best_model_score
    saved_epoch = int(torch.load(last_ckpt, map_location="cpu", weights_only=False)["epoch"])
    stage(f"resumed fit from {last_ckpt}")
    probe = Probe()
    trainer, module, resumed_seconds = fit(
        args, spec, root / "resumed", epochs=epochs, callbacks=(probe,), ckpt_path=str(last_ckpt), **common
    )
    resumed_rows = read_results_csv(root / "resumed" / "results.csv")
    resumed_state = float_state(module.model)
    uninterrupted, repeat = runs["uninterrupted"], runs["repeat"]

    def loss_difference(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
        """Largest relative difference of the resumed epochs' mean losses."""
        pairs = [(x[k], y[k]) for x, y in zip(epoch_losses(a)[stop_after:], epoch_losses(b)[stop_after:]) for k in x if k in y]
        return max((abs(x - y) / max(abs(x), 1e-12) for x, y in pairs), default=float("inf"))

    def changed_rows() -> list[str]:
        """The results.csv rows of the epochs before the resume that the resumed fit changed (``time`` aside)."""
        changes = []
        for before, after in zip(stopped_rows[:stop_after], resumed_rows[:stop_after] + [{}] * stop_after):
            lost = sorted(k for k in before if k != "time" and k not in after)
            other = sorted(k for k in before if k != "time" and k in after and after[k] != before[k])
            if lost or other:
                changes.append(f"epoch {before.get('epoch', '?'):g}: {len(lost)} values lost, {len(other)} changed "
                               f"({', '.join((lost + other)[:3])}...)")  # fmt: skip
        return changes

    return {
        "epochs": epochs, "stop_after": stop_after, "precision": runs["uninterrupted"]["precision"],
        "saved_epoch": saved_epoch, "first_epoch": probe.first_epoch,
        "best_saved": None if stopped_best is None else float(stopped_best), "best_restored": probe.best_at_start,
        "changed_rows": changed_rows(),
        "resumed_rows": len(resumed_rows),
        "module_device": probe.module_device, "ema_devices": sorted(probe.ema_devices),
        "ema_dtypes": sorted(probe.ema_dtypes), "uninterrupted_ema_devices": uninterrupted["ema_devices"],
        "weights_noise": relative_distance(uninterrupted["state"], repeat["state"]),
        "weights_resumed": min(relative_distance(uninterrupted["state"], resumed_state),
                               relative_distance(repeat["state"], resumed_state)),
        "weights_moved": relative_distance(uninterrupted["initial"], uninterrupted["state"]),
        "loss_noise": loss_difference(uninterrupted["rows"], repeat["rows"]),
        "loss_resumed": min(loss_difference(uninterrupted["rows"], resumed_rows),
                            loss_difference(repeat["rows"], resumed_rows)),
        "seconds": {"uninterrupted": uninterrupted["seconds"], "resumed": resumed_seconds, "stopped": seconds},
    }  # fmt: skip


# ---------------------------------------------------------------------------------------- AMP, fused AdamW, clipping
def run_amp_clip(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """The same fit (AdamW, same initial weights and batches) in 32-true and in 16-mixed with ``GradientClipping()``;
    every optimizer step's logged ``train/grad_norm_step``, the optimizer's ``fused`` flag and the GradScaler's scale."""
    import lightning as L

    from yolo_lightning.callbacks import GradientClipping

    class ScaleProbe(L.Callback):
        """The GradScaler's scale at each optimizer step (the scale of the gradients about to be clipped)."""

        def __init__(self) -> None:
            self.scales: list[float] = []
            self.optimizer = ""
            self.fused: bool | None = None

        def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            self.scales.append(float(scaler.get_scale()) if scaler is not None else 1.0)
            self.optimizer = type(optimizer).__name__
            self.fused = bool(optimizer.defaults.get("fused"))

    result: dict[str, Any] = {}
    for precision in ("32-true", spec["precision"]):
        stage(f"{precision} fit with GradientClipping")
        logger, probe = memory_logger(), ScaleProbe()
        trainer, _, seconds = fit(
            args, spec, Path(args.root) / precision, precision=precision, epochs=spec["epochs"],
            callbacks=(GradientClipping(), probe), checkpoint=False, logger=logger,
            module={"optimizer": "AdamW"}, trainer={"log_every_n_steps": 1},
        )  # fmt: skip
        result[precision] = {
            "precision": str(trainer.precision), "norms": logger.series("train/grad_norm_step"),
            "scales": probe.scales, "optimizer": probe.optimizer, "fused": probe.fused, "seconds": seconds,
        }  # fmt: skip
    return {"reference": result["32-true"], "mixed": result[spec["precision"]]}


# ------------------------------------------------------------------------------------------------------------- bf16
def run_bf16(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """A ``bf16-mixed`` fit: its precision, the dtype of the weights and of the EMA, its per-epoch losses, and
    ``YOLO(best.pt).val(device=0)`` against the metrics logged for best.pt's epoch."""
    root = Path(args.root)
    stage("bf16-mixed fit")
    trainer, module, seconds = fit(args, spec, root, precision="bf16-mixed", epochs=spec["epochs"])
    ema = ema_callback(trainer)
    stage("YOLO(best.pt).val")
    return {
        "precision": str(trainer.precision), "seconds": seconds,
        "losses": epoch_losses(read_results_csv(root / "results.csv")),
        "weight_dtypes": sorted({str(p.dtype) for p in module.model.parameters()}),
        "ema_dtypes": sorted({str(p.dtype) for p in ema.averaged_module().parameters()}) if ema else [],
        "best": validate_best_pt(args, spec, root / "weights" / "best.pt", root),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------- close_mosaic
def run_close_mosaic(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """A fit whose last ``close_mosaic`` epochs close mosaic: per epoch, ``YOLODataModule.mosaic_closed`` at its first
    batch and the most objects any training image of the epoch holds (a synthetic image holds at most 3: more means
    the loader's workers still build mosaics)."""
    import lightning as L
    import torch

    class Probe(L.Callback):
        def __init__(self) -> None:
            self.closed: dict[int, bool] = {}
            self.most: dict[int, int] = {}

        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
            epoch = trainer.current_epoch
            self.closed.setdefault(epoch, bool(trainer.datamodule.mosaic_closed))
            counts = torch.bincount(batch["batch_idx"].long().flatten(), minlength=len(batch["img"]))
            self.most[epoch] = max(self.most.get(epoch, 0), int(counts.max()) if counts.numel() else 0)

    stage("fit with close_mosaic")
    probe = Probe()
    _, _, seconds = fit(
        args, spec, Path(args.root), precision=spec["precision"], epochs=spec["epochs"], callbacks=(probe,),
        checkpoint=False, datamodule={"close_mosaic": spec["close_mosaic"]},
    )  # fmt: skip
    epochs = sorted(probe.closed)
    return {
        "epochs": spec["epochs"], "close_mosaic": spec["close_mosaic"], "seconds": seconds,
        "closed": [probe.closed[e] for e in epochs], "most_objects": [probe.most[e] for e in epochs],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------- class_weights
def run_class_weights(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """A fit with ``class_weights="inverse_frequency"``: the weights it logged (``class_weights/<name>``
    hyper-parameters) and the training labels' class counts, read from the label files here, independently."""
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    from yolo_lightning.dataset_checks import image_files

    stage("fit with class_weights='inverse_frequency'")
    logger = memory_logger()
    trainer, module, seconds = fit(
        args, spec, Path(args.root), precision=spec["precision"], epochs=spec["epochs"], checkpoint=False,
        logger=logger, module={"class_weights": "inverse_frequency"},
    )  # fmt: skip
    stage("counting the training labels")
    config = check_det_dataset(spec["data"])
    names = {int(k): str(v) for k, v in config["names"].items()}
    counts = dict.fromkeys(names.values(), 0)
    for label in img2label_paths([str(p) for p in image_files(config["train"])]):
        if Path(label).is_file():
            for line in Path(label).read_text().splitlines():
                if line.strip():
                    counts[names[int(float(line.split()[0]))]] += 1
    logged = {k.split("/", 1)[1]: float(v) for k, v in logger.hyperparams.items() if k.startswith("class_weights/")}
    losses = epoch_losses(read_results_csv(Path(args.root) / "results.csv"))
    return {"logged": logged, "counts": counts, "losses": losses, "seconds": seconds, "precision": str(trainer.precision)}


# ------------------------------------------------------------------------------------------------ FreezeBackbone
def run_freeze_backbone(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """``FreezeBackbone(layers, unfreeze_at_epoch)``: the frozen layers' weights and BatchNorm statistics through the
    frozen epochs (must not move), the head's (must move), then the frozen layers' once unfrozen (must move)."""
    import lightning as L
    import torch

    from yolo_lightning.callbacks import FreezeBackbone

    layers, unfreeze_at = spec["layers"], spec["unfreeze_at_epoch"]
    prefixes = tuple(f"model.{i}." for i in range(layers))

    class Probe(L.Callback):
        def __init__(self, freezer: FreezeBackbone) -> None:
            self.freezer = freezer
            self.snapshots: dict[str, dict[str, torch.Tensor]] = {}
            self.frozen_names: dict[int, int] = {}

        def _snapshot(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
            return float_state(pl_module.model)

        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
            if batch_idx == 0:
                self.frozen_names[trainer.current_epoch] = len(self.freezer.frozen_parameter_names)
                if trainer.current_epoch in (0, unfreeze_at):
                    self.snapshots[f"start{trainer.current_epoch}"] = self._snapshot(pl_module)

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
            if trainer.current_epoch == trainer.max_epochs - 1 and batch_idx == trainer.num_training_batches - 1:
                self.snapshots["end"] = self._snapshot(pl_module)

    stage("fit with FreezeBackbone")
    freezer = FreezeBackbone(layers=layers, unfreeze_at_epoch=unfreeze_at)
    probe = Probe(freezer)
    trainer, module, seconds = fit(
        args, spec, Path(args.root), precision=spec["precision"], epochs=spec["epochs"], callbacks=(freezer, probe),
        checkpoint=False,
    )  # fmt: skip
    head = f"model.{len(module.model.model) - 1}."
    start, unfrozen, end = probe.snapshots["start0"], probe.snapshots[f"start{unfreeze_at}"], probe.snapshots["end"]

    def moved(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], select: Any) -> tuple[int, int]:
        """(tensors that changed, tensors compared) among the selected keys."""
        keys = [k for k in a if select(k)]
        return sum(not torch.equal(a[k], b[k]) for k in keys), len(keys)

    def in_backbone(k: str) -> bool:
        return k.startswith(prefixes) and not k.endswith("num_batches_tracked")

    def running_stats(k: str) -> bool:
        return in_backbone(k) and k.endswith(("running_mean", "running_var"))

    return {
        "layers": layers, "unfreeze_at_epoch": unfreeze_at, "epochs": spec["epochs"], "seconds": seconds,
        "precision": str(trainer.precision),
        "frozen_names_per_epoch": [probe.frozen_names[e] for e in sorted(probe.frozen_names)],
        "backbone_moved_while_frozen": moved(start, unfrozen, in_backbone),
        "backbone_stats_moved_while_frozen": moved(start, unfrozen, running_stats),
        "head_moved_while_frozen": moved(start, unfrozen, lambda k: k.startswith(head)),
        "backbone_moved_after_unfreeze": moved(unfrozen, end, in_backbone),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ map_cross_check
def run_map_cross_check(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """A fit with ``map_cross_check=True``: per validation, Ultralytics' mAP and torchmetrics' COCO mAP
    (faster-coco-eval backend) of the same detections."""
    stage("fit with map_cross_check=True")
    logger = memory_logger()
    trainer, _, seconds = fit(
        args, spec, Path(args.root), precision=spec["precision"], epochs=spec["epochs"], checkpoint=False,
        logger=logger, module={"map_cross_check": True, "cls": spec.get("cls", 0.5)},
    )  # fmt: skip
    epochs = [m for m in logger.metrics if COCO_KEYS["mAP50"] in m]
    return {
        "seconds": seconds, "precision": str(trainer.precision),
        "ultralytics": [{name: m[KEYS[name]] for name in COCO_KEYS} for m in epochs],
        "coco": [{name: m[key] for name, key in COCO_KEYS.items()} for m in epochs],
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------- trajectory
def save_initial_weights(path: Path, data: str) -> Path:
    """A freshly initialised yolo26n for the data's classes (torch seed 0) in Ultralytics' checkpoint format, the
    common start of yolo-lightning's and Ultralytics' runs (both transfer it into the network they build)."""
    import torch
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.nn.tasks import DetectionModel

    names = {int(k): str(v) for k, v in check_det_dataset(data)["names"].items()}
    torch.manual_seed(0)
    model = DetectionModel(MODEL, nc=len(names), verbose=False)
    model.names = names
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {"task": "detect"}}, path)
    return path


def run_trajectory_ours(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """yolo-lightning in ``spec["precision"]`` from ``spec["weights"]`` (written here first), seed 0: per-epoch losses."""
    stage("writing the initial weights")
    weights = save_initial_weights(Path(spec["weights"]), spec["data"])
    stage(f"{spec['precision']} fit from {weights}")
    trainer, _, seconds = fit(
        args, spec, Path(args.root), precision=spec["precision"], epochs=spec["epochs"], checkpoint=False,
        module={"model": str(weights)},
    )  # fmt: skip
    rows = read_results_csv(Path(args.root) / "results.csv")
    return {"precision": str(trainer.precision), "losses": epoch_losses(rows), "seconds": seconds}


def run_trajectory_native(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """``YOLO(weights).train(device=0, amp=True, seed=s)`` for each of ``spec["seeds"]``: per-epoch losses."""
    import ultralytics.engine.trainer
    from ultralytics import YOLO

    ultralytics.engine.trainer.check_amp = lambda model: True  # offline: no yolo26n.pt to download, AMP stays on
    cuda = uses_cuda(args)
    runs = {}
    for seed in spec["seeds"]:
        stage(f"native fit, seed {seed}")
        start = now()
        trainer = YOLO(spec["weights"]).train(
            data=spec["data"], epochs=spec["epochs"], imgsz=spec["imgsz"], batch=spec["batch"], nbs=spec["batch"],
            workers=spec["workers"], device=0 if cuda else "cpu", amp=cuda, plots=False, verbose=False, val=True,
            project=str(args.root), name=f"seed{seed}", exist_ok=True, seed=seed, close_mosaic=0, **RECIPE,
        )  # fmt: skip
        del trainer
        rows = read_results_csv(Path(args.root) / f"seed{seed}" / "results.csv")
        runs[str(seed)] = {"losses": epoch_losses(rows), "seconds": now() - start}
    return {"precision": "amp" if cuda else "fp32", "runs": runs}


# ------------------------------------------------------------------------------------------------------ DDP + SyncBN
def run_ddp_syncbn(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any] | None:
    """Two processes (Lightning's ``ddp`` re-runs this command for rank 1), NCCL, ``SyncBatchNorm()``: the converted
    layers, the backend, and the BatchNorm statistics and weights of both ranks after training (SyncBatchNorm
    normalises over the global batch: both ranks' running statistics must agree). Rank 0 returns the result."""
    import lightning as L
    import torch
    import torch.distributed as dist
    from torch import nn

    from yolo_lightning import YOLODataModule, YOLOModule
    from yolo_lightning.callbacks import SyncBatchNorm

    class Probe(L.Callback):
        def __init__(self) -> None:
            self.sync_layers = 0
            self.backend = ""
            self.stats_spread = float("nan")
            self.weights_spread = float("nan")

        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self.sync_layers = sum(isinstance(m, nn.SyncBatchNorm) for m in trainer.model.modules())
            self.backend = dist.get_backend() if dist.is_initialized() else "none"

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
            if trainer.current_epoch == trainer.max_epochs - 1 and batch_idx == trainer.num_training_batches - 1:
                state = pl_module.model.state_dict()
                running = [v.flatten().float() for k, v in state.items() if k.endswith(("running_mean", "running_var"))]
                stats = torch.cat(running)
                weights = torch.cat([p.detach().flatten().float() for p in pl_module.model.parameters()])
                for name, local in (("stats_spread", stats), ("weights_spread", weights)):
                    gathered = trainer.strategy.all_gather(local)  # (world size, n)
                    setattr(self, name, float((gathered.max(0).values - gathered.min(0).values).abs().max()))

    stage("2-GPU DDP fit with SyncBatchNorm")
    sync, probe = SyncBatchNorm(), Probe()
    module = YOLOModule(model=MODEL, nbs=spec["batch"], plots=False, **RECIPE)
    datamodule = YOLODataModule(data=spec["data"], imgsz=spec["imgsz"], batch=spec["batch"], workers=spec["workers"],
                                seed=0, close_mosaic=0)  # fmt: skip
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=2, strategy="ddp", precision=spec["precision"], max_epochs=spec["epochs"],
        logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=str(args.root), callbacks=[sync, probe],
    )  # fmt: skip
    L.seed_everything(0, verbose=False)
    start = now()
    trainer.fit(module, datamodule)
    seconds = now() - start
    if not trainer.is_global_zero:
        return None
    stage("loading best.pt")
    from ultralytics import YOLO

    best = Path(args.root) / "weights" / "best.pt"
    kinds = {type(m).__name__ for m in YOLO(str(best)).model.modules()} if best.is_file() else set()
    return {
        "world_size": trainer.world_size, "backend": probe.backend, "converted": sync.converted,
        "sync_layers": probe.sync_layers, "stats_spread": probe.stats_spread, "weights_spread": probe.weights_spread,
        "best_pt": best.is_file(), "best_pt_sync_layers": "SyncBatchNorm" in kinds, "seconds": seconds,
        "precision": str(trainer.precision),
    }  # fmt: skip


RUNNERS = {
    "fit": run_fit, "native": run_native, "check": run_check, "resume": run_resume, "amp-clip": run_amp_clip,
    "bf16": run_bf16, "close-mosaic": run_close_mosaic, "class-weights": run_class_weights,
    "freeze-backbone": run_freeze_backbone, "map-cross-check": run_map_cross_check,
    "trajectory-ours": run_trajectory_ours, "trajectory-native": run_trajectory_native, "ddp-syncbn": run_ddp_syncbn,
}  # fmt: skip
