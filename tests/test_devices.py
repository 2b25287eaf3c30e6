"""Device, precision and DDP correctness that a CPU can check: the mistakes that would crash or mislead on GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from ultralytics.models.yolo.detect import DetectionValidator

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning import cli as cli_module
from yolo_lightning.callbacks import UltralyticsEMA
from yolo_lightning.sampling import ContiguousValSampler
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.export import portable_model
from yolo_lightning import hardware
from yolo_lightning.hardware import (
    busy_cores,
    other_programs_load,
    default_precision,
    evaluation_autocast,
    loader_workers,
    plan_threads,
)
from yolo_lightning.synthetic import SYNTHETIC_NAMES, synthetic_data_yaml

PROBE = Path(__file__).with_name("ddp_probe.py")
METRICS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)", "fitness")


def _trainer(root: Path, **kwargs: Any) -> L.Trainer:
    settings = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, default_root_dir=str(root))  # fmt: skip
    return L.Trainer(**{**settings, **kwargs})


def _data(data_yaml: Path, **kwargs: Any) -> YOLODataModule:
    return YOLODataModule(data=str(data_yaml), imgsz=64, **{"batch": 8, "workers": 0, **kwargs})


# ------------------------------------------------------------------------------------------ validator's device
@pytest.mark.parametrize("model", ["yolo26n.yaml", "rtdetr-l.yaml"])
def test_validator_builds_its_tensors_on_the_batch_device(tiny_data_yaml, tmp_path, monkeypatch, model):
    """Ultralytics' ``_prepare_batch`` scales boxes by a tensor it builds on ``validator.device``: it must be the
    device of the batch (a ``None`` there is a CPU tensor, which crashes against CUDA boxes)."""
    original = DetectionValidator._prepare_batch
    seen: list[tuple[Any, torch.device]] = []

    def checked(self, si: int, batch: dict[str, Any]) -> dict[str, Any]:
        seen.append((self.device, batch["img"].device))
        return original(self, si, batch)

    monkeypatch.setattr(DetectionValidator, "_prepare_batch", checked)  # RTDETRValidator inherits it
    trainer = _trainer(tmp_path, limit_val_batches=1, limit_predict_batches=1)
    module = YOLOModule(model=model, plots=False)
    trainer.validate(module, _data(tiny_data_yaml))
    trainer.predict(module, _data(tiny_data_yaml))
    assert len(seen) >= 2
    assert all(isinstance(device, torch.device) and device == batch_device for device, batch_device in seen), seen


# ------------------------------------------------------------------------------ logged values on the module device
class MetaDeviceStandIn(L.Callback):
    """While the module's epoch-end hooks log, it reports the ``meta`` device (a stand-in for CUDA on a CPU machine),
    and what it hands to ``log_dict`` is recorded instead of logged (Lightning cannot read meta tensors)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._device: torch.device | None = None

    def _stand_in(self, pl_module: L.LightningModule) -> None:
        self._device, pl_module._device = pl_module._device, torch.device("meta")
        pl_module.log_dict = lambda values, **kwargs: self.calls.append((dict(values), kwargs))

    def _restore(self, pl_module: L.LightningModule) -> None:
        if self._device is not None:
            pl_module._device, self._device = self._device, None
            del pl_module.log_dict

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # callbacks run before the module's hook
        self._stand_in(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._stand_in(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._restore(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore(pl_module)


def test_every_value_logged_with_sync_dist_is_on_the_module_device(tiny_data_yaml, tmp_path):
    """NCCL all-reduces only device tensors: a CPU tensor logged with ``sync_dist=True`` crashes every GPU validation.
    Metric values are computed on the CPU (Ultralytics' numpy code); they must reach ``log`` on the module's device."""
    stand_in = MetaDeviceStandIn()
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                       callbacks=[stand_in])  # fmt: skip
    trainer.fit(YOLOModule(plots=False), _data(tiny_data_yaml))
    keys = {key for values, _ in stand_in.calls for key in values}
    assert {"train/box_loss", "lr/pg0", "val/box_loss", "metrics/mAP50(B)", "metrics/F1(B)"} <= keys
    for values, kwargs in stand_in.calls:
        assert kwargs.get("sync_dist") is True
        for key, value in values.items():
            # a Python number becomes a tensor on the module's device inside ``log``; tensors must already be there
            assert not isinstance(value, torch.Tensor) or value.device.type == "meta", (key, value.device)


# ------------------------------------------------------------------------------------------------ precision
@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true"])
def test_half_precision_weights_are_refused_in_one_line(tiny_data_yaml, tmp_path, precision):
    trainer = _trainer(tmp_path, max_epochs=1, precision=precision)
    with pytest.raises(ConfigurationError, match=rf"precision='{precision}'.*'16-mixed' is Ultralytics' amp=True") as e:
        trainer.fit(YOLOModule(plots=False), _data(tiny_data_yaml))
    assert "\n" not in str(e.value)


def test_cli_refuses_half_precision_with_exit_2(tiny_data_yaml, tmp_path):
    result = subprocess.run(
        ["yolo-lightning", "fit", "--data.data", str(tiny_data_yaml), "--data.imgsz", "64", "--trainer.precision",
         "bf16-true", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("yolo-lightning: error: Trainer(precision='bf16-true')")


@pytest.mark.slow
def test_bf16_mixed_validates_in_float32_on_cpu(trained_weights, standard_data_yaml, tmp_path):
    """Lightning would validate a bf16-mixed run in bfloat16 (boxes rounded to 1/128 of their size); Ultralytics
    validates AMP runs in float16 on CUDA and in float32 on the CPU. On the CPU the numbers equal a 32-true validation."""
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        trainer = _trainer(tmp_path / precision, precision=precision)
        trainer.validate(YOLOModule(model=str(trained_weights), plots=False), _data(standard_data_yaml))
        results[precision] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert results["32-true"]["metrics/mAP50(B)"] > 0.05
    assert results["bf16-mixed"] == results["32-true"]


def test_evaluation_autocast_matches_ultralytics_amp_validation():
    cuda = evaluation_autocast("bf16-mixed", torch.device("cuda"))
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.float16  # Ultralytics: fp16 on CUDA
    cpu = evaluation_autocast("bf16-mixed", torch.device("cpu"))
    assert isinstance(cpu, torch.autocast) and not cpu._enabled  # float32
    assert not isinstance(evaluation_autocast("16-mixed", torch.device("cuda")), torch.autocast)  # Lightning's fp16


def test_ema_stays_float32_and_moves_under_mixed_precision(tiny_data_yaml, tmp_path):
    initial: dict[str, torch.Tensor] = {}

    class Initial(L.Callback):
        def on_train_start(self, trainer, pl_module):
            initial.update({n: p.detach().clone() for n, p in pl_module.model.named_parameters()})

    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0, num_sanity_val_steps=0,
                       precision="bf16-mixed", callbacks=[Initial()])  # fmt: skip
    trainer.fit(YOLOModule(nbs=8, warmup_epochs=0, plots=False), _data(tiny_data_yaml))
    ema = next(c for c in trainer.callbacks if isinstance(c, UltralyticsEMA))
    assert ema.updates == 2
    averaged = dict(ema.averaged_module().model.named_parameters())
    assert {p.dtype for p in averaged.values()} == {torch.float32}
    assert any(not torch.equal(averaged[n], initial[n]) for n in initial)


def test_cli_defaults_precision_from_the_accelerator(tiny_data_yaml, tmp_path, monkeypatch):
    """No ``--trainer.precision``: the CLI asks ``default_precision`` (16-mixed on CUDA, Ultralytics' amp=True)."""
    asked: list[str] = []
    monkeypatch.setattr(cli_module, "default_precision", lambda accelerator: asked.append(accelerator) or "bf16-mixed")
    cli = cli_module.YOLOLightningCLI(
        YOLOModule, YOLODataModule, run=False,
        args=["--data.data", str(tiny_data_yaml), "--trainer.accelerator", "cpu", "--trainer.logger", "false"],
    )  # fmt: skip
    assert asked == ["cpu"] and cli.trainer.precision == "bf16-mixed"
    explicit = cli_module.YOLOLightningCLI(
        YOLOModule, YOLODataModule, run=False,
        args=["--data.data", str(tiny_data_yaml), "--trainer.accelerator", "cpu", "--trainer.precision", "32-true"],
    )  # fmt: skip
    assert explicit.trainer.precision == "32-true" and asked == ["cpu"]


def test_default_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [default_precision(a) for a in ("auto", "gpu", "cuda", "cpu")] == ["16-mixed", "16-mixed", "16-mixed", "32-true"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_precision("auto") == "32-true"


# ----------------------------------------------------------------------------------- hardware defaults
def _on(device: str) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


@pytest.mark.parametrize(("device", "channels_last", "expected"), [
    ("cuda", None, True), ("cuda", True, True), ("cuda", False, False), ("cpu", None, False), ("cpu", True, False),
])  # fmt: skip
def test_channels_last_on_cuda_like_ultralytics(device, channels_last, expected):
    module = YOLOModule(names=SYNTHETIC_NAMES, channels_last=channels_last)
    module._trainer = _on(device)
    module.configure_model()  # Lightning calls it before the strategy moves and wraps the model
    weight = module.model.model[0].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is expected
    exported = portable_model(module.model).model[0].conv.weight
    assert exported.is_contiguous()  # saved NCHW, as Ultralytics saves channels_last runs


def test_workers_capped_per_local_device(tiny_data_yaml, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert loader_workers(8, local_devices=8, batches=10) == 2  # Ultralytics: cpu_count // local devices
    assert loader_workers(8, local_devices=1, batches=10) == 8
    assert loader_workers(8, local_devices=1, batches=1) == 0
    dm = _data(tiny_data_yaml, workers=8)
    dm.trainer = SimpleNamespace(num_devices=4, world_size=1, global_rank=0, max_epochs=1, lightning_module=None)
    dm.setup("fit")
    assert dm.train_dataloader().num_workers == 3  # 24 images, batch 8: at most 3 batches
    assert dm.val_dataloader().num_workers == 0  # 8 images, batch 16: one batch
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert dm.train_dataloader().num_workers == 2  # 8 cores // 4 devices


def test_empty_validation_shard_gets_one_padding_batch(tiny_data_yaml):
    dm = _data(tiny_data_yaml)
    dm.setup("validate")
    samplers = [ContiguousValSampler(dm.val_dataset, 16, rank, batch_size=16) for rank in range(16)]
    assert sum(len(s) for s in samplers if not s.padding) == len(dm.val_dataset)  # every image once
    assert [s.padding for s in samplers] == [False] * 8 + [True] * 8 and all(list(s) == [0] for s in samplers[8:])


# --------------------------------------------------------------------------------------------- DDP on the CPU
def _probe(mode: str, out: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(PROBE), mode, str(out), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=out, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_three_ranks_with_fewer_validation_images_than_ranks(trained_weights, session_dir, tmp_path):
    """2 validation images, 3 ranks: one rank has no image; validate and a fit (sanity check + one validation) run,
    every image counts once, and every rank logs the same metrics as one process does."""
    data = synthetic_data_yaml(session_dir / "two_val", n_train=6, n_val=2, imgsz=64, seed=0)
    _probe("tinyval", tmp_path, "--data", str(data), "--model", str(trained_weights), "--devices", "3")
    single = _trainer(tmp_path / "single")
    single.validate(YOLOModule(model=str(trained_weights), plots=False), _data(data, batch=6))
    expected = {k: float(single.callback_metrics[k]) for k in METRICS}
    for call, validations in (("validate", 1), ("fit", 2)):
        ranks = [json.loads((tmp_path / f"tinyval-{call}-rank{r}.json").read_text()) for r in range(3)]
        assert [r["world"] for r in ranks] == [3, 3, 3]
        assert [r["validations"] for r in ranks] == [validations] * 3
        assert sum(r["images"] for r in ranks) == 2 * validations  # each image once per validation
        assert [r["padding_batches"] for r in ranks] == [0, 0, validations]  # the idle rank kept in step
        assert ranks[0]["logged"] == ranks[1]["logged"] == ranks[2]["logged"]
        assert all(torch.isfinite(torch.tensor(v)) for k, v in ranks[0]["logged"].items() if k.startswith("val/"))
        if call == "validate":
            assert {k: pytest.approx(v, abs=1e-6) for k, v in expected.items()} == {k: ranks[0]["logged"][k] for k in METRICS}


@pytest.mark.slow
def test_freeze_then_unfreeze_under_ddp_equals_one_process(tiny_data_yaml, tmp_path):
    """FreezeBackbone (layers 0..9, unfrozen at epoch 1) under 2-process DDP without find_unused_parameters, against
    one process stepping on the same global batches (two accumulated halves, the DDP ranks' shares): the weights are
    equal after the frozen epoch and after the unfreeze epoch, identical on both ranks, and the unfrozen layers trained."""
    _probe("freeze", tmp_path, "--data", str(tiny_data_yaml), "--devices", "2")
    _probe("freeze", tmp_path, "--data", str(tiny_data_yaml), "--devices", "1")
    zero, one = (torch.load(tmp_path / f"freeze-devices2-rank{r}.pt", weights_only=False) for r in (0, 1))
    single = torch.load(tmp_path / "freeze-devices1-rank0.pt", weights_only=False)
    assert zero["under_ddp"] and not single["under_ddp"]
    assert [len(f) for f in zero["frozen"]] == [len(f) for f in single["frozen"]] == [99, 0]
    halves = [b for pair in zip(zero["files"], one["files"]) for b in pair]
    assert halves == single["files"] and len(halves) == 12  # the same global batches, in the same order
    backbone_convs = [n for n in single["initial"] if n.startswith(tuple(f"model.{i}." for i in range(10)))
                      and n.endswith("conv.weight")]  # fmt: skip
    assert len(backbone_convs) == 33
    for run in (zero, single):
        assert all(torch.equal(run["epochs"][0][n], run["initial"][n]) for n in backbone_convs)  # frozen in epoch 0
        assert not any(torch.equal(run["epochs"][1][n], run["epochs"][0][n]) for n in backbone_convs)  # then trained
    for epoch in (0, 1):
        for name, value in single["epochs"][epoch].items():
            assert torch.equal(zero["epochs"][epoch][name], one["epochs"][epoch][name]), (epoch, name)  # synchronised
            torch.testing.assert_close(zero["epochs"][epoch][name], value, rtol=1e-5, atol=1e-7)


def test_busy_cores_counts_other_programs_now(monkeypatch):
    # three readings of 100 jiffies each, 30 / 20 / 25 of them idle: 1.4 / 1.6 / 1.5 of 2 cores busy; the least wins
    readings = iter([(100, 1000, 2), (130, 1100, 2), (130, 1100, 2), (150, 1200, 2), (150, 1200, 2), (175, 1300, 2)])
    monkeypatch.setattr(hardware, "_cpu_times", lambda: next(readings))
    assert busy_cores(0.0) == pytest.approx(1.4, abs=0.01)
    monkeypatch.setattr(hardware, "_cpu_times", lambda: (_ for _ in ()).throw(OSError("no /proc/stat")))
    assert busy_cores(0.0) == pytest.approx(os.getloadavg()[0], abs=0.5)  # the load average where /proc/stat is missing
    monkeypatch.undo()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores(0.2) >= 0.6  # the spinning process holds one core (of the real /proc/stat)
    finally:
        spinner.kill()
        spinner.wait()


def test_sibling_ranks_are_not_other_programs(monkeypatch):
    """One process samples the cores busy now; several local processes (DDP) use the load average, since a sample
    taken while the sibling ranks start would count them, and plan_threads already gives each its share."""
    monkeypatch.setattr(hardware, "busy_cores", lambda: 1.0)
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (0.25, 0.0, 0.0))
    assert other_programs_load(1) == 1.0
    assert other_programs_load(2) == 0.25


def test_thread_plan_follows_cores_workers_load_and_the_user():
    assert plan_threads("3", 2, 0, "cpu", 5.0).threads == 3  # OMP_NUM_THREADS set by the user wins
    assert plan_threads(None, 2, 0, "cpu", 0.0).threads == 2  # a quiet 2-core machine: both cores
    assert plan_threads(None, 2, 0, "cpu", 1.2).threads == 1  # another program keeps a core busy
    assert plan_threads(None, 2, 2, "cpu", 0.0).threads == 1  # two loader workers
    assert plan_threads(None, 8, 2, "cpu", 0.0).threads == 6  # 8 cores per process, 2 workers
    assert plan_threads(None, 64, 4, "cuda", 0.0).threads == 8  # CUDA: at most 8, as Ultralytics
