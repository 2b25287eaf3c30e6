"""UltralyticsCheckpoint and export_ultralytics: portable best.pt/last.pt chosen by any logged metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from parity import METRIC_KEYS, RunRecord, _Recorder
from torch import nn
from ultralytics.nn.tasks import DetectionModel

from yolo_lightning import YOLODataModule, YOLOModule, export_ultralytics
from yolo_lightning.callbacks import UltralyticsCheckpoint
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.export import portable_model
from yolo_lightning.module_loading import load_yolo_checkpoint

EPOCHS = 4


@pytest.fixture(scope="module")
def run(trained_weights, standard_data_yaml, tmp_path_factory) -> SimpleNamespace:
    """A short fine-tune from Ultralytics-trained weights, checkpointed by mAP50 and by fitness."""
    root = tmp_path_factory.mktemp("checkpoint_run")
    by_map50 = UltralyticsCheckpoint(monitor="metrics/mAP50(B)", dirpath=root / "by_map50", save_period=2)
    by_fitness = UltralyticsCheckpoint()  # default: fitness, <default_root_dir>/weights
    record = RunRecord()
    trainer = L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
        default_root_dir=str(root), callbacks=[by_map50, by_fitness, _Recorder(record)],
    )  # fmt: skip
    module = YOLOModule(model=str(trained_weights), optimizer="AdamW", lr0=0.002, nbs=16, warmup_epochs=0)
    trainer.fit(module, YOLODataModule(data=str(standard_data_yaml), imgsz=64, batch=16, workers=0, close_mosaic=2))
    return SimpleNamespace(root=root, history=record.epoch_metrics, module=module, data=standard_data_yaml)


def _best_epoch(history: list[dict[str, float]], key: str) -> int:
    values = [epoch[key] for epoch in history]
    return values.index(max(values))


@pytest.mark.slow
@pytest.mark.parametrize("folder, key", [("by_map50", "metrics/mAP50(B)"), ("weights", "metrics/mAP50-95(B)")])
def test_best_is_the_epoch_with_the_highest_monitored_value(run, folder, key):
    best = torch.load(run.root / folder / "best.pt", weights_only=False)
    last = torch.load(run.root / folder / "last.pt", weights_only=False)
    assert best["epoch"] == _best_epoch(run.history, key)
    assert last["epoch"] == EPOCHS - 1
    assert best["train_metrics"][key] == pytest.approx(max(h[key] for h in run.history), abs=1e-6)
    assert last["train_results"]["epoch"] == [float(e) for e in range(EPOCHS)]
    assert best["train_results"]["epoch"] == [float(e) for e in range(best["epoch"] + 1)]  # history when written
    assert last["train_results"][key] == pytest.approx([h[key] for h in run.history], abs=1e-6)
    assert best["train_args"]["data"] == str(run.data) and best["train_args"]["imgsz"] == 64
    assert best["model"].parameters().__next__().dtype == torch.float16


@pytest.mark.slow
def test_save_period_keeps_periodic_copies(run):
    # Ultralytics' rule: after epochs 0, N, 2N... (epoch % save_period == 0), each file named by its 0-based epoch
    periodic = sorted((run.root / "by_map50").glob("epoch*.pt"))
    assert [p.name for p in periodic] == ["epoch0.pt", "epoch2.pt"]
    assert [torch.load(p, weights_only=False)["epoch"] for p in periodic] == [0, 2]


MAP_KEYS = ("metrics/mAP50(B)", "metrics/mAP50-95(B)")


def _validate_rounded(checkpoint: Path, data: Path, root: Path, perturb: str | None = None) -> dict[str, float]:
    """yolo-lightning's validation of a ``.ckpt``'s EMA weights rounded to fp16 (``perturb=None``, as best.pt stores
    them) or moved by one whole fp16 ulp: ``"up"``, ``"down"`` or ``"random<seed>"`` (a random sign per weight)."""
    module, _, _ = load_yolo_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(int(perturb[6:]) if perturb and perturb.startswith("random") else 0)
    with torch.no_grad():
        for tensor in module.model.state_dict().values():
            if not tensor.is_floating_point():
                continue
            half = tensor.half()
            if perturb is None:
                tensor.copy_(half.float())
                continue
            ulp = (torch.nextafter(half, torch.full_like(half, float("inf"))).float() - half.float()).abs()
            sign = {"up": 1.0, "down": -1.0}.get(perturb)
            if sign is None:
                sign = torch.randint(0, 2, tensor.shape, generator=generator).float() * 2 - 1
            tensor.add_(sign * ulp)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(root))
    trainer.validate(module, YOLODataModule(data=str(data), imgsz=64, batch=8, workers=0), verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.fixture(scope="module")
def fp16_metrics(run, tmp_path_factory) -> dict[str, float]:
    """yolo-lightning's validation of best.ckpt's EMA weights rounded to fp16, as best.pt stores them.

    Training validates the fp32 EMA (as DetectionTrainer does); the fp16 rounding in the file can move the max-F1
    confidence where P and R are read, and reorder near-tied detections, so the file is compared with its own weights.
    """
    return _validate_rounded(run.root / "weights" / "best.ckpt", run.data, tmp_path_factory.mktemp("fp16"))


@pytest.fixture(scope="module")
def fp16_rounding_bound(run, tmp_path_factory) -> dict[str, float]:
    """How far fp16 storage may move each mAP from the logged fp32 value, measured on this machine.

    Rounding to the nearest fp16 moves every weight by at most half an fp16 ulp. Moving every weight by one whole ulp
    (up, down, and two random-sign draws: twice the largest rounding, in every weight) shows how sensitive this model's
    mAP is to perturbations of that size on this machine's arithmetic; the bound is twice the largest change seen
    (plus 1e-4 for the metrics' own resolution). Ranking changes among near-tied low-confidence detections make the
    sensitivity model- and machine-dependent, which is why it is measured rather than fixed.
    """
    root = tmp_path_factory.mktemp("fp16_ulp")
    checkpoint = run.root / "weights" / "best.ckpt"
    fp32 = run.history[torch.load(run.root / "weights" / "best.pt", weights_only=False)["epoch"]]
    moved = [_validate_rounded(checkpoint, run.data, root, p) for p in ("up", "down", "random1", "random2")]
    return {key: 2 * max(abs(m[key] - fp32[key]) for m in moved) + 1e-4 for key in MAP_KEYS}


FRESH_PROCESS = textwrap.dedent(
    """
    import json, pickle, sys, types
    sys.modules["yolo_lightning"] = None  # importing it now raises ImportError: the file must not need it
    import torch
    from ultralytics import YOLO

    modules = set()
    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            modules.add(module)
            return super().find_class(module, name)
    torch.load({weights!r}, weights_only=False, pickle_module=types.SimpleNamespace(__name__="pickle", Unpickler=Recording, load=pickle.load))

    model = YOLO({weights!r})
    metrics = model.val(data={data!r}, imgsz=64, batch=16, plots=False, verbose=False, project={tmp!r}).results_dict
    boxes = sum(len(r.boxes) for r in model.predict({images!r}, imgsz=64, conf=0.01, verbose=False))
    exported = model.export(format="torchscript", imgsz=64) if {export!r} else None
    print("RESULT" + json.dumps({{"metrics": metrics, "boxes": boxes, "exported": exported, "modules": sorted(modules)}}))
    """
)


def _load_in_fresh_process(weights: Path, data: Path, tmp: Path, safe_load: bool, export: bool) -> dict:
    env = {**os.environ, "ULTRALYTICS_SAFE_LOAD": "1" if safe_load else "0"}
    images = str(data.parent / "images" / "val")
    script = FRESH_PROCESS.format(weights=str(weights), data=str(data), tmp=str(tmp), images=images, export=export)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("RESULT", 1)[1])


@pytest.mark.slow
@pytest.mark.parametrize("safe_load", [False, True], ids=["default", "ULTRALYTICS_SAFE_LOAD"])
def test_plain_ultralytics_loads_validates_predicts_exports(run, fp16_metrics, fp16_rounding_bound, tmp_path, safe_load):
    weights = run.root / "weights" / "best.pt"
    out = _load_in_fresh_process(weights, run.data, tmp_path, safe_load, export=not safe_load)
    logged = run.history[torch.load(weights, weights_only=False)["epoch"]]
    assert logged["metrics/mAP50(B)"] > 0.005  # real matches, not zeros against zeros
    for key in METRIC_KEYS:  # exactly what yolo-lightning measures for the same (fp16-rounded) weights
        assert out["metrics"][key] == pytest.approx(fp16_metrics[key], abs=1e-4), key
    for key in MAP_KEYS:  # and what the run logged (fp32) for that epoch, within fp16 storage's measured effect
        assert fp16_rounding_bound[key] < 0.05, fp16_rounding_bound  # else the comparison would say nothing
        assert out["metrics"][key] == pytest.approx(logged[key], abs=fp16_rounding_bound[key]), key
    assert out["boxes"] > 0
    assert safe_load or out["exported"].endswith(".torchscript")
    assert not [m for m in out["modules"] if m.split(".")[0] in {"yolo_lightning", "lightning", "pytorch_lightning", "__main__"}]


@pytest.mark.slow
def test_ultralytics_trainer_fine_tunes_the_file(run, tmp_path):
    script = (
        "import sys; sys.modules['yolo_lightning'] = None\nfrom ultralytics import YOLO\n"
        f"YOLO({str(run.root / 'weights' / 'best.pt')!r}).train(data={str(run.data)!r}, epochs=1, imgsz=64, batch=16,"
        f" workers=0, device='cpu', plots=False, project={str(tmp_path)!r}, name='ft', verbose=False)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ft" / "weights" / "best.pt").is_file()


@pytest.mark.slow
def test_export_from_ckpt_and_run_folder_matches_the_callback(run, tmp_path):
    from_ckpt = torch.load(export_ultralytics(run.root / "weights" / "best.ckpt", tmp_path / "a.pt"), weights_only=False)
    from_folder = torch.load(export_ultralytics(run.root, tmp_path / "b.pt"), weights_only=False)
    written = torch.load(run.root / "weights" / "best.pt", weights_only=False)
    for exported in (from_ckpt, from_folder):
        assert exported["epoch"] == written["epoch"]
        assert exported["train_metrics"]["fitness"] == pytest.approx(written["train_metrics"]["fitness"])
        for name, tensor in written["model"].state_dict().items():
            assert torch.equal(exported["model"].state_dict()[name], tensor), name


@pytest.mark.slow
def test_cli_export(run, tmp_path):
    out = tmp_path / "cli.pt"
    result = subprocess.run(
        ["yolo-lightning", "export", "--ckpt_path", str(run.root / "weights" / "last.ckpt"), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(out, weights_only=False)["epoch"] == EPOCHS - 1


class WeightedDetectionModel(DetectionModel):
    """A user's subclass, defined in a test module (the guide's __main__ problem)."""


def test_portable_model_keeps_only_ultralytics_classes():
    model = WeightedDetectionModel("yolo26n.yaml", nc=2, verbose=False)
    model.model[0].bn = nn.SyncBatchNorm.convert_sync_batchnorm(model.model[0].bn)
    model.criterion = object()
    portable = portable_model(model)
    assert type(portable) is DetectionModel and portable.criterion is None
    assert type(portable.model[0].bn) is nn.BatchNorm2d
    assert all(type(m).__module__.startswith(("ultralytics.", "torch.")) for m in portable.modules())
    assert type(model) is WeightedDetectionModel  # the training model is untouched


def test_monitor_that_is_never_logged_lists_the_logged_keys(tiny_data_yaml, tmp_path):
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
        limit_train_batches=1, limit_val_batches=1, default_root_dir=str(tmp_path),
        callbacks=[UltralyticsCheckpoint(monitor="metrics/F9(B)")],
    )  # fmt: skip
    with pytest.raises(MisconfigurationException, match=r"metrics/F9\(B\).*metrics/mAP50\(B\)"):
        trainer.fit(YOLOModule(), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=8, workers=0))


def test_last_saved_with_best_is_a_copy_not_a_second_serialization(tiny_data_yaml, tmp_path, monkeypatch):
    """The first validation always writes best: last.ckpt/last.pt are then byte copies (own files), and resume."""
    serialized = []
    save_checkpoint = L.Trainer.save_checkpoint
    monkeypatch.setattr(L.Trainer, "save_checkpoint", lambda self, path, *a, **k: serialized.append(Path(path).name)
                        or save_checkpoint(self, path, *a, **k))  # fmt: skip

    def fit(max_epochs: int, ckpt_path: Path | None = None) -> None:
        trainer = L.Trainer(
            max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
            limit_train_batches=1, limit_val_batches=1, default_root_dir=str(tmp_path), callbacks=[UltralyticsCheckpoint(save_period=1)],
        )  # fmt: skip
        module = YOLOModule(model="yolov8n.yaml")
        trainer.fit(module, YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=8, workers=0), ckpt_path=ckpt_path)

    fit(1)
    weights = tmp_path / "weights"
    assert serialized == ["best.ckpt"]  # last.ckpt was not pickled again
    for suffix in (".ckpt", ".pt"):
        best, last = weights / f"best{suffix}", weights / f"last{suffix}"
        assert last.read_bytes() == best.read_bytes()
        assert not last.samefile(best) and oct(last.stat().st_mode & 0o777) == oct(best.stat().st_mode & 0o777)
    assert (weights / "epoch0.pt").read_bytes() == (weights / "last.pt").read_bytes()
    assert not list(weights.glob(".*"))  # no staged file left behind
    fit(2, ckpt_path=weights / "last.ckpt")
    assert torch.load(weights / "last.pt", weights_only=False)["epoch"] == 1
    assert (weights / "best.ckpt").is_file() and sorted(p.name for p in weights.glob("epoch*.pt")) == ["epoch0.pt", "epoch1.pt"]


def test_loggers_hear_of_a_checkpoint_once_it_is_in_place(tiny_data_yaml, tmp_path):
    """A logger that uploads checkpoints (``log_model="all"``) reads the file when notified: it must be there by then,
    not still staged."""
    from lightning.pytorch.loggers import CSVLogger

    heard = []

    class Uploader(CSVLogger):
        def after_save_checkpoint(self, checkpoint_callback) -> None:
            for path in filter(None, (checkpoint_callback.best_model_path, checkpoint_callback.last_model_path)):
                heard.append((Path(path).name, Path(path).is_file() and Path(path).with_suffix(".pt").is_file()))

    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=Uploader(tmp_path), enable_progress_bar=False, num_sanity_val_steps=0,
        limit_train_batches=1, limit_val_batches=1, default_root_dir=str(tmp_path), callbacks=[UltralyticsCheckpoint()],
    )  # fmt: skip
    trainer.fit(YOLOModule(model="yolov8n.yaml"), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=8, workers=0))
    assert heard and all(present for _, present in heard), heard
    assert {name for name, _ in heard} >= {"best.ckpt", "last.ckpt"}


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    module = YOLOModule(names={0: "a"})
    with pytest.raises(ConfigurationError, match="cannot write"):
        export_ultralytics(module, blocker / "best.pt")


def test_export_rejects_foreign_and_missing_checkpoints(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ConfigurationError, match="not a yolo-lightning checkpoint"):
        export_ultralytics(foreign, tmp_path / "x.pt")
    with pytest.raises(ConfigurationError, match="no such checkpoint file"):
        export_ultralytics(tmp_path / "missing.ckpt", tmp_path / "x.pt")
    with pytest.raises(ConfigurationError, match="no best.ckpt or last.ckpt"):
        export_ultralytics(tmp_path, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
