"""Datasets bigger than a disk: ``optimize_dataset`` into LitData's format (a local folder, or a real S3 API: moto's
server on 127.0.0.1), then train, validate and test from it with everything a data.yaml gets."""

from __future__ import annotations

import copy
import datetime
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from google.auth import credentials as google_credentials
from parity import AUGMENTATION_OFF, run_lightning, save_initial_weights
from torch.utils.data import DataLoader, Sampler

from ultralytics import YOLO

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import RunReport
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.stream_store import MARKER
from yolo_lightning.streaming import optimize_dataset
from yolo_lightning.synthetic import SYNTHETIC_NAMES, synthetic_data

pytest.importorskip("litdata")
BUCKET = "datasets"


@pytest.fixture(scope="module")
def s3() -> dict[str, str]:
    """moto's S3 server on 127.0.0.1 with a bucket; the ``storage_options`` that reach it (plain http)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "aws_access_key_id": "test", "aws_secret_access_key": "test",
               "region_name": "us-east-1"}  # fmt: skip
    import boto3

    boto3.client("s3", **options).create_bucket(Bucket=BUCKET)
    yield options
    server.stop()


class EmulatorCredentials(google_credentials.Credentials):
    """Credentials the emulator accepts: a token that refreshes without a network."""

    def refresh(self, request: object) -> None:
        self.token, self.expiry = "emulator", datetime.datetime.utcnow() + datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def gcs() -> dict[str, object]:
    """A Google Cloud Storage emulator on 127.0.0.1 (gcp-storage-emulator: the JSON API google-cloud-storage speaks,
    reached through ``STORAGE_EMULATOR_HOST``) with a bucket; the ``storage_options`` that reach it."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    server.start()
    host, port = server._api._httpd.server_address  # the port it picked (create_server has no public getter)
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://{host}:{port}"
    yield {"credentials": EmulatorCredentials(), "project": "test"}
    if previous is None:
        del os.environ["STORAGE_EMULATOR_HOST"]
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    server.stop()


@pytest.fixture
def litdata_without_obstore(monkeypatch) -> None:
    """LitData moves gs:// chunks through obstore, which speaks GCS's XML API; the emulator has only the JSON API, so
    LitData takes its other path here, google-cloud-storage (forked loader and optimize workers inherit the switch)."""
    from litdata.streaming import downloader

    monkeypatch.setattr(downloader, "_OBSTORE_AVAILABLE", False)


@pytest.fixture(scope="module")
def detect_data(tmp_path_factory) -> Path:
    return synthetic_data("detect", tmp_path_factory.mktemp("data"), n_train=16, n_val=8, imgsz=64)


def _validate(weights: Path, data: str, root: Path, **options) -> dict[str, float]:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(root))
    trainer.validate(YOLOModule(model=str(weights)), YOLODataModule(data=data, imgsz=64, batch=4, workers=0, **options))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.slow
def test_validating_from_the_bucket_equals_the_data_yaml(trained_weights, standard_data_yaml, s3, tmp_path):
    url = f"s3://{BUCKET}/standard"
    optimize_dataset(standard_data_yaml, url, storage_options=s3, num_workers=2)
    ours = _validate(trained_weights, url, tmp_path / "stream", storage_options=s3)
    files = _validate(trained_weights, str(standard_data_yaml), tmp_path / "files")
    assert files["metrics/mAP50-95(B)"] > 0.01
    assert ours == pytest.approx(files, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("task", "key", "launched"), [("detect", "metrics/mAP50(B)", False),
                                                      ("classify", "metrics/accuracy_top1", True)])
def test_the_final_validation_of_best_pt_from_the_bucket_is_yolo_val_s(task, key, launched, trained, trained_weights,
                                                                        standard_data_yaml, s3, tmp_path, monkeypatch):
    """Ultralytics' validator reads the optimized data itself: best.pt's final numbers from the bucket are what
    ``YOLO(best.pt).val()`` gives on the data.yaml (or folder) it was optimized from; also in the process of its own
    that a launched rank validates in (the bucket's credentials passed on through stdin)."""
    weights, data = (trained_weights, standard_data_yaml) if task == "detect" else trained[task]
    if launched:
        monkeypatch.setenv("RANK", "0")
    url = f"s3://{BUCKET}/final-{task}"
    optimize_dataset(data, url, storage_options=s3)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(YOLOModule(model=str(weights), lr0=0.0005, warmup_epochs=0),
                YOLODataModule(data=url, imgsz=64, batch=8, workers=0, storage_options=s3))  # fmt: skip
    report = next(c for c in trainer.callbacks if isinstance(c, RunReport))
    best = tmp_path / "weights" / "best.pt"
    expected = YOLO(str(best)).val(data=str(data), imgsz=64, batch=16, plots=False, verbose=False).results_dict
    assert expected[key] > 0.05
    assert report.final_metrics == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-9)
    assert (tmp_path / "confusion_matrix.png").is_file()  # the validator's own plots, as final_eval writes them


@pytest.mark.slow
def test_a_gs_bucket_is_optimized_into_validated_and_trained_from(trained_weights, standard_data_yaml, gcs, tmp_path,
                                                                   litdata_without_obstore):
    """``gs://``: the metadata and label caches through google-cloud-storage (the SDK and ``storage_options`` LitData
    uses for it), the chunks through LitData; the same weights validate as from the data.yaml, a fit with 2 loader
    workers reads the bucket and ends with best.pt's final validation."""
    url = f"gs://{BUCKET}/standard"
    optimize_dataset(standard_data_yaml, url, storage_options=gcs)
    ours = _validate(trained_weights, url, tmp_path / "stream", storage_options=gcs)
    files = _validate(trained_weights, str(standard_data_yaml), tmp_path / "files")
    assert files["metrics/mAP50-95(B)"] > 0.01
    assert ours == pytest.approx(files, abs=1e-6)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path / "run"))  # fmt: skip
    trainer.fit(YOLOModule(model=str(trained_weights), lr0=0.0005, warmup_epochs=0),
                YOLODataModule(data=url, imgsz=64, batch=8, workers=2, storage_options=gcs))  # fmt: skip
    report = next(c for c in trainer.callbacks if isinstance(c, RunReport))
    assert trainer.current_epoch == 1 and report.final_metrics["metrics/mAP50(B)"] > 0.05


@pytest.mark.slow
def test_a_coco_split_says_its_official_evaluation_is_not_run(detect_data, tmp_path, monkeypatch):
    """Ultralytics scores a split it recognizes as COCO's (its original path: .../coco.../val2017.txt) with the
    official evaluation, reading annotation files that are not streamed: the final validation says so and reports
    Ultralytics' own mAP instead of failing on the missing files."""
    target = tmp_path / "coco-like"
    shutil.copytree(detect_data.parent, target)
    images = sorted(str(p) for p in (target / "images" / "val").glob("*.png"))
    (target / "val2017.txt").write_text("\n".join(images) + "\n")
    data = target / detect_data.name
    data.write_text(yaml.safe_dump({**yaml.safe_load(data.read_text()), "path": str(target), "val": "val2017.txt"}))
    optimized = optimize_dataset(data, str(tmp_path / "optimized"))
    from ultralytics.utils import LOGGER

    warnings_said: list[str] = []
    monkeypatch.setattr(LOGGER, "warning", lambda message, *args, **kwargs: warnings_said.append(str(message)))
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path / "run"))  # fmt: skip
    trainer.fit(YOLOModule(model="yolo26n.yaml"), YOLODataModule(data=optimized, imgsz=64, batch=8, workers=0))
    report = next(c for c in trainer.callbacks if isinstance(c, RunReport))
    assert "metrics/mAP50-95(B)" in report.final_metrics
    assert any("val2017.txt is COCO's or LVIS's" in message for message in warnings_said)


def _mixed_aspect_copy(source: Path, target: Path) -> Path:
    """A copy of a synthetic dataset whose odd images are cut to 64 x 40 (labels unchanged: still valid rows), so
    Ultralytics' rect batches re-sort its images by aspect ratio."""
    import shutil

    import cv2

    shutil.copytree(source.parent, target)
    for k, image in enumerate(sorted((target / "images").rglob("*.png"))):
        if k % 2:
            cv2.imwrite(str(image), cv2.imread(str(image))[:40])
    for name in (target / "images").rglob("*.cache"):
        name.unlink()
    config = yaml.safe_load((target / source.name).read_text())
    (target / source.name).write_text(yaml.safe_dump({**config, "path": str(target)}))
    return target / source.name


@pytest.mark.slow
@pytest.mark.parametrize("task", ["detect", "semantic", "depth"])
def test_mixed_aspect_ratios_validate_as_from_files(task, tmp_path):
    """Rect validation re-sorts the images by aspect ratio: each still meets its own labels (and mask, depth map)."""
    model = {"detect": "yolo26n.yaml", "semantic": "yolo26n-sem.yaml", "depth": "yolo26n-depth.yaml"}[task]
    names = {"detect": SYNTHETIC_NAMES, "semantic": {**SYNTHETIC_NAMES, 4: "background"}, "depth": {0: "depth"}}[task]
    data = _mixed_aspect_copy(synthetic_data(task, tmp_path / "data", n_train=8, n_val=8, imgsz=64), tmp_path / "mixed")
    if task != "detect":  # masks and depth maps cut as their images
        import cv2

        folder = "masks" if task == "semantic" else "depth"
        for k, file in enumerate(sorted((data.parent / folder).rglob("*.png"))):
            if k % 2:
                cv2.imwrite(str(file), cv2.imread(str(file), cv2.IMREAD_UNCHANGED)[:40])
    weights = save_initial_weights(model, names, tmp_path / "init.pt")
    optimized = optimize_dataset(data, str(tmp_path / "optimized"))
    files = _validate(weights, str(data), tmp_path / "files")
    ours = _validate(weights, optimized, tmp_path / "stream")
    assert ours == pytest.approx(files, abs=1e-6)


def test_tiff_images_decode_as_ultralytics_imread_reads_their_files(detect_data, tmp_path):
    """Ultralytics' imread decodes TIFF pages its own way (a 16-bit colour TIFF keeps its high bytes, where OpenCV's
    imdecode rounds: a quarter of the pixels differ): the streamed images equal the file-based dataset's."""
    import cv2

    target = tmp_path / "tiff"
    shutil.copytree(detect_data.parent, target)
    rng = np.random.default_rng(0)
    for image in sorted((target / "images").rglob("*.png")):
        wide = cv2.imread(str(image)).astype(np.uint16) * 256 + rng.integers(0, 256, (64, 64, 3), dtype=np.uint16)
        cv2.imwrite(str(image.with_suffix(".tif")), wide)
        image.unlink()
    for cache in (target / "images").rglob("*.cache"):
        cache.unlink()
    data = target / detect_data.name
    data.write_text(yaml.safe_dump({**yaml.safe_load(data.read_text()), "path": str(target)}))
    optimized = optimize_dataset(data, str(tmp_path / "optimized"))
    files, streamed = (YOLODataModule(data=str(d), imgsz=64, workers=0) for d in (data, optimized))
    for datamodule in (files, streamed):
        datamodule.setup("validate")
    assert files.val_dataset.im_files == streamed.val_dataset.im_files and files.val_dataset.im_files[0].endswith(".tif")
    for i in range(len(files.val_dataset)):
        np.testing.assert_array_equal(streamed.val_dataset.load_image(i)[0], files.val_dataset.load_image(i)[0])


class _ImageOrder(L.Callback):
    """Record each epoch's training images, batch by batch."""

    def __init__(self) -> None:
        self.epochs: list[list[str]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.epochs[-1] += list(batch["im_file"])


class _ReplaySampler(Sampler[int]):
    """Yields given orders, one per pass (the streamed run's image order, for the file-based dataset)."""

    def __init__(self, orders: list[list[int]]) -> None:
        self.orders = iter(orders)
        self.size = len(orders[0])

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(next(self.orders))

    def state_dict(self) -> dict:
        return {}


@pytest.mark.slow
def test_per_iteration_losses_equal_the_file_based_pipeline(detect_data, tmp_path, monkeypatch):
    """Augmentation off, the file-based loader given the streamed run's image order (LitData's chunk order): every loss
    of 2 epochs (warmup, accumulation) and every validation metric is the same."""
    import yolo_lightning.datamodule as datamodule_module

    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"), chunk_bytes="20KB")  # several chunks
    weights = save_initial_weights("yolo26n.yaml", SYNTHETIC_NAMES, tmp_path / "init.pt")
    recipe = dict(imgsz=64, batch=4, nbs=8, warmup_epochs=1.0, **AUGMENTATION_OFF)
    order = _ImageOrder()
    stream, module = run_lightning(weights, Path(optimized), tmp_path / "b", 2, epoch_seed=1, callbacks=[order],
                                   **recipe)
    assert [sorted(epoch) for epoch in order.epochs] == [sorted(module.trainer.datamodule.train_dataset.im_files)] * 2
    assert order.epochs[0] != order.epochs[1] and order.epochs[0] != sorted(order.epochs[0])  # shuffled, each epoch
    files_dataset = YOLODataModule(data=str(detect_data), imgsz=64, workers=0)
    files_dataset.setup("fit")
    index = {name: i for i, name in enumerate(files_dataset.train_dataset.im_files)}
    replay = _ReplaySampler([[index[name] for name in epoch] for epoch in order.epochs])
    monkeypatch.setattr(datamodule_module, "UltralyticsShuffleSampler", lambda size, seed: replay)
    files, _ = run_lightning(weights, detect_data, tmp_path / "a", 2, epoch_seed=1, **recipe)
    assert len(stream.losses) == len(files.losses) == 8
    np.testing.assert_array_equal(stream.losses, files.losses)
    for ours, theirs in zip(stream.epoch_metrics, files.epoch_metrics, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-6)


_PREEMPTED = """
import json, os, signal, sys
import lightning as L
from ultralytics import YOLO

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import RunReport
from yolo_lightning.callbacks import UltralyticsCheckpoint

mode, root, data, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
L.seed_everything(0)
seen = {}

class Probe(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        seen.setdefault(str(trainer.current_epoch), []).append([list(batch["im_file"]), float(outputs["loss"])])
        if mode == "stop" and trainer.current_epoch == 1 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's preemption: last.ckpt is saved after this batch

trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
                    default_root_dir=root, callbacks=[UltralyticsCheckpoint(), Probe()])
datamodule = YOLODataModule(data=data, imgsz=64, batch=4, workers=1, mosaic=0.0, fliplr=0.0, hsv_h=0, hsv_s=0, hsv_v=0,
                            translate=0, scale=0, storage_options=options)
trainer.fit(YOLOModule(nbs=4, warmup_epochs=1), datamodule, ckpt_path="last" if mode == "resume" else None)
print("RESULT" + json.dumps(seen))
"""


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_resumes_at_the_next_unread_image(detect_data, s3, tmp_path):
    """SIGTERM mid-epoch saves LitData's loader position (a loader worker reads the bucket): the resumed run, in a job
    with another temporary folder (SLURM's per-job TMPDIR), reads only the images that epoch had not read, in the
    uninterrupted run's order and with its losses, and the next epoch as it did."""
    url = f"s3://{BUCKET}/preempted"
    optimize_dataset(detect_data, url, storage_options=s3, chunk_bytes="20KB")

    def run(mode: str, root: Path) -> dict:
        # short: multiprocessing puts the sockets that pass loader batches' shared memory under it, and a socket
        # path over 107 characters (a pytest folder's) fails there, losing the batch (the main process waits forever)
        temporary = tempfile.mkdtemp(prefix=f"yl-{mode}-")
        result = subprocess.run([sys.executable, "-c", _PREEMPTED, mode, str(root), url, json.dumps(s3)],
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": temporary})  # fmt: skip
        shutil.rmtree(temporary, ignore_errors=True)
        assert result.returncode == (143 if mode == "stop" else 0), result.stderr[-3000:]  # 143: stopped by SIGTERM
        return json.loads(result.stdout.split("RESULT", 1)[1]) if mode != "stop" else {}

    full = run("full", tmp_path / "full")
    run("stop", tmp_path / "run")
    resumed = run("resume", tmp_path / "run")
    assert "0" not in resumed  # it started in epoch 1, at its third batch
    assert [batch for batch, _ in resumed["1"]] == [batch for batch, _ in full["1"][2:]]
    assert [batch for batch, _ in resumed["2"]] == [batch for batch, _ in full["2"]]
    np.testing.assert_allclose([loss for _, loss in resumed["1"] + resumed["2"]],
                               [loss for _, loss in full["1"][2:] + full["2"]], rtol=1e-4)  # fmt: skip


@pytest.mark.slow
def test_epochs_cut_short_still_shuffle_anew(detect_data, tmp_path):
    """limit_train_batches ends each epoch before the loader worker runs out: each epoch still has its own order (a
    persistent worker would replay the first one)."""
    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"), chunk_bytes="20KB")
    order = _ImageOrder()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=0,
                        limit_train_batches=0.5, num_sanity_val_steps=0, default_root_dir=str(tmp_path),
                        callbacks=[order])  # fmt: skip
    datamodule = YOLODataModule(data=optimized, imgsz=64, batch=2, workers=1)
    trainer.fit(YOLOModule(model="yolo26n.yaml", plots=False), datamodule)
    assert [len(epoch) for epoch in order.epochs] == [8, 8, 8]
    assert len({tuple(epoch) for epoch in order.epochs}) == 3


def test_a_saved_position_from_other_data_is_one_error(detect_data, tmp_path):
    """A mid-epoch position applies only to the images it was saved for: a split optimized again since (its version
    is the last part of LitData's cache path) or another fraction is refused, not silently misapplied."""
    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"), chunk_bytes="20KB")
    datamodule = YOLODataModule(data=optimized, imgsz=64, batch=4, workers=0)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    saved = loader.state_dict()
    other_version = {**saved, "dataset": {**saved["dataset"], "input_dir_url": "s3://bucket/ds/train",
                                          "input_dir_path": "/cache/abc/1700000000.0"}}  # fmt: skip
    with pytest.raises(ConfigurationError, match="was optimized again after this checkpoint"):
        loader.load_state_dict(other_version)
    fewer = {**saved, "dataset": {**saved["dataset"], "region_of_interest": saved["dataset"]["region_of_interest"][1:]}}
    with pytest.raises(ConfigurationError, match="read 14 images, this one reads 16"):
        loader.load_state_dict(fewer)
    loader.load_state_dict(saved)  # the same data: accepted


def test_too_few_images_for_one_batch_per_process_is_one_error(detect_data, tmp_path):
    """Under DDP LitData gives every rank the same whole batches: 16 images, 8 processes of batch 4 get none."""
    from types import SimpleNamespace

    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"))
    datamodule = YOLODataModule(data=optimized, imgsz=64, batch=32, workers=0)
    datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(world_size=8, global_rank=0, num_nodes=1, num_devices=8, current_epoch=0,
                                         max_epochs=1, limit_train_batches=1.0, lightning_module=None,
                                         strategy=SimpleNamespace(root_device=torch.device("cpu")))  # fmt: skip
    with pytest.raises(ConfigurationError, match="16 training images give no batch of 4 to each of the 8 processes"):
        datamodule.train_dataloader()


@pytest.mark.slow
def test_fraction_trains_on_the_first_images_and_partners_come_from_the_buffer(detect_data, tmp_path):
    """fraction=0.5 keeps the first half of the images, as Ultralytics does; mixup and cutmix draw their partner from
    the image buffer (in chunk order a partner from anywhere would download a chunk per image)."""
    from ultralytics.data.augment import CutMix, MixUp

    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"), chunk_bytes="20KB")
    order = _ImageOrder()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=0,
                        num_sanity_val_steps=0, default_root_dir=str(tmp_path), callbacks=[order])  # fmt: skip
    datamodule = YOLODataModule(data=optimized, imgsz=64, batch=4, workers=0, fraction=0.5, mixup=1.0, cutmix=1.0)
    trainer.fit(YOLOModule(model="yolo26n.yaml", plots=False), datamodule)
    files = YOLODataModule(data=str(detect_data), imgsz=64, workers=0, fraction=0.5)
    files.setup("fit")
    assert [sorted(epoch) for epoch in order.epochs] == [sorted(files.train_dataset.im_files)] * 2  # 8 of 16
    dataset = datamodule.train_dataset
    mixes = [t for t in dataset.transforms.transforms if isinstance(t, (MixUp, CutMix))]
    assert len(mixes) == 2 and dataset.buffer
    assert all(mix.get_indexes() in dataset.buffer for mix in mixes for _ in range(20))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segment", "semantic", "depth", "pose", "obb", "classify"])
def test_every_task_fits_from_the_bucket_with_its_augmentations(task, s3, tmp_path):
    """Default augmentation (mosaic through Ultralytics' buffer, mixup and cutmix with partners from it; classify:
    its torchvision augmentations), 2 loader workers that open the bucket themselves, close_mosaic, rect validation,
    the run folder's plots."""
    data = synthetic_data(task, tmp_path / "data", n_train=8, n_val=4, imgsz=64)
    url = f"s3://{BUCKET}/{task}"
    optimize_dataset(data, url, storage_options=s3)
    model = {"segment": "yolo26n-seg.yaml", "semantic": "yolo26n-sem.yaml", "depth": "yolo26n-depth.yaml",
             "pose": "yolo26n-pose.yaml", "obb": "yolo26n-obb.yaml", "classify": "yolo26n-cls.yaml"}[task]  # fmt: skip
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path / "run"))  # fmt: skip
    datamodule = YOLODataModule(data=url, imgsz=64, batch=4, workers=2, close_mosaic=1, mixup=0.5, cutmix=0.5,
                                storage_options=s3)  # fmt: skip
    trainer.fit(YOLOModule(model=model), datamodule)
    assert trainer.current_epoch == 2 and datamodule.mosaic_closed == (task != "classify")
    plots = {"train_batch0.jpg", "val_batch0_pred.jpg", "results.csv"}
    plots |= set() if task == "classify" else {"labels.jpg"}  # classification has no label plot
    assert plots <= {p.name for p in (tmp_path / "run").iterdir()}
    assert "fitness" in trainer.callback_metrics


@pytest.mark.slow
def test_a_classification_folder_validates_from_the_bucket_as_from_files(trained, s3, tmp_path):
    """optimize_dataset takes Ultralytics' image-folder tree: the same weights give the same metrics from the bucket."""
    weights, data = trained["classify"]
    url = f"s3://{BUCKET}/classify-folder"
    optimize_dataset(data, url, storage_options=s3)
    assert yaml.safe_load(_read_marker(url, s3))["task"] == "classify"
    files = _validate(weights, str(data), tmp_path / "files")
    ours = _validate(weights, url, tmp_path / "stream", storage_options=s3)
    assert files["metrics/accuracy_top1"] > 0.3
    assert ours == pytest.approx(files, abs=1e-6)


def _read_marker(url: str, options: dict) -> str:
    from yolo_lightning.object_store import read_text

    return read_text(f"{url}/{MARKER}", options)


def test_a_spawned_worker_reads_the_http_bucket(detect_data, s3, tmp_path):
    """A DataLoader worker started with spawn imports LitData afresh: the dataset re-allows plain http there."""
    url = f"s3://{BUCKET}/spawn"
    optimize_dataset(detect_data, url, storage_options=s3)
    datamodule = YOLODataModule(data=url, imgsz=64, batch=4, workers=0, storage_options=s3)
    datamodule.setup("validate")
    loader = DataLoader(datamodule.val_dataset, batch_size=4, num_workers=1, multiprocessing_context="spawn",
                        collate_fn=datamodule.val_dataset.collate_fn)  # fmt: skip
    assert sum(len(batch["im_file"]) for batch in loader) == 8


def test_validation_chunks_are_downloaded_once_per_node(detect_data, s3, tmp_path):
    """Validation fetches images by name from the node's chunk cache: another rank of the machine, a later run or the
    final validation reads the chunks one reader downloaded (here: with them gone from the bucket)."""
    import boto3

    url = f"s3://{BUCKET}/node-cache"
    optimize_dataset(detect_data, url, storage_options=s3, chunk_bytes="20KB")  # several chunks
    first = YOLODataModule(data=url, imgsz=64, workers=0, storage_options=s3)
    first.setup("validate")
    images = [first.val_dataset[i]["img"] for i in range(len(first.val_dataset))]
    client = boto3.client("s3", **s3)
    chunks = [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET, Prefix="node-cache/val/")["Contents"]
              if item["Key"].endswith(".bin")]  # fmt: skip
    assert len(chunks) > 1
    for key in chunks:
        client.delete_object(Bucket=BUCKET, Key=key)
    second = YOLODataModule(data=url, imgsz=64, workers=0, storage_options=s3)
    second.setup("validate")
    assert second.val_dataset.chunk_cache == first.val_dataset.chunk_cache
    for i, image in enumerate(images):
        assert torch.equal(second.val_dataset[i]["img"], image)


def test_litdata_creates_its_cache_folders_one_process_at_a_time(detect_data, s3, monkeypatch):
    """LitData creates a dataset's cache folders after deleting the URL's folder unless it holds exactly that version,
    without a lock: two processes opening a fresh split at once can delete each other's index.json (seen in CI, two
    validation loader workers). Both readers (random access, chunk order) create them holding the node cache's lock,
    which any other process or thread then waits for."""
    from filelock import FileLock, Timeout
    from litdata.streaming import dataset as litdata_dataset
    from litdata.utilities import dataset_utilities

    url = f"s3://{BUCKET}/opening"
    optimize_dataset(detect_data, url, storage_options=s3)
    real, held = dataset_utilities._try_create_cache_dir, []

    def another_thread_could_lock(cache: str) -> None:
        lock = FileLock(os.path.join(cache, ".opening.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            held.append(True)
        else:
            lock.release()
            held.append(False)

    def creating(*args, **kwargs):
        probe = threading.Thread(target=another_thread_could_lock, args=(kwargs["cache_dir"],))
        probe.start()
        probe.join()
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_utilities, "_try_create_cache_dir", creating)
    monkeypatch.setattr(litdata_dataset, "_try_create_cache_dir", creating)  # its other callers (workers, resume)
    datamodule = YOLODataModule(data=url, imgsz=64, batch=4, workers=0, storage_options=s3)
    datamodule.setup("fit")
    assert datamodule.val_dataset[0]["img"].ndim == 3  # random access opens the val split
    assert len(datamodule.train_dataloader()) == 4  # chunk order opens the train split
    assert held == [True, True]


def test_every_image_once_per_epoch_under_two_process_ddp(detect_data, tmp_path):
    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"), chunk_bytes="20KB")  # several chunks
    probe = Path(__file__).parent / "ddp_probe.py"
    command = [sys.executable, str(probe), "epochimages", str(tmp_path), "--data", optimized, "--devices", "2",
               "--workers", "1"]  # LitData shards over ranks and each rank's loader worker
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"epochimages-rank{r}.json").read_text()) for r in range(2)]
    for epoch in range(2):
        seen = [ranks[r][epoch] for r in range(2)]
        assert not set(seen[0]) & set(seen[1])  # disjoint shards
        assert sorted(seen[0] + seen[1]) == sorted({f for f in seen[0] + seen[1]}) and len(seen[0] + seen[1]) == 16


def test_an_interrupted_optimize_is_refused_and_a_rerun_completes(detect_data, tmp_path, monkeypatch):
    import litdata

    real, calls = litdata.optimize, []

    def dies_on_the_second_split(*args, **kwargs):
        calls.append(kwargs["output_dir"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(litdata, "optimize", dies_on_the_second_split)
    out = tmp_path / "optimized"
    with pytest.raises(KeyboardInterrupt):
        optimize_dataset(detect_data, str(out))
    assert not (out / MARKER).exists()
    with pytest.raises(ConfigurationError, match="no complete optimized dataset there") as error:
        YOLODataModule(data=str(out), workers=0).setup("validate")
    assert "\n" not in str(error.value)
    monkeypatch.setattr(litdata, "optimize", real)
    optimize_dataset(detect_data, str(out))
    metadata = yaml.safe_load((out / MARKER).read_text())
    assert metadata["task"] == "detect" and metadata["images"] == {"train": 16, "val": 8}


def test_optimize_replaces_a_dataset_only_when_asked_and_never_deletes_other_files(detect_data, s3, tmp_path):
    """A complete dataset is replaced only with overwrite=True; an output holding other files (LitData deletes each
    split's folder or prefix before writing it) is refused, locally and in a bucket, and the files stay."""
    import boto3

    url = f"s3://{BUCKET}/kept"
    optimize_dataset(detect_data, url, storage_options=s3)
    client = boto3.client("s3", **s3)
    marker = client.get_object(Bucket=BUCKET, Key=f"kept/{MARKER}")["Body"].read()
    with pytest.raises(ConfigurationError, match="holds an optimized dataset already.*overwrite=True"):
        optimize_dataset(detect_data, url, storage_options=s3)
    assert client.get_object(Bucket=BUCKET, Key=f"kept/{MARKER}")["Body"].read() == marker  # untouched
    client.put_object(Bucket=BUCKET, Key="kept/train/images/mine.jpg", Body=b"mine")
    with pytest.raises(ConfigurationError, match=r"holds files that optimize did not write \('train/images/mine.jpg'"):
        optimize_dataset(detect_data, url, storage_options=s3, overwrite=True)
    assert client.get_object(Bucket=BUCKET, Key="kept/train/images/mine.jpg")["Body"].read() == b"mine"
    client.delete_object(Bucket=BUCKET, Key="kept/train/images/mine.jpg")
    for folder in ("kept/", "kept/val/"):  # the consoles' "Create folder": empty keys, not files
        client.put_object(Bucket=BUCKET, Key=folder, Body=b"")
    optimize_dataset(detect_data, url, storage_options=s3, overwrite=True)

    local = tmp_path / "local"
    (local / "val").mkdir(parents=True)
    (local / "val" / "notes.txt").write_text("mine")
    (local / "train").mkdir()
    (local / "train" / "index.json.tmp").write_text("{")  # LitData's index, cut short by a kill: ours
    with pytest.raises(ConfigurationError, match=r"\('val/notes.txt', 1 in all"):
        optimize_dataset(detect_data, str(local))
    (local / "val" / "notes.txt").unlink()
    optimize_dataset(detect_data, str(local))
    first = (local / MARKER).stat().st_mtime_ns
    optimize_dataset(detect_data, str(local), overwrite=True)
    assert (local / MARKER).stat().st_mtime_ns > first
    assert yaml.safe_load((local / MARKER).read_text())["images"] == {"train": 16, "val": 8}


@pytest.mark.parametrize(("options", "says"), [
    ({"endpoint_url": "http://127.0.0.1:9", "aws_access_key_id": "a", "aws_secret_access_key": "b"}, "unreachable"),
    (None, "no credentials"),
])  # fmt: skip
def test_a_bucket_without_credentials_or_an_unreachable_endpoint_is_one_fast_line(options, says, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    start = time.monotonic()
    with pytest.raises(ConfigurationError, match=says) as error:
        YOLODataModule(data="s3://bucket/ds", workers=0, storage_options=options).setup("validate")
    assert time.monotonic() - start < 10 and "\n" not in str(error.value)


@pytest.mark.parametrize(("url", "reach", "says"), [
    ("gs://bucket/ds", "unreachable endpoint", "unreachable"),
    ("gs://bucket/ds", "no credentials", "no credentials"),
    ("gs://missing/ds", "emulator", "no such bucket"),
    (f"gs://{BUCKET}/never-optimized", "emulator", "no complete optimized dataset there"),
])  # fmt: skip
def test_gs_without_credentials_an_unreachable_endpoint_or_a_missing_bucket_is_one_line(url, reach, says, gcs,
                                                                                         monkeypatch):
    monkeypatch.setenv("CLOUDSDK_CONFIG", os.devnull)  # no gcloud login of this machine's
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    if reach != "emulator":
        monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    options = {
        "unreachable endpoint": {"project": "p", "credentials": EmulatorCredentials(),
                                 "client_options": {"api_endpoint": "http://127.0.0.1:9"}},
        "no credentials": {"project": "p"},
        "emulator": gcs,
    }[reach]  # fmt: skip
    start = time.monotonic()
    with pytest.raises(ConfigurationError, match=says) as error:
        YOLODataModule(data=url, workers=0, storage_options=options).setup("validate")
    assert time.monotonic() - start < 10 and "\n" not in str(error.value)


def test_litdata_s_own_node_guess_is_never_consulted(detect_data, tmp_path, monkeypatch):
    """LitData guesses the nodes from a machine's GPUs and raises on layouts like 3 nodes x 6 of 8 GPUs; the training
    loader (its sharding, its workers' iterator, a restored position) uses Lightning's world instead."""
    from types import SimpleNamespace

    from litdata.utilities.env import _DistributedEnv

    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"), chunk_bytes="20KB")
    datamodule = YOLODataModule(data=optimized, imgsz=64, batch=8, workers=1)
    datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(world_size=2, global_rank=1, num_nodes=2, num_devices=1, current_epoch=0,
                                         max_epochs=1, limit_train_batches=1.0, lightning_module=None,
                                         strategy=SimpleNamespace(root_device=torch.device("cpu")))  # fmt: skip

    def litdata_guess(cls):
        raise RuntimeError("The world size should be divisible by the number of GPUs.")

    monkeypatch.setattr(_DistributedEnv, "detect", classmethod(litdata_guess))
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    images = list(next(iterator)["im_file"])
    state = copy.deepcopy(loader.state_dict())
    images += [name for batch in iterator for name in batch["im_file"]]
    assert len(images) == len(set(images)) == 8  # rank 1 of 2: half of the 16 images, each once
    resumed = datamodule.train_dataloader()  # as a resumed run builds it, then restores the checkpoint's position
    resumed.load_state_dict(state)
    assert [name for batch in resumed for name in batch["im_file"]] == images[4:]  # after the first batch


def test_predict_on_optimized_data_needs_a_source(detect_data, tmp_path):
    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    with pytest.raises(ConfigurationError, match="which predict cannot read: pass source="):
        trainer.predict(YOLOModule(model="yolo26n.yaml"), YOLODataModule(data=optimized, imgsz=64, workers=0))
    source = str(detect_data.parent / "images" / "val")
    module = YOLOModule(model="yolo26n.yaml", names=SYNTHETIC_NAMES)  # from a source, predict uses the model's names
    results = trainer.predict(module, YOLODataModule(data=optimized, imgsz=64, source=source))
    assert sum(len(batch) for batch in results) == 8


def test_a_botocore_config_in_storage_options_is_kept(s3):
    """MinIO/Ceph users pass ``config=Config(s3={"addressing_style": "path"})``, which LitData merges into its client:
    the metadata reads take it too."""
    from botocore.config import Config

    from yolo_lightning.object_store import read_bytes, write_object

    options = {**s3, "config": Config(s3={"addressing_style": "path"})}
    write_object(f"s3://{BUCKET}/config/probe", b"path-style", options)
    assert read_bytes(f"s3://{BUCKET}/config/probe", options) == b"path-style"


def test_an_output_url_litdata_cannot_write_is_one_error(detect_data):
    with pytest.raises(ConfigurationError, match="a local folder, an s3:// or a gs:// URL"):
        optimize_dataset(detect_data, "azure://container/ds")


class ScriptCredentials:
    """Credentials as a training script defines them (in its ``__main__``)."""


def test_credentials_a_launched_rank_cannot_pass_on_are_one_error(detect_data, tmp_path, monkeypatch):
    """A launched rank 0 validates best.pt in a process of its own, given its settings through a pipe: credentials
    that cannot be pickled, or whose class the script defines (that process cannot import it), are one error before
    training starts, saying to use the environment, instead of a traceback after the last epoch."""
    from yolo_lightning.final_validation import validate_weights_in_new_process

    with pytest.raises(ConfigurationError, match="through the environment"):
        validate_weights_in_new_process({"storage_options": {"credentials": threading.Lock()}}, tmp_path)
    monkeypatch.setattr(ScriptCredentials, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "ScriptCredentials", ScriptCredentials, raising=False)
    monkeypatch.setenv("RANK", "0")
    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"))
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path / "run"))  # fmt: skip
    datamodule = YOLODataModule(data=optimized, imgsz=64, batch=4, workers=0,
                                storage_options={"credentials": ScriptCredentials()})  # fmt: skip
    with pytest.raises(ConfigurationError, match="ScriptCredentials is defined in the running script.*environment"):
        trainer.fit(YOLOModule(model="yolo26n.yaml"), datamodule)
    assert trainer.global_step == 0 and not (tmp_path / "run" / "weights").exists()


def test_another_task_than_the_optimized_one_is_one_error(detect_data, tmp_path):
    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    with pytest.raises(ConfigurationError, match="holds detect labels; this is a segment model"):
        trainer.validate(YOLOModule(model="yolo26n-seg.yaml"), YOLODataModule(data=optimized, imgsz=64, workers=0))


def test_credentials_stay_out_of_hparams_and_a_pickled_dataset_reads_as_files_do(detect_data, tmp_path):
    optimized = optimize_dataset(detect_data, str(tmp_path / "optimized"))
    datamodule = YOLODataModule(data=optimized, imgsz=64, workers=0, storage_options={"aws_secret_access_key": "s"})
    assert "storage_options" not in datamodule.hparams
    datamodule.setup("validate")
    copy = pickle.loads(pickle.dumps(datamodule.val_dataset))  # as a spawned worker receives it
    files = YOLODataModule(data=str(detect_data), imgsz=64, workers=0)
    files.setup("validate")
    assert torch.equal(copy[0]["img"], files.val_dataset[0]["img"])  # the same letterboxed image


def test_cli_optimize_then_fit(detect_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "optimized"
    result = subprocess.run(["yolo-lightning", "optimize", "--data", str(detect_data), "--output", str(out),
                             "--chunk_bytes", "20KB"], capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / MARKER).is_file() and "trains from it" in result.stdout + result.stderr
    assert len(json.loads((out / "train" / "index.json").read_text())["chunks"]) > 1  # --chunk_bytes reached LitData
    again = subprocess.run(["yolo-lightning", "optimize", "--data", str(detect_data), "--output", str(out)],
                           capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert again.returncode == 2 and "holds an optimized dataset already" in again.stderr, again.stderr[-3000:]
    assert len(again.stderr.strip().splitlines()) == 1 and "--overwrite" in again.stderr
    result = subprocess.run(["yolo-lightning", "fit", "--data.data", str(out), "--data.imgsz", "64", "--data.batch", "4",
                             "--data.workers", "0", "--trainer.max_epochs", "1",
                             "--data.storage_options", '{"aws_secret_access_key": "s3cr3t"}'],
                            capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "detect" / "train"
    assert torch.load(run / "weights" / "best.pt", weights_only=False)
    saved = next(run.glob("lightning_logs/*/config.yaml")).read_text()
    assert "s3cr3t" not in saved and "***" in saved


def test_two_optimize_runs_at_once_keep_their_own_chunks(tmp_path):
    """LitData stages chunks in one folder per machine: each run stages in its own, so both indexes are whole."""
    datas = [synthetic_data(task, tmp_path / "data", n_train=8, n_val=4, imgsz=64) for task in ("detect", "segment")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(["yolo-lightning", "optimize", "--data", str(d), "--output", str(tmp_path / f"out{i}")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for i, d in enumerate(datas)]  # fmt: skip
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()[-3000:]
    for i in range(2):
        for split, n in (("train", 8), ("val", 4)):
            index = json.loads((tmp_path / f"out{i}" / split / "index.json").read_text())
            assert sum(chunk["chunk_size"] for chunk in index["chunks"]) == n
