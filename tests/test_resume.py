"""A run killed (SIGKILL) mid-epoch resumes with ckpt_path="last" as if it had never stopped; files stay valid."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from parity import AUGMENTATION_OFF
from ultralytics.nn.tasks import load_checkpoint

from yolo_lightning.export import save_atomically

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import lightning as L
    from yolo_lightning import YOLODataModule, YOLOModule
    from yolo_lightning.callbacks import UltralyticsCheckpoint

    mode, root, data = sys.argv[1:4]
    L.seed_everything(0)  # the same initial weights in every run
    seen = {{"losses": {{}}}}

    class Probe(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.setdefault("first_epoch", trainer.current_epoch)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["losses"].setdefault(str(trainer.current_epoch), []).append(float(outputs["loss"]))
            if mode == "kill" and trainer.current_epoch == 2 and batch_idx == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, default_root_dir=root, callbacks=[UltralyticsCheckpoint(), Probe()])
    datamodule = YOLODataModule(data=data, imgsz=64, batch=4, workers=0, **{augmentation!r})
    trainer.fit(YOLOModule(nbs=4, warmup_epochs=1), datamodule, ckpt_path="last" if mode == "resume" else None)
    print("RESULT" + json.dumps(seen))
    """
).format(augmentation=AUGMENTATION_OFF)


def _train(mode: str, root, data) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode, str(root), str(data)], capture_output=True, text=True)


def _result(process: subprocess.CompletedProcess) -> dict:
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.split("RESULT", 1)[1])


@pytest.mark.slow
@pytest.mark.parametrize("source", ["data.yaml", "optimized"])
def test_sigkill_then_resume_continues_the_same_run(source, tiny_data_yaml, tmp_path):
    """Also from an optimized (streamed) copy of the data: the same samplers, the same resume state."""
    if source == "optimized":
        from yolo_lightning.streaming import optimize_dataset

        tiny_data_yaml = optimize_dataset(tiny_data_yaml, str(tmp_path / "optimized"))
    uninterrupted = _result(_train("full", tmp_path / "full", tiny_data_yaml))

    killed = _train("kill", tmp_path / "run", tiny_data_yaml)
    assert killed.returncode == -signal.SIGKILL
    weights = tmp_path / "run" / "weights"
    for name in ("best.pt", "last.pt"):
        model, checkpoint = load_checkpoint(weights / name)  # Ultralytics' loader: never truncated
        assert checkpoint["epoch"] <= 1 and model.nc == 4
    assert torch.load(weights / "last.pt", weights_only=False)["epoch"] == 1  # the last completed epoch
    assert not list(weights.glob(".*.tmp"))

    resumed = _result(_train("resume", tmp_path / "run", tiny_data_yaml))
    assert resumed["first_epoch"] == 2
    for epoch in ("2", "3"):  # EMA, optimizer, LR schedule, shuffle order and E2E loss state all carried over
        assert resumed["losses"][epoch] == pytest.approx(uninterrupted["losses"][epoch], rel=1e-4)
    assert torch.load(weights / "last.pt", weights_only=False)["epoch"] == 3
    full, run = (_csv_rows(tmp_path / name / "results.csv") for name in ("full", "run"))
    assert [row["epoch"] for row in run] == ["1", "2", "3", "4"]
    assert all(value != "" for row in run for value in row.values())  # the resumed checkpoint's epoch row kept whole
    for theirs, ours in zip(full, run):  # every epoch's losses and metrics, as if never stopped
        assert {k: float(v) for k, v in ours.items() if k != "time"} == pytest.approx(
            {k: float(v) for k, v in theirs.items() if k != "time"}, rel=1e-4, abs=1e-8
        )


def _csv_rows(path) -> list[dict[str, str]]:
    with open(path) as file:
        return list(csv.DictReader(file))


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("simulated crash while writing")


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    target = save_atomically({"epoch": 1}, tmp_path / "last.pt")
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_atomically({"epoch": 2, "bad": _Unpicklable()}, target)
    assert torch.load(target)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
