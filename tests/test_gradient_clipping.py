"""GradientClipping: the optimizer never sees a gradient norm above max_norm (AMP included); defaults; bad input."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from emulation import cpu_amp
from example_runs import run_example_config, run_example_script

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import GradientClipping
from yolo_lightning.errors import ConfigurationError


class _ProbedModule(YOLOModule):
    """Records the total gradient norm at the last hook before the optimizer updates the weights."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.step_norms.append(float(torch.nn.utils.get_total_norm(grads)))


def _fit(
    tmp_path: Path, data_yaml: Path, clipping: GradientClipping, nbs: int, **trainer_kwargs
) -> tuple[_ProbedModule, L.Trainer]:
    """One epoch of two batches of 4 images; ``nbs=4`` steps after each batch, ``nbs=8`` once after both."""
    L.seed_everything(0)
    module = _ProbedModule(nbs=nbs)
    module.step_norms = []
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1, default_root_dir=str(tmp_path),
        callbacks=[clipping], **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(module, YOLODataModule(data=str(data_yaml), imgsz=64, batch=4, workers=0))
    return module, trainer


def test_optimizer_never_sees_a_norm_above_max_norm(tiny_data_yaml, tmp_path):
    module, trainer = _fit(tmp_path, tiny_data_yaml, GradientClipping(max_norm=0.05), nbs=4)
    assert len(module.step_norms) == 2  # one per optimizer step
    assert all(norm <= 0.05 * (1 + 1e-5) for norm in module.step_norms)
    assert min(module.step_norms) > 0.049  # clipping was active: the raw norms are far larger
    assert float(trainer.callback_metrics["train/grad_norm_step"]) > 0.05  # logged before clipping
    assert "train/grad_norm_epoch" in trainer.callback_metrics
    assert module.gradient_clip_norm == 10.0  # the module's own clipping is back after fit


def test_clipping_follows_amp_unscaling(tiny_data_yaml, tmp_path, monkeypatch):
    clipping = GradientClipping(max_norm=0.05)
    amp = cpu_amp(monkeypatch, init_scale=256.0)
    module, _ = _fit(tmp_path, tiny_data_yaml, clipping, nbs=4, plugins=[amp])
    applied = [norm for norm in module.step_norms if math.isfinite(norm)]  # the scaler skips non-finite steps
    assert applied
    # Clipping the still-scaled gradients would leave the optimizer 0.05 / 256 after unscaling.
    assert all(0.049 < norm <= 0.05 * (1 + 1e-5) for norm in applied)


def test_max_norm_zero_disables_clipping_but_logs_the_norm(tiny_data_yaml, tmp_path):
    module, trainer = _fit(tmp_path, tiny_data_yaml, GradientClipping(max_norm=0), nbs=8)
    assert len(module.step_norms) == 1  # two accumulated batches, one optimizer step
    logged = float(trainer.callback_metrics["train/grad_norm_step"])
    assert module.step_norms[0] == pytest.approx(logged, rel=1e-5)
    assert logged > 10.0  # neither the callback nor the module's built-in 10.0 clipped


@pytest.mark.parametrize(("model", "expected"), [("yolo26n.yaml", 10.0), ("rtdetr-l.yaml", 0.1)])
def test_none_picks_the_family_default(model, expected):
    module = YOLOModule(model=model)
    clipping = GradientClipping()
    clipping.setup(SimpleNamespace(gradient_clip_val=None), module, "fit")
    assert clipping.resolved_max_norm == expected
    assert module.gradient_clip_norm is None  # the callback clips instead of the module


@pytest.mark.parametrize("max_norm", [-1.0, float("nan"), float("inf")])
def test_bad_max_norm_is_a_clear_error(max_norm):
    with pytest.raises(ConfigurationError, match=rf"GradientClipping\(max_norm={max_norm}\): max_norm must be"):
        GradientClipping(max_norm=max_norm)


def test_trainer_gradient_clip_val_together_is_rejected(tmp_path):
    trainer = L.Trainer(gradient_clip_val=1.0, logger=False, default_root_dir=str(tmp_path))
    with pytest.raises(ConfigurationError, match=r"gradient_clip_val=1.0.*GradientClipping\(max_norm=1.0\)"):
        GradientClipping().setup(trainer, YOLOModule(), "fit")


@pytest.mark.slow
def test_example_script(tiny_data_yaml, tmp_path):
    output = run_example_script("gradient_clipping.py", tiny_data_yaml, tmp_path, "--epochs", "1")
    assert "max_norm 10.0" in output and "pre-clip gradient norm" in output
    assert "metrics/mAP50-95(B)" in output


@pytest.mark.slow
def test_example_config(tiny_data_yaml, tmp_path):
    output = run_example_config(
        "gradient_clipping.yaml", tiny_data_yaml, tmp_path, "--trainer.max_epochs", "1",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path),
    )  # fmt: skip
    assert "metrics/mAP50-95(B)" in output
    metrics = (tmp_path / "lightning_logs/version_0/metrics.csv").read_text()
    assert "train/grad_norm_epoch" in metrics
