"""Faults and reruns lose nothing: NaN recovery, full disk, preemption, run folders, resume mismatches, bad values."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from fault_tools import NaNImages

from yolo_lightning import YOLODataModule, YOLOModule, export_ultralytics
from yolo_lightning import export as export_module
from yolo_lightning import files as files_module
from yolo_lightning.callbacks import NonFiniteRecovery, UltralyticsCheckpoint
from yolo_lightning.callbacks import checkpoint as checkpoint_module
from yolo_lightning.errors import (
    ConfigurationError,
    NonFiniteWeightsError,
    TrainingError,
)
from yolo_lightning.export import portable_model, ultralytics_checkpoint
from yolo_lightning.run_folder import claim_run_folder
from yolo_lightning.synthetic import SYNTHETIC_NAMES, synthetic_data_yaml

TESTS = Path(__file__).parent


def _fit(root: Path, data: Path, epochs: int, callbacks: list, ckpt_path: str | None = None, **module: Any) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1, default_root_dir=str(root),
        callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(YOLOModule(**{"nbs": 4, "warmup_epochs": 0, "plots": False, **module}),
                YOLODataModule(data=str(data), imgsz=64, batch=4, workers=0), ckpt_path=ckpt_path)  # fmt: skip
    return trainer


def _finite_file(path: Path) -> bool:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    tensors = checkpoint["model"].state_dict().values() if path.suffix == ".pt" else checkpoint["state_dict"].values()
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def _epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(["yolo-lightning", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _one_line_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    assert result.returncode == status, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("yolo-lightning: error: ") and "Traceback" not in result.stderr, result.stderr[-3000:]
    return last


# ------------------------------------------------------------------------------------------------ NaN recovery
def test_a_nan_batch_is_recovered_and_every_saved_file_is_finite(tiny_data_yaml, tmp_path):
    class Logged(L.Callback):
        def __init__(self) -> None:
            self.fitness: list[float] = []

        def on_validation_end(self, trainer, pl_module) -> None:
            self.fitness.append(float(trainer.callback_metrics["fitness"]))

    nan, logged, recovery = NaNImages(at=[[1, 0]]), Logged(), NonFiniteRecovery()
    with pytest.warns(UserWarning, match=r"NaN or infinite weights at epoch 1 \(recovery 1/3\): restored .* epoch 0"):
        trainer = _fit(tmp_path, tiny_data_yaml, 3, [nan, logged, recovery, UltralyticsCheckpoint()])
    assert nan.poisoned == [(1, 0)] and recovery.recoveries == 1
    assert logged.fitness[1] != logged.fitness[1]  # NaN weights validate as NaN, not 0.0
    assert all(v == v for i, v in enumerate(logged.fitness) if i != 1)
    weights = tmp_path / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["best.ckpt", "best.pt", "last.ckpt", "last.pt"]
    assert all(_finite_file(p) for p in weights.iterdir())
    assert _epoch(weights / "last.pt") == _epoch(weights / "last.ckpt") == 2  # training went on after the recovery
    assert _epoch(weights / "best.pt") == _epoch(weights / "best.ckpt") != 1
    assert all(torch.isfinite(p).all() for p in trainer.lightning_module.parameters())


def test_nan_that_keeps_coming_back_is_one_clear_error(tiny_data_yaml, tmp_path):
    callbacks = [NaNImages(every_batch_from=1), NonFiniteRecovery(max_attempts=2), UltralyticsCheckpoint()]
    with pytest.warns(UserWarning, match="recovery 2/2"), pytest.raises(TrainingError, match=r"training diverged.*2 restores"):
        _fit(tmp_path, tiny_data_yaml, 6, callbacks)
    weights = tmp_path / "weights"
    assert all(_finite_file(p) for p in weights.iterdir()) and _epoch(weights / "last.pt") == 0


def test_fp16_export_clamps_overflow_and_refuses_nan():
    model = YOLOModule(names=SYNTHETIC_NAMES).model
    with torch.no_grad():
        model.model[0].conv.weight[0, 0, 0, 0] = 1e6  # finite in fp32, inf in fp16
    exported = portable_model(model).model[0].conv.weight
    assert exported[0, 0, 0, 0] == torch.finfo(torch.float16).max and torch.isfinite(exported).all()
    with torch.no_grad():
        model.model[0].conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match="NaN or infinite"):
        ultralytics_checkpoint(model, {}, 3, {})


# ------------------------------------------------------------------------------------------------ full disk
def test_full_disk_keeps_the_previous_pair_intact(tiny_data_yaml, tmp_path, monkeypatch):
    """The 3rd file serialized (epoch 1's first; epoch 0's last.* are copies of its best.*) fails with ENOSPC: the run
    stops with one error, epoch 0's best/last .ckpt/.pt stay, load, and hold the same epoch; no temporary file is left
    behind."""
    writes = {"count": 0}
    real_save = torch.save

    def save(obj, file, *args, **kwargs):
        writes["count"] += 1
        if writes["count"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(export_module.torch, "save", save)
    with pytest.raises(TrainingError, match=r"cannot write .*weights/(best|last).*No space left on device.*intact"):
        _fit(tmp_path, tiny_data_yaml, 3, [UltralyticsCheckpoint(monitor="val/box_loss", mode="min")])
    weights = tmp_path / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["best.ckpt", "best.pt", "last.ckpt", "last.pt"]
    for name in ("best", "last"):
        assert _epoch(weights / f"{name}.pt") == _epoch(weights / f"{name}.ckpt") == 0
    for path in weights.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask(), path  # ordinary file mode, .pt and .ckpt alike
    export_ultralytics(weights / "last.ckpt", tmp_path / "exported.pt")  # still loadable


def test_full_disk_while_copying_best_to_last(tiny_data_yaml, tmp_path, monkeypatch):
    """Epoch 0's last.* are copies of its best.*: a full disk during the copy is the same one error, no partial file."""

    def copy(source, target, *args, **kwargs):
        target.write(source.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_module.shutil, "copyfileobj", copy)
    with pytest.raises(TrainingError, match=r"cannot write .*weights/last.ckpt.*No space left on device.*intact"):
        _fit(tmp_path, tiny_data_yaml, 2, [UltralyticsCheckpoint()])
    weights = tmp_path / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["best.ckpt", "best.pt"]  # no last.*, no temporary file
    assert _epoch(weights / "best.pt") == _epoch(weights / "best.ckpt") == 0


def test_a_folder_error_while_copying_is_the_same_error_on_every_rank(tiny_data_yaml, tmp_path, monkeypatch):
    """A temporary file that cannot be created (no inodes left: ConfigurationError from ``stage``) is caught before
    the ranks' broadcast like a failed write, so no rank waits for rank 0; the staged .ckpt copy is removed."""
    real_stage_copy = checkpoint_module.stage_copy
    calls = []

    def stage_copy(source, target):
        calls.append(Path(target).name)
        if len(calls) == 2:  # the .pt, after the .ckpt copy was staged
            raise ConfigurationError(f"cannot write {target}: No space left on device")
        return real_stage_copy(source, target)

    monkeypatch.setattr(checkpoint_module, "stage_copy", stage_copy)
    with pytest.raises(TrainingError, match=r"cannot write .*last.pt.*intact"):
        _fit(tmp_path, tiny_data_yaml, 2, [UltralyticsCheckpoint()])
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["best.ckpt", "best.pt"]


@pytest.mark.parametrize("epoch", [0, 1])  # 0: last.* copied from best.*; 1: serialized (mAP50-95 0 cannot decrease)
def test_a_failed_save_period_copy_is_the_same_error_on_every_rank(epoch, tiny_data_yaml, tmp_path, monkeypatch):
    """save_period's epoch{N}.pt is staged together with last.*, before the ranks' broadcast: a full disk while copying
    it stops every rank with one error (not rank 0 alone after the others moved on), and last.* keep the epoch before."""
    real_stage_copy = checkpoint_module.stage_copy

    def stage_copy(source, target):
        if Path(target).name == f"epoch{epoch}.pt":
            raise TrainingError(f"cannot write {target}: No space left on device (the previous file is kept)")
        return real_stage_copy(source, target)

    monkeypatch.setattr(checkpoint_module, "stage_copy", stage_copy)
    callback = UltralyticsCheckpoint(monitor="metrics/mAP50-95(B)", mode="min", save_period=1)
    with pytest.raises(TrainingError, match=rf"cannot write .*epoch{epoch}.pt.*intact"):
        _fit(tmp_path, tiny_data_yaml, 2, [callback])
    weights = tmp_path / "weights"
    kept = {"best.ckpt", "best.pt"} | ({"last.ckpt", "last.pt", "epoch0.pt"} if epoch else set())
    assert {p.name for p in weights.iterdir()} == kept  # no epoch{N}.pt, no staged file
    if epoch:
        assert _epoch(weights / "last.pt") == _epoch(weights / "last.ckpt") == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------- preemption
@pytest.mark.slow
def test_sigterm_saves_exits_143_and_resume_continues(tiny_data_yaml, tmp_path):
    common = ["--data.data", str(tiny_data_yaml), "--data.imgsz", "64", "--data.batch", "4", "--data.workers", "0",
              "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
              "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
              "--model.nbs", "4", "--model.plots", "false", "--checkpoint.save_period", "1"]  # fmt: skip
    preempted = _cli("fit", *common, "--trainer.callbacks+=fault_tools.SelfTerminate", "--trainer.callbacks.epoch=1",
                     "--trainer.callbacks.batch=1", cwd=tmp_path)  # fmt: skip
    assert preempted.returncode == 128 + signal.SIGTERM, preempted.stderr[-3000:]
    assert "SIGTERM at epoch 1" in preempted.stderr
    weights = tmp_path / "runs" / "detect" / "train" / "weights"
    assert _epoch(weights / "last.ckpt") == _epoch(weights / "last.pt") == 1  # saved at the interrupted step
    assert torch.load(weights / "last.ckpt", weights_only=True)["global_step"] == 5  # 3 batches + 2 of epoch 1
    assert sorted(p.name for p in weights.glob("epoch*.pt")) == ["epoch0.pt"]  # epoch 1 did not finish
    resumed = _cli("fit", *common, "--ckpt_path", str(weights / "last.ckpt"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _epoch(weights / "last.pt") == 2  # the same run folder, trained to the end
    assert [_epoch(weights / f"epoch{n}.pt") for n in range(3)] == [0, 1, 2]  # epoch1.pt: the finished epoch 1
    assert not (tmp_path / "runs" / "detect" / "train2").exists()


# ---------------------------------------------------------------------------------------------- run folders
def test_a_second_run_goes_to_the_next_folder_and_exist_ok_reuses(tiny_data_yaml, tmp_path):
    for _ in range(2):
        _fit(tmp_path / "train", tiny_data_yaml, 1, [UltralyticsCheckpoint()])
    assert (tmp_path / "train" / "weights" / "best.pt").is_file() and (tmp_path / "train2" / "weights" / "best.pt").is_file()
    _fit(tmp_path / "train", tiny_data_yaml, 1, [UltralyticsCheckpoint(exist_ok=True)])
    assert not (tmp_path / "train3").exists()
    with pytest.raises(ConfigurationError, match=r"already holds another run's checkpoints.*exist_ok=True"):
        _fit(tmp_path / "x", tiny_data_yaml, 1, [UltralyticsCheckpoint(dirpath=tmp_path / "train" / "weights")])


def test_resuming_continues_in_its_own_folder(tiny_data_yaml, tmp_path):
    _fit(tmp_path / "train", tiny_data_yaml, 1, [UltralyticsCheckpoint()])
    last = tmp_path / "train" / "weights" / "last.ckpt"
    trainer = _fit(tmp_path / "elsewhere", tiny_data_yaml, 2, [UltralyticsCheckpoint()], ckpt_path=str(last))
    assert Path(trainer.default_root_dir) == tmp_path / "train" and _epoch(last) == 1


def test_runs_starting_at_once_get_distinct_folders(tmp_path):
    root = str(tmp_path / "runs" / "train")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        claimed = pool.map(claim_run_folder, [root] * 8)
    assert sorted(map(str, claimed)) == sorted({root, *(f"{root}{n}" for n in range(2, 9))})


def test_cli_runs_go_to_train_then_train2(tiny_data_yaml, tmp_path):
    args = ["fit", "--data.data", str(tiny_data_yaml), "--data.imgsz", "64", "--data.workers", "0",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--model.plots", "false"]  # fmt: skip
    for _ in range(2):
        assert _cli(*args, cwd=tmp_path).returncode == 0
    runs = tmp_path / "runs" / "detect"
    assert sorted(p.name for p in runs.iterdir()) == ["train", "train2"]
    for run in runs.iterdir():
        assert (run / "weights" / "best.pt").is_file() and list(run.glob("lightning_logs/*/config.yaml"))


# ------------------------------------------------------------------------------------ checkpoint mismatches
@pytest.fixture(scope="module")
def four_class_run(tiny_data_yaml, tmp_path_factory) -> Path:
    """A 1-epoch yolo26n run on the 4-class synthetic data, started from a .pt file that is deleted afterwards."""
    root = tmp_path_factory.mktemp("four_class")
    start = root / "start.pt"
    export_ultralytics(YOLOModule(names=SYNTHETIC_NAMES), start)
    _fit(root / "run", tiny_data_yaml, 1, [UltralyticsCheckpoint()], model=str(start))
    start.unlink()
    return root / "run" / "weights" / "last.ckpt"


def test_ckpt_is_self_contained_after_its_start_weights_are_gone(four_class_run, tiny_data_yaml, tmp_path):
    export_ultralytics(four_class_run, tmp_path / "exported.pt")
    result = _cli("validate", "--ckpt_path", str(four_class_run), "--data.data", str(tiny_data_yaml), "--data.imgsz",
                  "64", "--data.workers", "0", "--trainer.enable_progress_bar", "false", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        limit_train_batches=1, limit_val_batches=1, default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(YOLOModule.load_from_checkpoint(four_class_run), YOLODataModule(data=str(tiny_data_yaml), imgsz=64,
                batch=4, workers=0), ckpt_path=str(four_class_run))  # fmt: skip
    assert trainer.current_epoch == 2


def test_resume_with_another_model_is_one_line(four_class_run, tiny_data_yaml, tmp_path):
    line = _one_line_error(_cli("fit", "--ckpt_path", str(four_class_run), "--model.model", "yolov8n.yaml",
                                "--data.data", str(tiny_data_yaml), cwd=tmp_path))  # fmt: skip
    assert "start.pt" in line and "yolov8n.yaml" in line
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"model=.*start\.pt.*model='yolov8n\.yaml'"):
        trainer.fit(YOLOModule(model="yolov8n.yaml"), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4,
                    workers=0), ckpt_path=str(four_class_run))  # fmt: skip


def test_resume_on_data_with_other_classes_is_one_line(four_class_run, session_dir, tmp_path):
    two_classes = _renamed_dataset(session_dir, {0: "square", 1: "circle"})
    line = _one_line_error(_cli("fit", "--ckpt_path", str(four_class_run), "--data.data", str(two_classes), cwd=tmp_path))
    assert "4: ['square', 'circle', 'triangle', 'star']" in line and "2: ['square', 'circle']" in line
    renamed = _renamed_dataset(session_dir, {0: "box", 1: "ball", 2: "wedge", 3: "star"})
    line = _one_line_error(_cli("validate", "--ckpt_path", str(four_class_run), "--data.data", str(renamed), cwd=tmp_path))
    assert "'box', 'ball', 'wedge', 'star'" in line


def _renamed_dataset(session_dir: Path, names: dict[int, str]) -> Path:
    """The tiny synthetic images with other class names (labels of classes >= len(names) dropped)."""
    import yaml

    source = synthetic_data_yaml(session_dir / "tiny", n_train=24, n_val=8, imgsz=64, seed=0)
    config = yaml.safe_load(source.read_text())
    root = session_dir / f"renamed-{'-'.join(names.values())}"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for image in (source.parent / "images" / split).iterdir():
            target = root / "images" / split / image.name
            if not target.exists():
                target.symlink_to(image)
            label = source.parent / "labels" / split / f"{image.stem}.txt"
            rows = [r for r in label.read_text().splitlines() if int(r.split()[0]) < len(names)] if label.exists() else []
            (root / "labels" / split / f"{image.stem}.txt").write_text("\n".join(rows))
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({**config, "path": str(root), "names": names}))
    return data


def test_checkpoint_from_a_newer_version_says_so(four_class_run, tiny_data_yaml, tmp_path):
    checkpoint = torch.load(four_class_run, weights_only=True)
    checkpoint["hyper_parameters"]["future_option"] = 1
    checkpoint["yolo_lightning"]["version"] = "9.9.9"
    newer = tmp_path / "newer.ckpt"
    torch.save(checkpoint, newer)
    with pytest.raises(ConfigurationError, match=r"written by yolo-lightning 9\.9\.9 .*'future_option'.*>=9\.9\.9"):
        export_ultralytics(newer, tmp_path / "x.pt")
    line = _one_line_error(_cli("validate", "--ckpt_path", str(newer), "--data.data", str(tiny_data_yaml), cwd=tmp_path))
    assert "9.9.9" in line and "future_option" in line


# --------------------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("epochs", [0, -1])
def test_max_epochs_below_one_is_one_line(tiny_data_yaml, tmp_path, epochs):
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigurationError, match=rf"max_epochs={epochs}\).*>= 1"):
        trainer.fit(YOLOModule(), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, workers=0))


@pytest.mark.parametrize(("owner", "argument"), [(YOLOModule, {"lr0": 1e4}), (YOLODataModule, {"mosaic": 2.0}),
                                                 (YOLOModule, {"momentum": -1.0})])  # fmt: skip
def test_out_of_range_hyperparameters_fail_at_construction(owner, argument):
    name, value = next(iter(argument.items()))
    with pytest.raises(ConfigurationError, match=rf"'{name}={value}' is an invalid value.*between 0.0 and 1.0") as error:
        owner(**argument)
    assert "\n" not in str(error.value)
