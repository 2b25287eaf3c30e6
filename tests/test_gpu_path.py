"""The GPU and cluster path, checked against what a GPU, AMP or a launcher changes, emulated on the CPU (emulation.py).

Each test failed on the code before issue 20: fused AMP clipping scaled gradients, an EMA restored on the CPU, strict
deterministic mode, the AMP self-test, per-rank augmentation seeds, double image caching, memory housekeeping,
core counts of an allocation, pinned memory on CPU runs, host-to-device class weights, the RT-DETR criterion in the
state_dict, and the NaN-recovery snapshot on every rank.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from emulation import CastingStrategy, cpu_amp, fused_adam, uneven_data
from torch import nn

from yolo_lightning import YOLODataModule, YOLOModule, hardware
from yolo_lightning.callbacks import GradientClipping, UltralyticsEMA
from yolo_lightning.class_weights import WeightedClassificationLoss, attach_criterion, weighted_criterion

PROBE = Path(__file__).with_name("ddp_probe.py")


def _trainer(root: Path, **kwargs: Any) -> L.Trainer:
    settings = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, default_root_dir=str(root), num_sanity_val_steps=0)  # fmt: skip
    return L.Trainer(**{**settings, **kwargs})


def _data(data_yaml: Path, **kwargs: Any) -> YOLODataModule:
    return YOLODataModule(data=str(data_yaml), imgsz=64, **{"batch": 8, "workers": 0, **kwargs})


def _probe(out: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, cwd=out, env=env,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


# ------------------------------------------------------------------------------------ AMP with fused AdamW
class _NormProbe(L.Callback):
    """The total gradient norm every ``on_before_optimizer_step`` hook sees (what clipping and users' hooks see)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.nn.utils.get_total_norm(grads)))


def _amp_norms(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, fused: bool) -> tuple[list[float], Any]:
    if fused:
        fused_adam(monkeypatch)
    probe, clipping = _NormProbe(), GradientClipping(max_norm=10.0)
    L.seed_everything(0)
    trainer = _trainer(tmp_path / str(fused), max_epochs=4, limit_val_batches=0, plugins=[cpu_amp(monkeypatch)],
                       callbacks=[probe, clipping])  # fmt: skip
    module = YOLOModule(model="yolov8n.yaml", optimizer="AdamW", lr0=0.002, nbs=8, warmup_epochs=0, plots=False)
    trainer.fit(module, _data(data))
    optimizer = trainer.optimizers[0]
    assert any(group.get("fused") for group in optimizer.param_groups) is fused
    return [n for n in probe.norms if np.isfinite(n)], trainer


def test_fused_adamw_under_amp_sees_and_clips_unscaled_gradients(tiny_data_yaml, tmp_path, monkeypatch):
    """Ultralytics builds AdamW fused on CUDA; Lightning then skips ``scaler.unscale_``. Gradient hooks and clipping
    must still see true gradients: the same norms as the unfused optimizer, not norms times the scale (65536)."""
    unfused, _ = _amp_norms(tmp_path, tiny_data_yaml, monkeypatch, fused=False)
    fused, trainer = _amp_norms(tmp_path, tiny_data_yaml, monkeypatch, fused=True)
    assert len(fused) >= 8 and len(unfused) >= 8  # after the scaler's first backoff steps
    assert statistics.median(fused) < 1e4  # scaled gradients measure ~1e5-1e6 here
    assert statistics.median(fused) == pytest.approx(statistics.median(unfused), rel=0.5)
    assert float(trainer.callback_metrics["train/grad_norm_epoch"]) < 1e4  # logged in true units
    assert all(torch.isfinite(p).all() for p in trainer.lightning_module.parameters())


def test_amp_self_test_turns_amp_off_where_ultralytics_would(tiny_data_yaml, tmp_path, monkeypatch):
    """``check_amp`` runs for a run with a GradScaler; where it fails (here the real one: a CPU model), the run trains
    in float32, as Ultralytics' trainer does."""
    amp = cpu_amp(monkeypatch)
    monkeypatch.undo()  # the real check_amp: False for a model on the CPU
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0, plugins=[amp])
    with pytest.warns(UserWarning, match="check_amp"):
        trainer.fit(YOLOModule(model="yolov8n.yaml", plots=False), _data(tiny_data_yaml))
    assert trainer.precision == "32-true"
    assert getattr(trainer.precision_plugin, "scaler", None) is None


# ----------------------------------------------------------------------- module moved or cast after restore
class _Tiny(L.LightningModule):
    """A linear model trained on random data: only the callbacks' handling of placement is under test."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        dtype = self.layer.weight.dtype
        return nn.functional.mse_loss(self.layer(x.to(dtype)), y.to(dtype))

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
        return torch.utils.data.DataLoader(data, batch_size=4)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_ema_restored_from_a_checkpoint_follows_the_module_to_its_device(tmp_path):
    """Lightning restores callbacks before the strategy moves (here: casts) the module: the EMA's average must be made
    after that move, with the checkpoint's averaged and raw weights, or its first update mixes devices/dtypes."""
    first = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(tmp_path), callbacks=[UltralyticsEMA(tau=2)])  # fmt: skip
    first.fit(_Tiny())
    checkpoint = str(tmp_path / "resume.ckpt")
    first.save_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    ema = UltralyticsEMA(tau=2)
    resumed = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), callbacks=[ema], strategy=CastingStrategy())  # fmt: skip
    resumed.fit(_Tiny(), ckpt_path=checkpoint)
    average = ema.averaged_module()
    assert {p.dtype for p in average.parameters()} == {torch.float64}  # made after the move
    assert ema.updates == 8  # 4 steps restored + 4 new ones
    restored = {k.removeprefix("module."): v for k, v in saved["averaging_state"].items()}
    assert int(restored["n_averaged"]) == 5  # the checkpoint's count, carried on


def test_a_second_fit_averages_its_own_module(tmp_path):
    """A second ``fit`` reuses the EMA callback (``configure_callbacks`` keeps a callback of the same kind): it must
    average the module of that fit, not carry on with the previous fit's copy and cached tensors."""
    ema = UltralyticsEMA(tau=2)
    for run in range(2):
        module = _Tiny()
        trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, default_root_dir=str(tmp_path), callbacks=[ema])  # fmt: skip
        trainer.fit(module)
        assert ema.updates == 4  # this fit's 4 steps only
        live = dict(module.named_parameters())
        averaged = dict(ema.averaged_module().named_parameters())
        assert all(torch.equal(live[n], averaged[n]) for n in live)  # on_train_end copies this fit's average in


def test_resuming_an_optimizer_state_of_another_kernel_under_amp(tiny_data_yaml, tmp_path, monkeypatch):
    """A checkpoint written where AdamW was not fused (a CPU run), resumed where Ultralytics builds it fused (CUDA)
    under AMP: the optimizer keeps the kernel it was built with, as Ultralytics' resume does (torch would otherwise
    hand the foreach step a fused step's arguments)."""
    module = YOLOModule(model="yolov8n.yaml", optimizer="AdamW", lr0=0.002, nbs=8, warmup_epochs=0, plots=False)
    first = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    first.fit(module, _data(tiny_data_yaml))
    checkpoint = str(tmp_path / "unfused.ckpt")
    first.save_checkpoint(checkpoint)
    fused_adam(monkeypatch)
    resumed = _trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0, plugins=[cpu_amp(monkeypatch)])
    resumed.fit(YOLOModule(model="yolov8n.yaml", optimizer="AdamW", lr0=0.002, nbs=8, warmup_epochs=0, plots=False),
                _data(tiny_data_yaml), ckpt_path=checkpoint)  # fmt: skip
    assert all(group["fused"] for group in resumed.optimizers[0].param_groups)
    assert resumed.global_step == 4


def test_final_validation_leaves_the_process_group_to_a_launched_rank(tiny_data_yaml, tmp_path, monkeypatch):
    """One process started by a launcher (``RANK`` set, e.g. ``torchrun --nproc_per_node 1``): Ultralytics' validator
    would gather over a process group that does not exist, so best.pt is validated in a process of its own."""
    from yolo_lightning.callbacks import run_report

    apart: list[str] = []
    monkeypatch.setattr(run_report, "validate_weights_in_new_process",
                        lambda settings, scratch: apart.append(settings["weights"]) or {"fitness": 0.0})  # fmt: skip
    monkeypatch.setenv("RANK", "0")
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(YOLOModule(model="yolov8n.yaml", plots=False), _data(tiny_data_yaml))
    assert apart == [str(tmp_path / "weights" / "best.pt")]


# --------------------------------------------------------------------------------------------- determinism
def test_deterministic_true_warns_like_ultralytics_instead_of_raising(tiny_data_yaml, tmp_path):
    """Lightning's ``deterministic=True`` is strict (on CUDA it raises for NLLLoss, AdaptiveAvgPool2d's and grid_sample's
    backward); Ultralytics' ``deterministic=True`` is ``warn_only``."""
    try:
        trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0, deterministic=True)
        trainer.fit(YOLOModule(model="yolov8n.yaml", plots=False), _data(tiny_data_yaml))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# --------------------------------------------------------------------------------- uneven DDP shards (COCO)
@pytest.mark.slow
def test_map_cross_check_under_ddp_with_uneven_shards(trained_weights, session_dir, tmp_path):
    """3 validation images on 2 ranks (2 + 1): torchmetrics' COCO mAP gathered its per-image lists element by element,
    so the ranks issued different numbers of collectives (gloo aborted). Now every rank logs what one process does."""
    data = uneven_data(session_dir)
    _probe(tmp_path, "tinyval", str(tmp_path), "--data", str(data), "--model", str(trained_weights), "--devices", "2",
           "--batch", "2", "--cross-check")  # fmt: skip
    single = _trainer(tmp_path / "single")
    single.validate(YOLOModule(model=str(trained_weights), plots=False, map_cross_check=True), _data(data, batch=2))
    keys = ("metrics/coco/mAP50(B)", "metrics/coco/mAP50-95(B)", "metrics/mAP50(B)")
    expected = {k: float(single.callback_metrics[k]) for k in keys}
    assert expected["metrics/coco/mAP50(B)"] > 0  # weights that find something
    ranks = [json.loads((tmp_path / f"tinyval-validate-rank{r}.json").read_text()) for r in range(2)]
    assert [r["images"] for r in ranks] == [2, 1]  # uneven shards
    for rank in ranks:
        assert {k: rank["logged"][k] for k in keys} == {k: pytest.approx(v, abs=1e-6) for k, v in expected.items()}


# ------------------------------------------------------------------------------------ per-rank random streams
@pytest.mark.slow
def test_ddp_ranks_draw_their_own_augmentation(session_dir, tmp_path):
    """Every image is the same picture with the same label, so two ranks' first augmented batches are equal exactly when
    their augmentation draws coincide (Ultralytics seeds each rank's loader with its RANK). With loader workers: with
    none, the main processes' streams differ by accident here; ``seed_main_process`` makes it Ultralytics' rule."""
    data = _identical_images(tmp_path / "identical", n_train=16)
    _probe(tmp_path, "augment", str(tmp_path), "--data", str(data), "--workers", "1")
    batches = [torch.load(tmp_path / f"augment-rank{r}.pt")["img"] for r in range(2)]
    assert not torch.equal(batches[0], batches[1])


def test_each_rank_seeds_its_main_process_as_ultralytics():
    """``init_seeds(seed + 1 + RANK)``: rank 0 and rank 1 draw different numbers, each the same on every run."""
    import random

    from yolo_lightning.sampling import seed_main_process

    draws = []
    for rank in (0, 1, 0):
        seed_main_process(0, rank)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert draws[0] == draws[2] and all(a != b for a, b in zip(draws[0], draws[1]))


def _identical_images(folder: Path, n_train: int) -> Path:
    """A data.yaml whose every training image is the same picture with the same label."""
    import shutil

    from yolo_lightning.synthetic import synthetic_data_yaml

    data = synthetic_data_yaml(folder, n_train=1, n_val=2, imgsz=64, seed=0)
    images, labels = data.parent / "images" / "train", data.parent / "labels" / "train"
    (image,), (label,) = list(images.iterdir()), list(labels.iterdir())
    for i in range(1, n_train):
        shutil.copy(image, images / f"copy{i}{image.suffix}")
        shutil.copy(label, labels / f"copy{i}.txt")
    return data


# ------------------------------------------------------------------------------------------- image caches
def test_prepare_data_builds_labels_only_and_writes_the_disk_cache_atomically(tiny_data_yaml, session_dir, tmp_path,
                                                                           monkeypatch):  # fmt: skip
    """``prepare_data`` built whole datasets: ``cache="ram"`` loaded every image twice, and ``cache="disk"``'s .npy files
    were written by every rank (and node) at once with Ultralytics' plain ``np.save``."""
    from ultralytics.data.base import BaseDataset

    from yolo_lightning.synthetic import synthetic_data_yaml

    cached: list[str] = []
    original = BaseDataset.cache_images
    monkeypatch.setattr(BaseDataset, "cache_images", lambda self: (cached.append(self.prefix), original(self))[1])
    trainer = _trainer(tmp_path / "ram", max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(YOLOModule(model="yolov8n.yaml", plots=False), _data(tiny_data_yaml, cache="ram"))
    assert len(cached) == 2  # train and val, once each (in setup)

    data = synthetic_data_yaml(session_dir / "disk_cache", n_train=8, n_val=4, imgsz=64, seed=1)

    writer = BaseDataset.cache_images_to_disk

    def finds_it_written(self: Any, i: int) -> None:  # Ultralytics' writer (np.save in place) must find nothing to do
        npy, image = self.npy_files[i], Path(self.im_files[i])
        assert npy.exists() and npy.stat().st_mtime >= image.stat().st_mtime, f"Ultralytics would write {npy}"
        writer(self, i)

    monkeypatch.setattr(BaseDataset, "cache_images_to_disk", finds_it_written)
    trainer = _trainer(tmp_path / "disk", max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(YOLOModule(model="yolov8n.yaml", plots=False), _data(data, cache="disk"))
    npy = sorted(Path(data).parent.rglob("*.npy"))
    assert len(npy) == 12 and not list(Path(data).parent.rglob(".*.npy"))  # every image, no staged leftovers
    dataset = trainer.datamodule.train_dataset
    from ultralytics.utils.patches import imread

    assert np.array_equal(np.load(dataset.npy_files[0]), imread(dataset.im_files[0], flags=dataset.cv2_flag))


# ----------------------------------------------------------------------------------- memory housekeeping
def test_gpu_memory_is_shown_in_gib_like_ultralytics(monkeypatch):
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * 2**29)
    assert hardware.gpu_memory_text(torch.device("cuda", 0)) == "1.5G"  # Ultralytics: memory / 2**30


def test_memory_is_cleared_before_validation_and_at_epoch_end(tiny_data_yaml, tmp_path, monkeypatch):
    """BaseTrainer's ``_clear_memory(0.5)`` before each validation and after each epoch: garbage collection and the
    CUDA cache emptied when more than half the GPU's memory is reserved."""
    calls: list[str] = []
    monkeypatch.setattr("yolo_lightning.module.clear_accelerator_memory", lambda device: calls.append(device.type))
    trainer = _trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(YOLOModule(model="yolov8n.yaml", plots=False), _data(tiny_data_yaml))
    assert len(calls) == 4  # two validations, two epoch ends

    emptied: list[int] = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=100))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    for reserved, expected in ((40, 0), (60, 1)):
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None, r=reserved: r)
        emptied.clear()
        hardware.clear_accelerator_memory(torch.device("cuda", 0))
        assert len(emptied) == expected
    hardware.clear_accelerator_memory(torch.device("cpu"))  # nothing to do on CPU (no call into torch.cuda)


def test_validation_images_are_half_for_amp_on_a_gpu():
    """BaseValidator in training: ``half = device != cpu and amp``; its preprocess then halves the images."""
    assert hardware.evaluation_half("16-mixed", torch.device("cuda", 0))
    assert hardware.evaluation_half("bf16-mixed", torch.device("cuda", 0))
    assert not hardware.evaluation_half("32-true", torch.device("cuda", 0))
    assert not hardware.evaluation_half("16-mixed", torch.device("cpu"))


# ------------------------------------------------------------------------------------- cores and memory
def test_cores_follow_the_allocation_not_the_machine(monkeypatch):
    """``os.cpu_count()`` counts the machine; a cluster task, a container or taskset gets fewer cores."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(hardware, "_cgroup_cpu_limit", lambda: None)
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    assert hardware.cores_per_process(1) == 6 and hardware.cores_per_process(2) == 3  # taskset / cpuset
    assert hardware.loader_workers(8, local_devices=1, batches=100) == 6
    monkeypatch.setattr(hardware, "_cgroup_cpu_limit", lambda: 4)
    assert hardware.cores_per_process(1) == 4  # docker --cpus 4
    monkeypatch.setattr(hardware, "_cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert hardware.cores_per_process(4) == 8  # srun: one task per process, 8 cores each
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert hardware.cores_per_process(4) == 2  # srun ... torchrun: the task's 8 cores shared by torchrun's 4 processes
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert hardware.cores_per_process(4) == 2  # one task, Lightning's launcher starts 4 processes in it


def test_pinned_memory_only_for_batches_going_to_a_gpu(tiny_data_yaml, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, training on the CPU
    dm = _data(tiny_data_yaml)
    trainer = _trainer(tmp_path, max_epochs=1)
    dm.trainer = trainer
    dm.setup("fit")
    assert not dm.train_dataloader().pin_memory and not dm.val_dataloader().pin_memory
    assert hardware.pin_memory(torch.device("cuda", 0)) and hardware.pin_memory(None)


# --------------------------------------------------------------------------------------------- criterion
def test_classification_class_weights_are_moved_to_the_device_once():
    loss = WeightedClassificationLoss(torch.tensor([1.0, 2.0]))
    preds = torch.zeros(3, 2, device="meta")
    loss(preds, {"cls": torch.zeros(3, dtype=torch.long, device="meta")})
    assert loss.weight.device.type == "meta"  # kept there: no host-to-device copy at the next step


def test_a_weighted_rtdetr_criterion_is_not_model_state():
    """RT-DETR's criterion is an nn.Module whose class weights are buffers: registered in the model, they entered the
    checkpoint's raw state_dict after the EMA copied the module, and a resumed run rejected the unexpected keys."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import RTDETRDetectionModel

    model = RTDETRDetectionModel("rtdetr-l.yaml", nc=2, verbose=False)
    model.args, model.nc, model.names = get_cfg(), 2, {0: "a", 1: "b"}
    keys = set(model.state_dict())
    attach_criterion(model, weighted_criterion(model, torch.tensor([1.0, 3.0])))
    assert set(model.state_dict()) == keys
    assert model.criterion.vfl.pos_weight.tolist() == [1.0, 3.0]  # what model.loss uses
    model.criterion = None  # as the export strips it
    assert model.criterion is None and "criterion" not in model._modules


# ------------------------------------------------------------------------------------------- NaN recovery
@pytest.mark.slow
def test_nan_recovery_under_ddp_keeps_one_snapshot_and_restores_every_rank(tiny_data_yaml, tmp_path):
    """The last good state is kept by rank 0 only (not one host copy per rank) and sent to every rank when restored:
    after a NaN epoch on both ranks, both hold the same finite weights."""
    _probe(tmp_path, "nanrecover", str(tmp_path), "--data", str(tiny_data_yaml), "--model", "yolov8n.yaml")
    ranks = [torch.load(tmp_path / f"nanrecover-rank{r}.pt") for r in range(2)]
    assert [r["snapshot_kept"] for r in ranks] == [True, False]
    assert [r["recoveries"] for r in ranks] == [1, 1]
    assert ranks[0]["digest"] == ranks[1]["digest"] and ranks[0]["finite"]
