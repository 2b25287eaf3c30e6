"""Preemption under Lightning's own DDP (2 CPU processes): a SIGTERM that reaches one rank first stops every rank at
the same step, saves last.ckpt there and exits with status 143 everywhere; the run then resumes to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PROBE = Path(__file__).with_name("preemption_probe.py")  # a script: Lightning's ddp re-executes sys.argv for rank 1
PREEMPTED = 128 + signal.SIGTERM
STEPS_PER_EPOCH = 3  # the probe: 24 images, global batch 8, a step every batch
DEADLINE_S = 180  # a run takes ~20 s; a deadlock fails the test at this point instead of hanging


def _probe(out: Path, data: Path, *args: str) -> tuple[int, dict[str, int], str]:
    """Run the probe, killing its whole process group (both ranks) at the deadline: (rank 0's exit status, the other
    ranks' exit statuses, stderr)."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "YOLO_OFFLINE": "1"}  # two ranks on two cores
    command = [sys.executable, str(PROBE), str(out), "--data", str(data), *args]
    process = subprocess.Popen(
        command, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # rank 1 is in rank 0's process group
        _, stderr = process.communicate()
        pytest.fail(f"both ranks still running after {DEADLINE_S} s (a deadlock):\n{stderr[-3000:]}")
    children = out / "children.json"
    return process.returncode, json.loads(children.read_text()) if children.exists() else {}, stderr


def _global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0])
def test_sigterm_reaching_one_rank_stops_all_at_that_step(rank, tiny_data_yaml, tmp_path):
    # With rank 0: it also outlives the rank it started by more than the 5 s after which Lightning's launcher SIGKILLs
    # every rank once one has exited with a nonzero status
    linger = ["--linger", "6"] if rank == 0 else []
    status, children, stderr = _probe(tmp_path, tiny_data_yaml, "--sigterm-rank", str(rank), *linger)
    assert (status, children) == (PREEMPTED, {"1": PREEMPTED}), stderr[-3000:]
    assert "SIGTERM at epoch 1" in stderr
    last = tmp_path / "run" / "weights" / "last.ckpt"
    assert _global_step(last) == STEPS_PER_EPOCH + 2  # epoch 0, then the batch it came in and the one before
    assert torch.load(last.with_suffix(".pt"), weights_only=False)["epoch"] == 1
    if rank == 0:
        return  # resuming is the same either way
    status, children, stderr = _probe(tmp_path, tiny_data_yaml, "--resume", str(last))
    assert (status, children) == (0, {"1": 0}), stderr[-3000:]
    assert _global_step(last) == 2 * STEPS_PER_EPOCH  # trained to the end (the probe: 2 epochs), in the same run folder
    assert not (tmp_path / "run2").exists()


@pytest.mark.slow
def test_sigterm_during_validation_stops_all_ranks_at_its_end(tiny_data_yaml, tmp_path):
    """A SIGTERM to one rank during an in-training validation takes effect at that validation's end (not at the next
    training batch, which a long validation would push past a scheduler's grace period)."""
    status, children, stderr = _probe(tmp_path, tiny_data_yaml, "--sigterm-rank", "1", "--during", "validation")
    assert (status, children) == (PREEMPTED, {"1": PREEMPTED}), stderr[-3000:]
    assert "SIGTERM at epoch 0" in stderr
    last = tmp_path / "run" / "weights" / "last.ckpt"
    assert _global_step(last) == STEPS_PER_EPOCH  # saved at the end of epoch 0's validation
