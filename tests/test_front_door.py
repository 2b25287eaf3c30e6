"""Ultralytics' front door: official weights by name (``yolo11n.pt``) and the dataset YAMLs it ships (``coco8.yaml``)
resolve and download as Ultralytics does; offline, they fail fast with one line naming them and the remedy.

The network is replaced by a server of local files: Ultralytics' own ``safe_download`` (as ``attempt_download_asset``,
``download`` and ``check_det_dataset`` call it) records the URL and unpacks a file the test wrote.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import ultralytics.data.utils as ultralytics_data_utils
import ultralytics.utils.downloads as ultralytics_downloads
from ultralytics import YOLO
from ultralytics.utils import ASSETS_URL, SETTINGS

from yolo_lightning import YOLODataModule, YOLOModule, dataset_checks
from yolo_lightning.cli import main
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.export import save_atomically, ultralytics_checkpoint
from yolo_lightning.models import build_model
from yolo_lightning.synthetic import synthetic_data
from yolo_lightning.tasks import task_named

RELEASE = inspect.signature(ultralytics_downloads.attempt_download_asset).parameters["release"].default
WEIGHTS_URL = "https://github.com/ultralytics/assets/releases/download/{release}/{name}"
COCO8_URL = f"{ASSETS_URL}/coco8.zip"  # coco8.yaml's download: key
REAL_SAFE_DOWNLOAD = ultralytics_downloads.safe_download
FAST_S = 5.0  # an offline failure must take less than this


class LocalAssets:
    """Stands in for GitHub's release assets: serves files by name, or fails as Ultralytics does offline."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.urls: list[str] = []
        self.offline = False

    def serve(self, name: str) -> Path:
        """The file served for ``name`` (the test writes it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def safe_download(self, url: str, file: str | Path | None = None, dir: str | None = None, **kwargs: object) -> Path:
        self.urls.append(str(url))
        if self.offline:  # safe_download's own failure when is_online() is False
            raise ConnectionError(f"❌  Download failure for {url}. Environment may be offline.")
        target = Path(dir or ".") / (file or ultralytics_downloads.url2file(str(url)))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.folder / Path(str(url)).name, target)
        return REAL_SAFE_DOWNLOAD(str(target), dir=dir, **kwargs)  # a local file: Ultralytics' own unzip


@pytest.fixture
def assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalAssets:
    """Local release assets; weights_dir, datasets_dir and the current folder (where Ultralytics saves weights it
    downloads by name) in tmp_path."""
    server = LocalAssets(tmp_path / "served")
    monkeypatch.setattr(ultralytics_downloads, "safe_download", server.safe_download)
    monkeypatch.setattr(ultralytics_data_utils, "safe_download", server.safe_download)
    monkeypatch.setitem(SETTINGS, "weights_dir", str(tmp_path / "weights"))
    monkeypatch.setattr(ultralytics_data_utils, "DATASETS_DIR", tmp_path / "datasets")
    monkeypatch.setattr(dataset_checks, "DATASETS_DIR", tmp_path / "datasets")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return server


def _save_weights(model_yaml: str, path: Path) -> Path:
    """An Ultralytics checkpoint of the architecture ``model_yaml`` (untrained), as official weights are laid out."""
    return save_atomically(ultralytics_checkpoint(YOLO(model_yaml).model, {}, -1, {}), path)


def _zip_folder(folder: Path, top: str, path: Path) -> Path:
    """Zip ``folder``'s images and labels under ``top/``, as Ultralytics' dataset zips are laid out."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and file.suffix in {".png", ".txt"}:
                archive.write(file, f"{top}/{file.relative_to(folder)}")
    return path


def _serve_coco8(assets: LocalAssets, tmp_path: Path) -> None:
    data_yaml = synthetic_data("detect", tmp_path / "synthetic", n_train=4, n_val=4, imgsz=64)
    _zip_folder(data_yaml.parent, "coco8", assets.serve("coco8.zip"))


def _one_line(message: str) -> str:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


def test_official_detect_weights_by_name_download(assets: LocalAssets) -> None:
    _save_weights("yolo11n.yaml", assets.serve("yolo11n.pt"))
    module = YOLOModule(model="yolo11n.pt")
    assert assets.urls == [WEIGHTS_URL.format(release=RELEASE, name="yolo11n.pt")]
    assert module.task.name == "detect" and Path("yolo11n.pt").is_file()  # where Ultralytics saves it
    network = build_model(module.task, "yolo11n.pt", {0: "red", 1: "blue"})
    assert type(network).__name__ == "DetectionModel" and network.nc == 2
    assert len(assets.urls) == 1  # found on disk from now on


@pytest.mark.parametrize(
    ("name", "task", "network_class"),
    [("yolo11n-cls.pt", "classify", "ClassificationModel"), ("yolo11n-seg.pt", "segment", "SegmentationModel"),
     ("yolo11n-pose.pt", "pose", "PoseModel"), ("yolov8n-obb.pt", "obb", "OBBModel"),
     ("yolo26n-sem.pt", "semantic", "SemanticSegmentationModel"), ("yolo26n-depth.pt", "depth", "DepthModel")],
)  # fmt: skip
def test_official_weights_of_every_task_by_name(assets: LocalAssets, name: str, task: str, network_class: str) -> None:
    _save_weights(name.replace(".pt", ".yaml"), assets.serve(name))
    module = YOLOModule(model=name)
    assert assets.urls == [WEIGHTS_URL.format(release=RELEASE, name=name)]
    assert module.task.name == task
    network = build_model(module.task, name, {0: "a", 1: "b"}, {"kpt_shape": [17, 3]})
    assert type(network).__name__ == network_class


def test_weights_in_weights_dir_need_no_download(assets: LocalAssets) -> None:
    _save_weights("yolo11n.yaml", Path(SETTINGS["weights_dir"]) / "yolo11n.pt")
    assert YOLOModule(model="yolo11n.pt").task.name == "detect"
    assert assets.urls == []


def test_unknown_weights_name_is_one_line_without_download(assets: LocalAssets) -> None:
    with pytest.raises(ConfigurationError) as info:
        YOLOModule(model="my-yolo.pt")
    message = _one_line(str(info.value))
    assert "'my-yolo.pt'" in message and SETTINGS["weights_dir"] in message and "my-yolo.yaml" in message
    assert assets.urls == []


def test_shipped_data_yaml_downloads_and_sets_up(assets: LocalAssets, tmp_path: Path) -> None:
    _serve_coco8(assets, tmp_path)
    datamodule = YOLODataModule(data="coco8.yaml", imgsz=64, batch=2, workers=0)
    datamodule.setup("fit")
    assert assets.urls == [COCO8_URL]
    assert len(datamodule.train_dataset) == 4 and len(datamodule.val_dataset) == 4
    assert datamodule.data_config["train"] == str(tmp_path / "datasets" / "coco8" / "images" / "train")
    assert datamodule.names[0] == "person" and len(datamodule.names) == 80
    bare = YOLODataModule(data="coco8", imgsz=64, batch=2, workers=0)  # as check_det_dataset: 'coco8' is coco8.yaml
    bare.setup("validate")
    assert len(bare.val_dataset) == 4 and assets.urls == [COCO8_URL]  # already downloaded


@pytest.mark.parametrize(("task", "name", "top"), [("semantic", "cityscapes8", "cityscapes8"),
                                                ("depth", "depth8", "depth8-png")])  # fmt: skip
def test_shipped_per_pixel_data_yamls_download_and_set_up(
    assets: LocalAssets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, name: str, top: str
) -> None:
    """cityscapes8.yaml (masks, label_mapping) and depth8.yaml (depth maps, depth_scale), served from our own data."""
    data_yaml = synthetic_data(task, tmp_path / "synthetic", n_train=4, n_val=4, imgsz=64)
    _zip_folder(data_yaml.parent, top, assets.serve(f"{top}.zip"))
    monkeypatch.setattr(YOLODataModule, "task", property(lambda self: task_named(task)))  # a YOLOModule's task
    datamodule = YOLODataModule(data=f"{name}.yaml", imgsz=64, batch=2, workers=0)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert assets.urls == [f"{ASSETS_URL}/{top}.zip"]
    assert len(datamodule.train_dataset) == 4 and len(datamodule.val_dataset) == 4
    assert datamodule.data_config["train"] == str(tmp_path / "datasets" / top / "images" / "train")


def test_classify_dataset_name_downloads(assets: LocalAssets, tmp_path: Path) -> None:
    folder = synthetic_data("classify", tmp_path / "synthetic", n_train=4, n_val=4, imgsz=32)
    _zip_folder(folder, "mnist160", assets.serve("mnist160.zip"))
    config = dataset_checks.load_classification_config("mnist160", ("train", "val"))
    assert assets.urls == [f"{ASSETS_URL}/mnist160.zip"]
    assert config["train"] == str(tmp_path / "datasets" / "mnist160" / "train") and len(config["names"]) == 4


@pytest.mark.slow
def test_cli_fit_with_official_names(assets: LocalAssets, tmp_path: Path) -> None:
    _save_weights("yolo11n.yaml", assets.serve("yolo11n.pt"))
    _serve_coco8(assets, tmp_path)
    run = tmp_path / "run"
    main(["fit", "--model.model", "yolo11n.pt", "--data.data", "coco8.yaml", "--data.imgsz", "64", "--data.batch", "2",
          "--data.workers", "0", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
          "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(run)])  # fmt: skip
    assert assets.urls == [WEIGHTS_URL.format(release=RELEASE, name="yolo11n.pt"), COCO8_URL]
    assert (run / "weights" / "last.pt").is_file()
    assert YOLO(run / "weights" / "last.pt").model.nc == 80


def _fails_fast(make: object) -> str:
    start = time.perf_counter()
    with pytest.raises(ConfigurationError) as info:
        make()
    assert time.perf_counter() - start < FAST_S
    return _one_line(str(info.value))


def test_offline_weights_fail_fast_with_one_line(assets: LocalAssets) -> None:
    assets.offline = True
    message = _fails_fast(lambda: YOLOModule(model="yolo11n.pt"))
    assert "'yolo11n.pt'" in message and "network" in message and "local" in message
    assert assets.urls == [WEIGHTS_URL.format(release=RELEASE, name="yolo11n.pt")]


def test_offline_data_fails_fast_with_one_line(assets: LocalAssets) -> None:
    assets.offline = True
    message = _fails_fast(lambda: YOLODataModule(data="coco8.yaml", imgsz=64, batch=2, workers=0).setup("fit"))
    assert "coco8.yaml" in message and "coco8.zip" in message and "network" in message and "local" in message


@pytest.mark.parametrize(("model", "data", "named"), [("yolo11n.pt", "synthetic16", "yolo11n.pt"),
                                                      ("yolo11n.yaml", "coco8.yaml", "coco8.yaml")])  # fmt: skip
def test_offline_cli_exits_2_with_one_line(
    assets: LocalAssets, tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, data: str, named: str
) -> None:
    assets.offline = True
    start = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        main(["fit", "--model.model", model, "--data.data", data, "--data.imgsz", "64", "--data.workers", "0",
              "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path / "run")])  # fmt: skip
    assert time.perf_counter() - start < FAST_S
    assert info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("yolo-lightning: error:")]
    assert len(errors) == 1 and named in errors[0] and "network" in errors[0], err
    assert "Traceback" not in err


AUDIT = textwrap.dedent(
    """
    import json, sys
    attempts = {{"import": [], "weights_dir": []}}
    stage = "import"
    def audit(event, args):
        if event.startswith(("socket.", "urllib.", "http.")):
            attempts[stage].append([event, repr(args)[:200]])
    sys.addaudithook(audit)

    import yolo_lightning
    from ultralytics.utils import SETTINGS

    stage = "weights_dir"
    SETTINGS["weights_dir"] = {weights_dir!r}
    module = yolo_lightning.YOLOModule(model="yolo11n.pt")
    print("AUDIT" + json.dumps([attempts, module.task.name]))
    """
)


@pytest.mark.slow
def test_no_network_attempt_at_import_nor_for_weights_on_disk(tmp_path: Path) -> None:
    _save_weights("yolo11n.yaml", tmp_path / "weights" / "yolo11n.pt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_OFFLINE", "YOLO_AUTOINSTALL"))}
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "fresh_config")
    script = AUDIT.format(weights_dir=str(tmp_path / "weights"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    attempts, task = json.loads(result.stdout.split("AUDIT", 1)[1])
    assert attempts == {"import": [], "weights_dir": []} and task == "detect"
