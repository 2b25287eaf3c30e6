"""Standalone 2-process CPU DDP probes for tests/test_ddp.py; every rank writes what it saw into OUT_DIR.

Run as a script, never imported by pytest: Lightning's ``ddp`` re-executes ``sys.argv`` for rank 1, and
``ddp_spawn`` pickles the callbacks, which works for classes of a ``__main__`` guarded by ``if __name__``.

    python tests/ddp_probe.py ema   OUT_DIR --data DATA_YAML [--variant no-validation|no-buffer-sync]
    python tests/ddp_probe.py grad  OUT_DIR --data DATA_YAML
    python tests/ddp_probe.py reset OUT_DIR --data DATA_YAML --model WEIGHTS --strategy ddp|ddp_spawn
    python tests/ddp_probe.py freeze OUT_DIR --data DATA_YAML [--devices 1|2]
    python tests/ddp_probe.py augment OUT_DIR --data DATA_YAML [--workers N]
    python tests/ddp_probe.py nanrecover OUT_DIR --data DATA_YAML --model MODEL
    python tests/ddp_probe.py tinyval OUT_DIR --data DATA_YAML --model WEIGHTS --devices 3 [--batch B] [--cross-check]
    python tests/ddp_probe.py epochimages OUT_DIR --data DATA_YAML_OR_OPTIMIZED [--devices 2]

Files: ``ema-rank{r}.pt``, ``grad-rank{r}.pt``, ``reset-{call}-{n}-rank{r}.json`` (one per validation epoch),
``freeze-devices{d}-rank{r}.pt``, ``tinyval-{call}-rank{r}.json``, ``augment-rank{r}.pt``, ``nanrecover-rank{r}.pt``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from fault_tools import NaNImages
from parity import AUGMENTATION_OFF
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import FreezeBackbone, NonFiniteRecovery, UltralyticsEMA

BATCH = 8  # global batch: 4 images per rank
SUMMARY_KEYS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)", "fitness")


def named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters then buffers by name (the tensors ``UltralyticsEMA`` pairs), detached copies."""
    tensors = {f"param:{n}": p for n, p in module.named_parameters()}
    tensors.update({f"buffer:{n}": b for n, b in module.named_buffers()})
    return {name: t.detach().clone() for name, t in tensors.items()}


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes: equal digests mean bit-identical tensors."""
    h = hashlib.sha256()
    for name, t in tensors.items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _params(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Only the parameters of ``named_tensors`` (BatchNorm buffers are per rank until UltralyticsEMA broadcasts them)."""
    return {name: t for name, t in tensors.items() if name.startswith("param:")}


def ema_of(trainer: L.Trainer) -> UltralyticsEMA:
    return next(c for c in trainer.callbacks if isinstance(c, UltralyticsEMA))


class EMAProbe(L.Callback):
    """Count real optimizer steps (an optimizer post-hook, independent of Lightning's hooks) and snapshot the EMA."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.steps = 0
        self.batches = 0
        self.batch_sizes: list[int] = []
        self.epochs: list[dict[str, Any]] = []
        self.validated = ""
        self.last: dict[str, dict[str, torch.Tensor]] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.optimizers[0].register_step_post_hook(self._count_step)

    def _count_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        self.batch_sizes.append(int(batch["img"].shape[0]))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        # Runs before UltralyticsEMA's own hook swaps the weights back: the module holds what validation used.
        self.validated = digest(named_tensors(pl_module))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning 2.x runs the epoch's validation before this hook: the EMA is back in its AveragedModel here.
        ema = ema_of(trainer)
        average, live = named_tensors(ema.averaged_module()), named_tensors(pl_module)
        record = {"epoch": trainer.current_epoch, "updates": ema.updates, "steps": self.steps, "batches": self.batches}
        record.update(ema_digest=digest(average), live_digest=digest(live), validated_digest=self.validated)
        record.update(ema_param_digest=digest(_params(average)))
        self.epochs.append(record)
        self.last = {"ema": average, "live": live}

    def on_fit_end(self, trainer, pl_module) -> None:
        # After UltralyticsEMA.on_train_end copied the average into the module: the weights fit() leaves behind.
        final = named_tensors(pl_module)
        record = {
            "epochs": self.epochs,
            **self.last,
            "final_digest": digest(final),
            "final_param_digest": digest(_params(final)),
        }
        record.update(batch_sizes=self.batch_sizes, world_size=trainer.world_size)
        torch.save(record, self.out / f"ema-rank{trainer.global_rank}.pt")


class GradProbe(L.Callback):
    """On the first training batch: each rank's local gradient of ``loss.sum()`` vs the synchronized ``p.grad``.

    The reference is computed before the real step, on a deep copy of the network (so BatchNorm statistics and the
    loss criterion of the real model are untouched) and outside DDP (so nothing is all-reduced).
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.record: dict[str, Any] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx != 0:
            return
        network = copy.deepcopy(pl_module.model)
        trainable = {n: p for n, p in network.named_parameters() if p.requires_grad}
        with torch.enable_grad():
            loss, _ = network.loss({**batch, "img": batch["img"].float() / 255})  # DetectionTrainer.preprocess_batch
            grads = torch.autograd.grad(loss.sum(), list(trainable.values()), allow_unused=True)
        self.record.update(
            reference={n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(trainable.items(), grads)},
            reference_loss=float(loss.detach().sum()),
            batch_size=int(batch["img"].shape[0]),
            im_files=list(batch["im_file"]),
            weights_digest=digest(named_tensors(pl_module.model)),
            world_size=trainer.world_size,
        )

    def on_after_backward(self, trainer, pl_module) -> None:
        if "synced" not in self.record:  # first batch: gradients start from zero, none accumulated yet
            params = {n: p for n, p in pl_module.model.named_parameters() if p.requires_grad}
            self.record["synced"] = {n: p.grad.detach().clone() for n, p in params.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.record["returned_loss"] = float(outputs["loss"])  # what training_step returned for backward
            torch.save(self.record, self.out / f"grad-rank{trainer.global_rank}.pt")


class ResetProbe(L.Callback):
    """Per validation epoch: the metric's local state before compute, its global count after, and its reset state."""

    def __init__(self, out: Path, call: str) -> None:
        self.out = out
        self.call = call
        self.count = 0
        self.local: dict[str, int] = {}

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        metric = pl_module.val_metrics
        self.local = {"images_at_start": int(metric.images), "conf_at_start": len(metric.conf)}

    def on_validation_epoch_end(self, trainer, pl_module) -> None:  # callbacks run before the module: before compute
        collected = pl_module._validator.metrics.stats  # what this rank's validator collected, handed over next
        self.local.update(images_local=len(collected["tp"]), predictions_local=sum(len(c) for c in collected["conf"]))
        self.local["weights_digest"] = digest(named_tensors(pl_module))  # the weights validated (EMA during fit)

    def on_validation_end(self, trainer, pl_module) -> None:
        metric = pl_module.val_metrics
        record = {
            "call": self.call,
            "rank": trainer.global_rank,
            "sanity": trainer.sanity_checking,
            "image_count": metric.image_count,
            "images_after_reset": int(metric.images),
            "states_after_reset": sum(len(getattr(metric, s)) for s in ("tp", "conf", "pred_cls", "target_cls")),
            "results": {k: float(v) for k, v in metric.results.results_dict.items()},
            **self.local,
        }
        path = self.out / f"reset-{self.call}-{self.count}-rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))
        self.count += 1


class FreezeProbe(L.Callback):
    """Live weights at each training epoch's end, whether DDP wrapped the model, and the FreezeBackbone state.

    Every BatchNorm runs in eval mode (running statistics), so an image's forward pass does not depend on which other
    images share its batch: one process seeing a global batch as two accumulated halves computes what two DDP
    processes compute on one half each.
    """

    def __init__(self, out: Path, devices: int) -> None:
        self.out = out
        self.devices = devices
        self.record: dict[str, Any] = {"epochs": []}

    def on_train_start(self, trainer, pl_module) -> None:
        self.record["initial"] = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}
        self.record["under_ddp"] = isinstance(trainer.model, DistributedDataParallel)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pl_module.model.apply(lambda m: m.eval() if isinstance(m, nn.modules.batchnorm._BatchNorm) else None)
        self.record.setdefault("files", []).append(list(batch["im_file"]))  # every batch, in order
        if batch_idx == 0:
            freeze = next(c for c in trainer.callbacks if isinstance(c, FreezeBackbone))
            self.record.setdefault("frozen", []).append(freeze.frozen_parameter_names)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.record["epochs"].append({n: p.detach().clone() for n, p in pl_module.model.named_parameters()})

    def on_fit_end(self, trainer, pl_module) -> None:
        torch.save(self.record, self.out / f"freeze-devices{self.devices}-rank{trainer.global_rank}.pt")


class InterleavedRanks(Sampler[int]):
    """One process seeing the global batches of ``ranks`` DDP processes: for each global batch, rank 0's share, then
    rank 1's..., each share being what ``DistributedSampler`` (seeded as ``YOLODataModule`` seeds it) gives that rank."""

    def __init__(self, dataset: Any, ranks: int, share: int, seed: int) -> None:
        self.samplers = [DistributedSampler(dataset, ranks, r, shuffle=True, seed=seed) for r in range(ranks)]
        self.share = share

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)

    def __iter__(self):
        shares = [list(s) for s in self.samplers]
        for start in range(0, len(shares[0]), self.share):
            for indices in shares:
                yield from indices[start : start + self.share]


class InterleavedDataModule(YOLODataModule):
    """A single-process YOLODataModule whose training order is ``InterleavedRanks`` over two ranks."""

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset
        sampler = InterleavedRanks(dataset, 2, self.hparams.batch, self.hparams.seed)
        return self._loader(dataset, self.hparams.batch, sampler, 0, prefetch=2)


class TinyValProbe(L.Callback):
    """Per rank and validation: the validation images it saw and the values logged (synced: the same on every rank)."""

    def __init__(self, out: Path, call: str) -> None:
        self.out = out
        self.call = call
        self.images = 0
        self.padding_batches = 0
        self.validations = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch.get("padding"):
            self.padding_batches += 1
        else:
            self.images += len(batch["im_file"])

    def on_validation_end(self, trainer, pl_module) -> None:  # after the epoch's values reached callback_metrics
        self.validations += 1
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
        record = {"images": self.images, "padding_batches": self.padding_batches, "validations": self.validations}
        record.update(logged=logged, world=trainer.world_size)
        (self.out / f"tinyval-{self.call}-rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _trainer(args: argparse.Namespace, callback: L.Callback, strategy: Any = None, **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=args.devices, strategy=strategy or args.strategy, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        default_root_dir=str(args.out / "run"), callbacks=[callback], **kwargs,
    )  # fmt: skip


def _datamodule(args: argparse.Namespace, batch: int = BATCH) -> YOLODataModule:
    return YOLODataModule(data=args.data, imgsz=64, batch=batch, workers=0, seed=0)


def run_ema(args: argparse.Namespace) -> None:
    """2 epochs, nbs 16 (accumulation 2 after a 3-batch warmup): some batches step, some only accumulate.

    Variants: ``no-validation`` (``limit_val_batches=0``), ``no-buffer-sync`` (``DDPStrategy(broadcast_buffers=False)``,
    as DetectionTrainer wraps its DDP model).
    """
    strategy = DDPStrategy(broadcast_buffers=False) if args.variant == "no-buffer-sync" else None
    validation = {"limit_val_batches": 0} if args.variant == "no-validation" else {}
    trainer = _trainer(args, EMAProbe(args.out), strategy, max_epochs=2, num_sanity_val_steps=0, **validation)
    trainer.fit(YOLOModule(model=args.model, nbs=16, plots=False), _datamodule(args))


def run_grad(args: argparse.Namespace) -> None:
    """One training batch, no validation."""
    trainer = _trainer(args, GradProbe(args.out), max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(YOLOModule(model=args.model, plots=False), _datamodule(args))


def run_reset(args: argparse.Namespace) -> None:
    """``validate`` twice on the same weights, then a fit whose 3 validations run in one process lifetime (one spawn
    under ``ddp_spawn``): the sanity check (the EMA = the initial weights), then one per epoch. With one batch per
    epoch, epoch 0's batch steps (warmup) and epoch 1's only accumulates (nominal accumulation 2), so both epochs
    validate the same EMA weights."""
    for call in ("validate0", "validate1"):
        trainer = _trainer(args, ResetProbe(args.out, call))
        trainer.validate(YOLOModule(model=args.model, plots=False), _datamodule(args))
        if trainer.global_rank == 0:  # what the launching process got back (under ddp_spawn: from the worker)
            logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k in SUMMARY_KEYS}
            (args.out / f"logged-{call}.json").write_text(json.dumps(logged))
    trainer = _trainer(args, ResetProbe(args.out, "fit"), max_epochs=2, limit_train_batches=1, num_sanity_val_steps=-1)
    trainer.fit(YOLOModule(model=args.model, plots=False), _datamodule(args))


def run_freeze(args: argparse.Namespace) -> None:
    """FreezeBackbone(layers 0..9, unfrozen at epoch 1), 2 epochs, SGD, no warmup, no augmentation, no validation.

    ``--devices 2``: DDP, global batch 8 (4 per rank, nbs 8: a step per batch). ``--devices 1``: one process, batch 4
    and nbs 8 (two accumulated batches per step) in ``InterleavedRanks`` order, so each step sums the gradients of the
    same two halves the DDP ranks compute, like DetectionTrainer's DDP loss (``world_size * loss.sum()`` averaged).
    """
    strategy = "ddp" if args.devices > 1 else "auto"
    callbacks = [FreezeBackbone(layers=10, unfreeze_at_epoch=1), FreezeProbe(args.out, args.devices)]
    trainer = L.Trainer(
        accelerator="cpu", devices=args.devices, strategy=strategy, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(args.out / "run"),
        callbacks=callbacks, max_epochs=2, limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    module = YOLOModule(model=args.model, optimizer="SGD", lr0=0.01, nbs=8, warmup_epochs=0, plots=False)
    data = dict(data=args.data, imgsz=64, workers=0, seed=0, close_mosaic=0, **AUGMENTATION_OFF)
    datamodule = YOLODataModule(batch=8, **data) if args.devices > 1 else InterleavedDataModule(batch=4, **data)
    torch.manual_seed(0)  # the same initial weights in every process and run
    trainer.fit(module, datamodule)


def run_tinyval(args: argparse.Namespace) -> None:
    """``validate``, then a 1-batch fit (sanity check + one validation), with fewer validation images than ranks
    (``--batch 6``) or uneven shards; ``--cross-check``: with ``map_cross_check`` (torchmetrics' COCO mAP)."""
    module = dict(model=args.model, plots=False, map_cross_check=args.cross_check)
    trainer = _trainer(args, TinyValProbe(args.out, "validate"))
    trainer.validate(YOLOModule(**module), _datamodule(args, batch=args.batch))
    trainer = _trainer(args, TinyValProbe(args.out, "fit"), max_epochs=1, limit_train_batches=1)
    trainer.fit(YOLOModule(**module), _datamodule(args, batch=args.batch))


class FirstBatch(L.Callback):
    """The first augmented training batch of this rank."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0 and trainer.current_epoch == 0:
            torch.save({"img": batch["img"].cpu()}, self.out / f"augment-rank{trainer.global_rank}.pt")


def run_augment(args: argparse.Namespace) -> None:
    """One training batch with Ultralytics' default augmentation (mosaic, HSV, affine, flips), ``--workers`` loaders."""
    trainer = _trainer(args, FirstBatch(args.out), max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=BATCH, workers=args.workers, seed=0)
    trainer.fit(YOLOModule(model="yolov8n.yaml", plots=False), datamodule)


class RecoveryProbe(L.Callback):
    """After fit: whether this rank kept a snapshot, how many recoveries ran, and a digest of its weights."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_fit_end(self, trainer, pl_module) -> None:
        recovery = next(c for c in trainer.callbacks if isinstance(c, NonFiniteRecovery))
        params = _params(named_tensors(pl_module))
        record = {"snapshot_kept": recovery._good is not None, "recoveries": recovery.recoveries}
        record.update(digest=digest(params), finite=all(bool(t.isfinite().all()) for t in params.values()))
        torch.save(record, self.out / f"nanrecover-rank{trainer.global_rank}.pt")


def run_nanrecover(args: argparse.Namespace) -> None:
    """3 epochs; epoch 1's first batch is NaN on every rank: NonFiniteRecovery restores the end of epoch 0."""
    callbacks = [NaNImages(at=[[1, 0]]), RecoveryProbe(args.out)]
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(args.out / "run"),
        callbacks=callbacks, max_epochs=3, limit_val_batches=1, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(YOLOModule(model=args.model, plots=False, nbs=8), _datamodule(args))


class EpochImages(L.Callback):
    """The training images of each epoch on this rank."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.epochs: list[list[str]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.epochs[-1] += list(batch["im_file"])

    def on_train_end(self, trainer, pl_module) -> None:
        (self.out / f"epochimages-rank{trainer.global_rank}.json").write_text(json.dumps(self.epochs))


def run_epochimages(args: argparse.Namespace) -> None:
    """2 epochs on ``--data`` (a data.yaml or an optimized dataset), recording each rank's training images."""
    trainer = _trainer(args, EpochImages(args.out), max_epochs=2, limit_val_batches=0, num_sanity_val_steps=0)
    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=4, workers=args.workers)
    trainer.fit(YOLOModule(model=args.model, plots=False), datamodule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "mode", choices=["ema", "grad", "reset", "freeze", "tinyval", "augment", "nanrecover", "epochimages"]
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="yolo26n.yaml")
    parser.add_argument("--strategy", default="ddp", choices=["ddp", "ddp_spawn"])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--variant", default="default", choices=["default", "no-validation", "no-buffer-sync"])
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--cross-check", action="store_true")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0, verbose=False)  # the same augmentation draws in every run (each rank gets other images)
    modes = {"ema": run_ema, "grad": run_grad, "reset": run_reset, "freeze": run_freeze, "tinyval": run_tinyval,
             "augment": run_augment, "nanrecover": run_nanrecover, "epochimages": run_epochimages}  # fmt: skip
    modes[args.mode](args)


if __name__ == "__main__":
    main()
