"""Bad input gets one clear error (or warning) naming the culprit, from the Python API and the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.errors import ConfigurationError


def _fit(module: YOLOModule, datamodule: YOLODataModule, tmp_path: Path) -> None:
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, limit_train_batches=1, limit_val_batches=1, default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, datamodule)


def test_unknown_module_argument_suggests_closest():
    with pytest.raises(TypeError, match=r"unknown argument 'lr'\. Did you mean .*'lr0'"):
        YOLOModule(lr=0.01)


def test_datamodule_argument_given_to_module_names_the_owner():
    with pytest.raises(TypeError, match=r"'mosaic'.*YOLODataModule argument"):
        YOLOModule(mosaic=0.5)


def test_trainer_argument_points_to_lightning():
    with pytest.raises(TypeError, match=r"'epochs'.*max_epochs"):
        YOLODataModule(epochs=10)


def test_unknown_datamodule_argument_suggests_closest():
    with pytest.raises(TypeError, match=r"'imgsize'.*Did you mean 'imgsz'"):
        YOLODataModule(imgsize=64)


@pytest.mark.parametrize("batch", [0, -1])
def test_batch_below_one(batch):
    with pytest.raises(ConfigurationError, match=rf"batch={batch}"):
        YOLODataModule(batch=batch)


def test_imgsz_not_multiple_of_stride_warns_with_rounded_value():
    with pytest.warns(UserWarning, match=r"imgsz=100 is not a multiple of the stride 32; using imgsz=128"):
        datamodule = YOLODataModule(imgsz=100)
    assert datamodule.hparams.imgsz == 128


def test_unknown_model_yaml_suggests_shipped_ones(tiny_data_yaml, tmp_path):
    with pytest.raises(ConfigurationError, match=r"yolo26q.yaml.*Did you mean.*yolo26"):
        _fit(YOLOModule(model="yolo26q.yaml"), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4), tmp_path)


def test_missing_weights_file_is_not_downloaded(tiny_data_yaml, tmp_path):
    """A .pt that is neither on disk nor an official Ultralytics asset: one line, no download attempt."""
    with pytest.raises(ConfigurationError, match=r"my-yolo26n.pt.*no such weights file.*my-yolo26n.yaml"):
        _fit(YOLOModule(model="my-yolo26n.pt"), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4), tmp_path)


def test_missing_data_yaml(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match="nope.yaml"):
        _fit(YOLOModule(), YOLODataModule(data=str(missing), imgsz=64, batch=4), tmp_path)


def _copy_dataset(source_yaml: Path, destination: Path) -> Path:
    shutil.copytree(source_yaml.parent, destination, ignore=shutil.ignore_patterns("*.cache"))
    text = source_yaml.read_text().replace(str(source_yaml.parent), str(destination))
    (destination / "data.yaml").write_text(text)
    return destination / "data.yaml"


def test_invalid_labels_are_reported_with_file_line_and_count(tiny_data_yaml, tmp_path):
    data_yaml = _copy_dataset(tiny_data_yaml, tmp_path / "data")
    label = sorted((tmp_path / "data" / "labels" / "train").glob("*.txt"))[0]
    label.write_text(label.read_text() + "9 0.5 0.5 0.1 0.1\n0 1.5 0.5 0.1 0.1\n")
    lines = len(label.read_text().splitlines())
    with pytest.warns(UserWarning) as record:
        YOLODataModule(data=str(data_yaml), imgsz=64, batch=4).prepare_data()
    message = "\n".join(str(w.message) for w in record)
    assert "2 invalid labels in 1 file" in message
    assert f"{label}:{lines - 1}: class id 9 >= nc=4" in message
    assert f"{label}:{lines}:" in message


def test_every_label_invalid_is_an_error(tiny_data_yaml, tmp_path):
    data_yaml = _copy_dataset(tiny_data_yaml, tmp_path / "data")
    for image in (tmp_path / "data" / "images" / "val").iterdir():
        (tmp_path / "data" / "labels" / "val" / f"{image.stem}.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigurationError, match="every image of the 'val' split has an invalid label"):
            YOLODataModule(data=str(data_yaml), imgsz=64, batch=4).prepare_data()


def test_lightning_accumulation_is_rejected(tiny_data_yaml, tmp_path):
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, accumulate_grad_batches=2,
                        enable_checkpointing=False, default_root_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigurationError, match="nbs"):
        trainer.fit(YOLOModule(), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolo_lightning.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_bad_data_is_one_line_without_traceback(tmp_path):
    result = _cli("fit", "--data.data", str(tmp_path / "missing.yaml"), "--trainer.max_epochs", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "yolo-lightning: error:" in result.stderr and "missing.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_synthetic_size_is_one_line(tmp_path):
    result = _cli("fit", "--data.data", "synthetic3", "--trainer.max_epochs", "1", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "yolo-lightning: error: data='synthetic3': 'synthetic<N>' needs N >= 4" in result.stderr


def test_cli_unknown_argument_is_rejected_by_the_parser(tmp_path):
    result = _cli("fit", "--model.lr", "0.1", cwd=tmp_path)
    assert result.returncode != 0
    assert "lr" in result.stderr and "Traceback" not in result.stderr
