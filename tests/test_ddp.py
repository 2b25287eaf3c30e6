"""Lightning's own DDP (2 CPU processes, gloo): every val image counted once, same metrics as one process; the loss
scale of DetectionTrainer's DDP; the EMA identical on every rank; metric states reset (``ddp`` and ``ddp_spawn``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from parity import METRIC_KEYS

from yolo_lightning import YOLODataModule, YOLOModule

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
       "--trainer.enable_progress_bar", "false", "--data.imgsz", "64", "--data.workers", "0"]  # fmt: skip


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    return subprocess.run(["yolo-lightning", *args], capture_output=True, text=True, cwd=cwd, env=env)


def _printed_results(output: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"^\s+(metrics/\S+|fitness)\s+([0-9.]+)$", output, re.MULTILINE)}


@pytest.mark.slow
def test_ddp_validation_equals_single_process(trained_weights, standard_data_yaml, tmp_path):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    trainer.validate(
        YOLOModule(model=str(trained_weights)), YOLODataModule(data=str(standard_data_yaml), imgsz=64, batch=8)
    )
    single = {k: float(v) for k, v in trainer.callback_metrics.items()}

    result = _cli("validate", "--model.model", str(trained_weights), "--data.data", str(standard_data_yaml),
                  "--data.batch", "8", *DDP, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = _printed_results(result.stdout + result.stderr)
    assert single["metrics/mAP50(B)"] > 0
    for key in METRIC_KEYS:  # printed with 4 decimals
        assert distributed[key] == pytest.approx(single[key], abs=5e-5), key


@pytest.mark.slow
def test_ddp_fit_writes_weights_once(tiny_data_yaml, tmp_path):
    result = _cli("fit", "--data.data", str(tiny_data_yaml), "--data.batch", "8", "--trainer.max_epochs", "1",
                  "--trainer.default_root_dir", str(tmp_path / "run"), *DDP, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    weights = tmp_path / "run" / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["best.ckpt", "best.pt", "last.ckpt", "last.pt"]
    assert torch.load(weights / "last.pt", weights_only=False)["epoch"] == 0


# ------------------------------------------------------------------------------------------- tests/ddp_probe.py runs
PROBE = Path(__file__).with_name("ddp_probe.py")  # a script: Lightning's ddp re-executes sys.argv for rank 1
WORLD_SIZE, BATCH = 2, 8  # the probe's Trainer(devices=2) and YOLODataModule(batch=8)


def _probe(mode: str, out: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    command = [sys.executable, str(PROBE), mode, str(out), *args]
    result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=out, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [name for name in a if not torch.equal(a[name], b[name])]


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        "default",
        "no-validation",
        "no-buffer-sync",
    ],
)  # fmt: skip
def test_ddp_ema_identical_on_every_rank(tiny_data_yaml, tmp_path, variant):
    """2 epochs, batch 8 (4 per rank), nbs 16: the EMA's parameters are bit-identical on both ranks at every epoch
    end, every validation uses bit-identical weights (buffers included), so do the weights fit() leaves, and the EMA
    counts exactly the real optimizer steps.

    BatchNorm statistics are local to each rank (no SyncBatchNorm), so between validations the EMA's buffers differ, as
    in DetectionTrainer; UltralyticsEMA gives every rank rank 0's buffers before each validation and before fit()
    ends (DetectionTrainer broadcasts them in ``validate``). ``no-validation``: ``limit_val_batches=0`` (only the end
    of fit syncs); ``no-buffer-sync``: ``DDPStrategy(broadcast_buffers=False)``, DetectionTrainer's setting, where
    DDP's own forward-time buffer broadcast does not hide a missing sync.
    """
    _probe("ema", tmp_path, "--data", str(tiny_data_yaml), "--variant", variant)
    ranks = [torch.load(tmp_path / f"ema-rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]

    for rank in ranks:
        assert rank["world_size"] == WORLD_SIZE
        assert rank["batch_sizes"] == [BATCH // WORLD_SIZE] * 6  # 24 images: 12 per rank, 3 batches of 4 per epoch
        for epoch in rank["epochs"]:  # steps: counted by a torch optimizer step post-hook
            assert epoch["updates"] == epoch["steps"], epoch
        last = rank["epochs"][-1]
        assert 0 < last["steps"] < last["batches"] == 6, last  # accumulation was active: not every batch stepped
        assert rank["final_param_digest"] == last["ema_param_digest"]  # fit() ends with the EMA copied into the module
        if variant != "no-validation":
            assert [e["validated_digest"] for e in rank["epochs"]] == [e["ema_digest"] for e in rank["epochs"]]

    zero, one = ranks
    assert [e["updates"] for e in zero["epochs"]] == [e["updates"] for e in one["epochs"]]
    # Live parameters: one all-reduced gradient, one optimizer step, so bit-identical. (Live BatchNorm buffers are
    # per rank, as in DetectionTrainer without SyncBatchNorm: each rank's last forward updated them with its images.)
    live = _differing(zero["live"], one["live"])
    assert not [name for name in live if name.startswith("param:")]
    assert zero["final_digest"] == zero["epochs"][-1]["ema_digest"]  # rank 0's buffers are the ones every rank gets
    assert not [n for n in _differing(zero["ema"], one["ema"]) if n.startswith("param:")], "EMA differs between ranks"
    for e0, e1 in zip(zero["epochs"], one["epochs"]):
        assert e0["ema_param_digest"] == e1["ema_param_digest"], f"EMA differs between ranks, epoch {e0['epoch']}"
        assert e0["validated_digest"] == e1["validated_digest"], (
            f"ranks validated different weights, epoch {e0['epoch']}"
        )
    assert zero["final_digest"] == one["final_digest"]


@pytest.mark.slow
def test_ddp_loss_scale_matches_detection_trainer(tiny_data_yaml, tmp_path):
    """Each rank computes ``loss.sum()`` on its own ``batch // world_size`` images and back-propagates it times the
    world size; DDP averages, so the applied gradient is DetectionTrainer's ``mean_r(world_size * grad(loss_r.sum()))``.

    The reference gradients are computed on each rank, before the real step, on a deep copy of the network outside
    DDP (``torch.autograd.grad``, nothing all-reduced); the probe then records ``p.grad`` right after the real backward.
    """
    _probe("grad", tmp_path, "--data", str(tiny_data_yaml))
    zero, one = (torch.load(tmp_path / f"grad-rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE))

    for rank in (zero, one):
        assert rank["world_size"] == WORLD_SIZE
        assert rank["batch_size"] == BATCH // WORLD_SIZE
        assert rank["returned_loss"] == pytest.approx(WORLD_SIZE * rank["reference_loss"], rel=1e-6)
    assert not set(zero["im_files"]) & set(one["im_files"])  # each rank its own images
    assert zero["weights_digest"] == one["weights_digest"]  # the same weights on both ranks
    assert zero["reference_loss"] != one["reference_loss"]  # so a mix-up of the two ranks' terms would show

    expected = {
        n: (WORLD_SIZE * zero["reference"][n] + WORLD_SIZE * one["reference"][n]) / WORLD_SIZE
        for n in zero["reference"]
    }
    assert expected.keys() == zero["synced"].keys() == one["synced"].keys() and len(expected) > 100
    assert sum(float(g.norm()) for g in expected.values()) > 0
    for name, gradient in expected.items():
        assert torch.equal(zero["synced"][name], one["synced"][name]), name  # all-reduced: the same on both ranks
        torch.testing.assert_close(
            zero["synced"][name], gradient, rtol=1e-5, atol=1e-8, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_ddp_metric_states_reset(trained_weights, tiny_data_yaml, tmp_path, strategy):
    """``validate`` twice, then a fit (sanity check + 2 epochs in one process lifetime, one spawn for ``ddp_spawn``):
    every validation counts each val image exactly once over the ranks, starts from empty states, leaves them empty,
    and validations of the same weights give the same metrics (nothing accumulated from the previous one)."""
    _probe("reset", tmp_path, "--data", str(tiny_data_yaml), "--model", str(trained_weights), "--strategy", strategy)
    val_images = len(list((tiny_data_yaml.parent / "images" / "val").iterdir()))
    records: dict[tuple[str, int], list[dict]] = {}
    for path in sorted(tmp_path.glob("reset-*-rank*.json")):
        record = json.loads(path.read_text())
        records.setdefault((record["call"], int(path.stem.split("-")[2])), []).append(record)
    assert sorted(records) == [("fit", 0), ("fit", 1), ("fit", 2), ("validate0", 0), ("validate1", 0)]

    for key, (zero, one) in records.items():
        assert (zero["rank"], one["rank"]) == (0, 1)
        for record in (zero, one):
            assert record["images_at_start"] == record["conf_at_start"] == 0, key  # reset before this validation
            assert record["image_count"] == val_images, key  # global count: each image once over the ranks
            assert record["images_after_reset"] == record["states_after_reset"] == 0, key
        assert zero["images_local"] + one["images_local"] == val_images, key
        assert zero["results"] == one["results"], key  # every rank computed the same global metrics
        assert zero["weights_digest"] == one["weights_digest"], key
    assert records["fit", 0][0]["sanity"] and not records["fit", 1][0]["sanity"]

    first = records["validate0", 0][0]
    assert first["results"]["metrics/mAP50(B)"] > 0  # real matches, not zeros against zeros
    same_weights = [("validate1", 0), ("fit", 0)]  # the fit's sanity check validates the initial weights (= the EMA)
    for key in same_weights:
        assert records[key][0]["weights_digest"] == first["weights_digest"], key
        assert records[key][0]["results"] == first["results"], key
    epoch0, epoch1 = records["fit", 1][0], records["fit", 2][0]
    assert epoch0["weights_digest"] != first["weights_digest"]  # epoch 0 stepped once
    assert epoch1["weights_digest"] == epoch0["weights_digest"]  # epoch 1 only accumulated: the same EMA weights
    assert epoch1["results"] == epoch0["results"]  # third validation in the same processes, still not accumulated

    for call in ("validate0", "validate1"):  # what the launching process got back (logged as float32)
        logged = json.loads((tmp_path / f"logged-{call}.json").read_text())
        assert logged.keys() == {*METRIC_KEYS, "fitness"}
        for key, value in logged.items():
            assert value == pytest.approx(first["results"][key], rel=1e-6), (call, key)
