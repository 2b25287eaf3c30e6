"""Run an example script or LightningCLI config the way CI does: shortened by arguments, on the small dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example_script(name: str, data: Path, root: Path, *args: str) -> str:
    """``python examples/<name> --data <data> --root <root> [args]``; returns stdout + stderr, asserting success."""
    command = [sys.executable, str(ROOT / "examples" / name), "--data", str(data), "--root", str(root), *args]
    return _run(command, root)


def run_example_config(name: str, data: Path | None, root: Path, *args: str) -> str:
    """``yolo-lightning fit --config examples/configs/<name> --data.data <data> ... [args]`` (the config's own data
    for None); returns the output."""
    data_args = ["--data.data", str(data)] if data is not None else []
    command = ["yolo-lightning", "fit", "--config", str(ROOT / "examples" / "configs" / name), *data_args,
               "--trainer.default_root_dir", str(root), *args]  # fmt: skip
    return _run(command, root)


def _run(command: list[str], root: Path) -> str:
    root.parent.mkdir(parents=True, exist_ok=True)  # run beside the run folder: one left at the cwd moves to runs/
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # DDP examples start two processes on two cores
    result = subprocess.run(command, capture_output=True, text=True, cwd=root.parent, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr
