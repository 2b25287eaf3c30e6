"""One run folder per run under every launcher (torchrun, SLURM's srun, several nodes), claimed once the processes are
connected: a second launch never writes into the first run's folder, the processes of one run never get two.

The launchers are emulated on CPU: torchrun itself, SLURM's environment set by hand for processes started here, and
two torchrun "nodes" on this machine, sharing one folder or each with its own (node-local disks).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # several processes train one epoch per launch (about 15-30 s each on 2 cores)
LIMIT = 300  # seconds per launch: a hung rank fails the test instead of blocking the run
FIT = ["--model.model", "yolov8n.yaml", "--data.imgsz", "64", "--data.batch", "8", "--data.workers", "0",
       "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
       "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
       "--model.plots", "false"]  # fmt: skip
WEIGHT_FILES = ["best.ckpt", "best.pt", "last.ckpt", "last.pt"]
# What a launcher sets: none may leak in from the shell that runs the tests (a CI job under SLURM or torchrun)
LAUNCHER_VARIABLES = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR",
                      "MASTER_PORT"}  # fmt: skip


def _env(**variables: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    inherited = {k: v for k, v in inherited.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    return {**inherited, "OMP_NUM_THREADS": "1", **variables}  # one thread per rank on two cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *options, "-m", "yolo_lightning.cli"]


def _launch_together(commands: list[tuple[list[str], Path, dict[str, str]]], logs: Path) -> None:
    """Start every (command, cwd, env) at once and wait for all; each must succeed (its log tail says why not)."""
    logs.mkdir(exist_ok=True)
    running = []
    for i, (command, cwd, env) in enumerate(commands):
        cwd.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{i}.log", "w") as log:  # a file, not a pipe: a full pipe would block that process
            # timeout kills its whole process group: torchrun's workers too
            running.append(subprocess.Popen(["timeout", "-k", "10", str(LIMIT), *command], cwd=cwd, env=env,
                                            stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
    statuses = [process.wait(timeout=LIMIT + 30) for process in running]
    for i, status in enumerate(statuses):
        assert status == 0, f"process {i} exited with {status}:\n" + (logs / f"{i}.log").read_text()[-3000:]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _earlier_run(cwd: Path) -> dict[str, bytes]:
    """A finished run in ``cwd``'s runs/detect/train (stand-in files); what it holds."""
    run = cwd / "runs" / "detect" / "train"
    for name in ("weights/best.pt", "weights/last.pt", "results.csv", "args.yaml"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(f"an earlier run's {name}\n")
    return _snapshot(run)


def _weights(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "weights").iterdir())


def test_torchrun_twice_goes_to_train_then_train2(tiny_data_yaml, tmp_path):
    work = tmp_path / "work"
    for launch in range(2):
        command = _torchrun("--nproc_per_node", "2", "--master_port", str(_free_port()))
        command += ["fit", "--data.data", str(tiny_data_yaml), *FIT, "--trainer.devices", "2"]
        _launch_together([(command, work, _env())], tmp_path / f"logs{launch}")
        if launch == 0:
            first = _snapshot(work / "runs" / "detect" / "train")
    runs = work / "runs" / "detect"
    assert sorted(p.name for p in runs.iterdir()) == ["train", "train2"]
    assert {"weights/best.pt", "weights/last.pt", "results.csv", "args.yaml"} <= first.keys()
    assert _snapshot(runs / "train") == first  # untouched by the second launch
    assert _weights(runs / "train2") == WEIGHT_FILES and list(runs.glob("train2/lightning_logs/*/config.yaml"))
    assert sorted(p.name for p in work.iterdir()) == ["runs"]  # nothing left beside the run folders


def _slurm(task: int, port: int) -> dict[str, str]:
    """The environment srun gives task ``task`` of 2 on one node (no WORLD_SIZE: Lightning reads SLURM's)."""
    return _env(SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_PROCID=str(task), SLURM_LOCALID=str(task),
                SLURM_NODEID="0", SLURM_JOB_ID="4242", SLURM_JOB_NAME="train", SLURM_NODELIST="localhost",
                SLURM_JOB_NUM_NODES="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip


def test_slurm_tasks_share_one_run_folder(tiny_data_yaml, tmp_path):
    work = tmp_path / "work"
    cli = [sys.executable, "-m", "yolo_lightning.cli"]
    port = _free_port()
    fit = [*cli, "fit", "--data.data", str(tiny_data_yaml), *FIT, "--trainer.devices", "2"]
    _launch_together([(fit, work, _slurm(task, port)) for task in range(2)], tmp_path / "fit-logs")
    runs = work / "runs" / "detect"
    assert sorted(p.name for p in runs.iterdir()) == ["train"]
    assert _weights(runs / "train") == WEIGHT_FILES

    port = _free_port()
    validate = [*cli, "validate", "--ckpt_path", str(runs / "train" / "weights" / "best.ckpt"), "--data.data",
                str(tiny_data_yaml), *FIT, "--trainer.devices", "2"]  # fmt: skip
    _launch_together([(validate, work, _slurm(task, port)) for task in range(2)], tmp_path / "validate-logs")
    assert sorted(p.name for p in runs.iterdir()) == ["train", "val"]


@pytest.mark.parametrize("disks", ["shared", "node-local"])
def test_two_nodes_claim_one_run_folder_on_node_0(disks, tiny_data_yaml, tmp_path):
    # Node 0's folder holds an earlier run: this run goes to its next free folder, train2, which node 1 gets as a path
    # relative to its own current folder (on a node-local disk with no runs/ there, it writes nothing into it)
    cwds = [tmp_path / "node0", tmp_path / "node0" if disks == "shared" else tmp_path / "node1"]
    earlier = _earlier_run(cwds[0])
    port = _free_port()
    commands = []
    for node, cwd in enumerate(cwds):
        command = _torchrun("--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(node), "--master_addr",
                            "127.0.0.1", "--master_port", str(port))  # fmt: skip
        # Lightning (TorchElasticEnvironment) wants devices x num_nodes equal to torchrun's WORLD_SIZE
        command += ["fit", "--data.data", str(tiny_data_yaml), *FIT, "--trainer.devices", "1",
                    "--trainer.num_nodes", "2"]  # fmt: skip
        commands.append((command, cwd, _env()))
    _launch_together(commands, tmp_path / "logs")
    runs = cwds[0] / "runs" / "detect"
    assert sorted(p.name for p in runs.iterdir()) == ["train", "train2"]
    assert _snapshot(runs / "train") == earlier
    assert _weights(runs / "train2") == WEIGHT_FILES  # written once, by global rank 0
    if disks == "node-local":
        assert not [p for p in cwds[1].rglob("*") if p.suffix in {".pt", ".ckpt"}]  # node 1 writes no weights
