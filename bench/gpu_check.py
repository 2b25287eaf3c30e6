"""One-GPU check of yolo-lightning against native Ultralytics: best.pt correctness, training/validation speed, memory.

    python bench/gpu_check.py                        # one CUDA GPU: 640 px, batch 32, 256/64 images, 5 epochs
    python bench/gpu_check.py --accelerator cpu --imgsz 64 --images 16 --val-images 8 --batch 8 --epochs 2 --workers 0

Every run is a fresh Python process (its own CUDA context and memory peak), on the same synthetic data, model YAML
(yolo26n) and recipe (bench/benchmark.py's: AdamW lr0 0.003, warmup 1 epoch, nbs = batch, close_mosaic 0):

1. yolo-lightning ``Trainer(precision="32-true")`` and ``Trainer(precision="16-mixed")`` fits (``deterministic="warn"``
   like Ultralytics' default ``deterministic=True``), each with ``UltralyticsCheckpoint`` writing ``weights/best.pt``;
   the 16-mixed fit is also the speed run.
2. native ``YOLO("yolo26n.yaml").train(amp=True)`` (``amp=False`` on CPU), the speed reference.
3. a checker that, for each best.pt, compares ``YOLO(best.pt).val()`` with the metrics logged for best.pt's epoch
   (best.pt holds fp16-rounded EMA weights, training validated the fp32 EMA, under fp16 autocast for 16-mixed: so
   within ``LOGGED_TOLERANCE`` for mAP50 and mAP50-95; P and R, read at the max-F1 confidence, are only reported),
   and with yolo-lightning's own ``Trainer(precision="32-true").validate`` of the same file
   (within ``SAME_FILE_TOLERANCE``).

Rates exclude the first epoch and the first validation. A native epoch is timed from ``on_train_epoch_start`` to
``on_train_epoch_end`` (its batches; validation and saving come after), a Lightning epoch from ``on_train_epoch_start``
to ``on_validation_start`` (its batches; Lightning validates and saves checkpoints inside the epoch); a validation from
``on_val_start`` to ``on_val_end`` and from ``on_validation_start`` to ``on_validation_end``. Each boundary waits for
the GPU's queued work. Peak GPU memory is ``torch.cuda.max_memory_allocated()`` over the fit. Prints one markdown
table for BENCHMARKS.md; exits 1 if a check fails, a run fails or the ``--budget-s`` runs out (speed goals are only
reported). Network: none (``YOLO_OFFLINE=1``, models from YAML, Ultralytics' fonts placed locally, no AMP download).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the working tree's yolo_lightning, installed or not (a GPU machine gets a bare copy)

MODEL = "yolo26n.yaml"
RECIPE = {"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1}  # bench/benchmark.py's
KEYS = {
    "mAP50": "metrics/mAP50(B)",
    "mAP50-95": "metrics/mAP50-95(B)",
    "P": "metrics/precision(B)",
    "R": "metrics/recall(B)",
}
CHECKED = ("mAP50", "mAP50-95")  # compared with the logged values; P and R move with the max-F1 confidence: reported
LOGGED_TOLERANCE = 0.01  # |mAP of the fp16 file - mAP logged for the fp32 EMA| (fp16 storage, fp16 autocast)
SAME_FILE_TOLERANCE = 1e-4  # Trainer.validate vs YOLO(best.pt).val() on the same file, every key
WEAK_MAP50 = 0.005  # below this logged mAP50 the comparisons are nearly zeros against zeros
PRECISIONS = ("32-true", "16-mixed")  # fit order: the 16-mixed speed run then sits next to native's
MIN_START_S = 10.0  # do not start a run with less of the budget left
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}  # read by Ultralytics at import: no network probes


# ------------------------------------------------------------------------------------------- one run per process
def _now() -> float:
    """Wall-clock seconds once the GPU's queued work is done (when CUDA is in use), so spans hold their kernels."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def _uses_cuda(args: argparse.Namespace) -> bool:
    """Whether this run trains on CUDA."""
    import torch

    return args.accelerator == "gpu" and torch.cuda.is_available()


def _reset_peak_memory(args: argparse.Namespace) -> None:
    """Start a new peak-memory window on the GPU."""
    import torch

    if _uses_cuda(args):
        torch.cuda.reset_peak_memory_stats()


def _device_summary(args: argparse.Namespace) -> dict[str, Any]:
    """Peak GPU memory (MiB) since the last reset, and the device's name."""
    import torch

    if not _uses_cuda(args):
        return {"peak_mib": None, "device": f"CPU ({os.cpu_count()} cores)"}
    return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20, "device": torch.cuda.get_device_name()}


def _rates(args: argparse.Namespace, epochs: list[float], validations: list[float]) -> dict[str, float]:
    """Training and validation images/s over the steady epochs and validations (the first of each excluded)."""
    return {
        "train_ips": args.images / statistics.mean(epochs[1:]),
        "val_ips": args.val_images / statistics.mean(validations[1:]),
    }


def run_fit(args: argparse.Namespace) -> dict[str, Any]:
    """yolo-lightning: ``Trainer.fit`` at ``--precision`` with UltralyticsCheckpoint, timed by a callback."""
    import lightning as L
    from ultralytics.utils import NUM_THREADS

    from yolo_lightning import YOLODataModule, YOLOModule
    from yolo_lightning.callbacks import UltralyticsCheckpoint

    class Timer(L.Callback):
        """Epochs up to their in-epoch validation, and validations from start to end."""

        def __init__(self) -> None:
            """No epochs or validations timed yet."""
            self.epochs: list[float] = []
            self.validations: list[float] = []
            self.epoch_start: float | None = None
            self.validation_start = 0.0

        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """An epoch's batches begin."""
            self.epoch_start = _now()

        def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """A validation begins, and with it the end of the epoch's batches."""
            self.validation_start = _now()
            if self.epoch_start is not None:  # the epoch's batches end where its validation begins
                self.epochs.append(self.validation_start - self.epoch_start)
                self.epoch_start = None

        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """Like native's on_val_start..on_val_end: the loop, the metrics, the logging and the printed table."""
            self.validations.append(_now() - self.validation_start)

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            """Close the epoch's span if no validation did."""
            if self.epoch_start is not None:  # an epoch without validation
                self.epochs.append(_now() - self.epoch_start)
                self.epoch_start = None

    if args.accelerator == "cpu":  # like for like: the thread count Ultralytics' select_device("cpu") sets
        import torch

        torch.set_num_threads(NUM_THREADS)
    timer = Timer()
    module = YOLOModule(model=MODEL, nbs=args.batch, plots=False, **RECIPE)
    datamodule = YOLODataModule(
        data=args.data, imgsz=args.imgsz, batch=args.batch, workers=args.workers, seed=0, close_mosaic=0
    )
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, deterministic="warn", max_epochs=args.epochs,
        logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[timer, UltralyticsCheckpoint()], default_root_dir=args.root,
    )  # fmt: skip
    L.seed_everything(0, verbose=False)
    _reset_peak_memory(args)
    trainer.fit(module, datamodule)
    best = Path(args.root) / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"UltralyticsCheckpoint wrote no {best}")
    return {
        **_rates(args, timer.epochs, timer.validations), **_device_summary(args),
        "precision": str(trainer.precision), "best_pt": str(best),
    }  # fmt: skip


def run_native(args: argparse.Namespace) -> dict[str, Any]:
    """Ultralytics' DetectionTrainer: ``YOLO(MODEL).train(...)`` with AMP on CUDA, timed by its callbacks."""
    import ultralytics.engine.trainer
    from ultralytics import YOLO

    # Its AMP check downloads yolo26n.pt; offline, Ultralytics skips it and keeps AMP on, as this does without trying.
    ultralytics.engine.trainer.check_amp = lambda model: True
    epochs: list[float] = []
    validations: list[float] = []
    starts: dict[str, float] = {}
    model = YOLO(MODEL)
    model.add_callback("on_train_epoch_start", lambda trainer: starts.update(epoch=_now()))
    model.add_callback("on_train_epoch_end", lambda trainer: epochs.append(_now() - starts["epoch"]))
    model.add_callback("on_val_start", lambda validator: starts.update(val=_now()))
    model.add_callback("on_val_end", lambda validator: validations.append(_now() - starts["val"]))
    cuda = _uses_cuda(args)
    _reset_peak_memory(args)
    model.train(
        data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, nbs=args.batch, workers=args.workers,
        device=0 if cuda else "cpu", amp=cuda, plots=False, verbose=False, project=str(Path(args.root).parent),
        name=Path(args.root).name, exist_ok=True, seed=0, close_mosaic=0, **RECIPE,
    )  # fmt: skip
    # validations[args.epochs] is train()'s final re-validation of best.pt, not an epoch's
    precision = "amp" if cuda else "fp32"
    return {**_rates(args, epochs, validations[: args.epochs]), **_device_summary(args), "precision": precision}


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """For each ``--weights`` best.pt: its logged metrics, ``YOLO(best.pt).val()`` and yolo-lightning's ``validate``."""
    import lightning as L
    import torch
    from ultralytics import YOLO

    from yolo_lightning import YOLODataModule, YOLOModule

    # Both validations in strict float32 and NCHW (YOLO.val's layout on CUDA): TF32 convolutions (10-bit mantissa) and
    # another memory format pick other kernels, whose rounding can reorder near-tied detections between the two.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    results = {}
    for i, weights in enumerate(args.weights):
        checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
        ultralytics = YOLO(weights).val(
            data=args.data, imgsz=args.imgsz, batch=2 * args.batch, device=0 if _uses_cuda(args) else "cpu",
            workers=args.workers, plots=False, verbose=False, project=args.root, name=f"val{i}", exist_ok=True,
        ).results_dict  # fmt: skip
        trainer = L.Trainer(
            accelerator=args.accelerator, devices=1, precision="32-true", logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(Path(args.root) / f"validate{i}"),
        )  # fmt: skip
        datamodule = YOLODataModule(data=args.data, imgsz=args.imgsz, batch=args.batch, workers=args.workers)
        trainer.validate(YOLOModule(model=weights, plots=False, channels_last=False), datamodule, verbose=False)
        results[weights] = {
            "epoch": checkpoint["epoch"],
            "logged": {name: float(checkpoint["train_metrics"][key]) for name, key in KEYS.items()},
            "ultralytics": {name: float(ultralytics[key]) for name, key in KEYS.items()},
            "lightning": {name: float(trainer.callback_metrics[key]) for name, key in KEYS.items()},
        }
    return {"checks": results, **_device_summary(args)}


RUNNERS = {"fit": run_fit, "native": run_native, "check": run_check}


# ------------------------------------------------------------------------------------------------- orchestration
class Budget:
    """The hard wall-clock limit of the whole invocation."""

    def __init__(self, seconds: float) -> None:
        """Start counting ``seconds`` from now."""
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left."""
        return self.deadline - time.monotonic()


def launch(
    name: str, extra: list[str], args: argparse.Namespace, data: Path, out: Path, budget: Budget
) -> dict[str, Any]:
    """Run one runner in a fresh process (killed with its loader workers at the deadline); its JSON, or ``error``."""
    if budget.left() < MIN_START_S:
        return {"error": f"not started: under {MIN_START_S:.0f} s left of the {args.budget_s:.0f} s budget"}
    command = [
        sys.executable, __file__, "--runner", *extra, "--data", str(data), "--root", str(out / name),
        "--accelerator", args.accelerator, "--imgsz", str(args.imgsz), "--batch", str(args.batch),
        "--epochs", str(args.epochs), "--images", str(args.images), "--val-images", str(args.val_images),
        "--workers", str(args.workers),
    ]  # fmt: skip
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / f"{name}.out", logs / f"{name}.err"
    env = {**os.environ, **OFFLINE_ENV}
    start = time.monotonic()
    print(f"gpu_check: {name} ({budget.left():.0f} s of budget left)", file=sys.stderr, flush=True)
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=REPO, start_new_session=True)
        try:
            process.wait(timeout=budget.left())
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own process group: the runner and its loader workers
            process.wait()
            return {"error": f"killed after {time.monotonic() - start:.0f} s: the {args.budget_s:.0f} s budget ran out"}
    print(f"gpu_check: {name} done in {time.monotonic() - start:.0f} s, exit {process.returncode}", file=sys.stderr)
    lines = [line for line in stdout_path.read_text().splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        last = [line for line in stderr_path.read_text().splitlines() if line.strip()] or ["(no output)"]
        return {"error": f"exit {process.returncode} ({stderr_path}): {last[-1].strip()[:300]}"}
    return json.loads(lines[-1])


def check_rows(label: str, check: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Table rows for one best.pt (logged vs YOLO.val, Trainer.validate vs YOLO.val) and the failures among them."""
    logged, theirs, ours = check["logged"], check["ultralytics"], check["lightning"]
    failures = []
    logged_diff = {name: abs(theirs[name] - logged[name]) for name in KEYS}
    logged_ok = all(logged_diff[name] <= LOGGED_TOLERANCE for name in CHECKED)
    weak = f" (weak: logged mAP50 < {WEAK_MAP50})" if logged["mAP50"] < WEAK_MAP50 else ""
    if not logged_ok:
        failures.append(f"{label}: YOLO(best.pt).val() differs from the logged metrics by more than {LOGGED_TOLERANCE}")
    same_diff = max(abs(theirs[name] - ours[name]) for name in KEYS)
    same_ok = same_diff <= SAME_FILE_TOLERANCE
    if not same_ok:
        failures.append(f"{label}: Trainer.validate and YOLO(best.pt).val() differ by {same_diff:.1e} on one file")
    rows = [
        f"| {label} best.pt (epoch {check['epoch']}): `YOLO(best.pt).val()` vs logged | {_metrics(theirs)} | "
        f"logged: {_metrics(logged)} | {_metrics(logged_diff, '.1e')} | mAP50, mAP50-95 within {LOGGED_TOLERANCE} "
        f"(P, R reported) | {'PASS' if logged_ok else '**FAIL**'}{weak} |",
        f"| {label} best.pt: `Trainer(precision='32-true').validate` vs `YOLO(best.pt).val()` | {_metrics(theirs)} | "
        f"{_metrics(ours)} | max {same_diff:.1e} | within {SAME_FILE_TOLERANCE:g} | "
        f"{'PASS' if same_ok else '**FAIL**'} |",
    ]  # fmt: skip
    return rows, failures


def _metrics(values: dict[str, float], spec: str = ".4f") -> str:
    """``mAP50 0.1234, mAP50-95 0.0567, P ..., R ...``."""
    return ", ".join(f"{name} {values[name]:{spec}}" for name in KEYS)


def speed_rows(native: dict[str, Any], lightning: dict[str, Any], fp32: dict[str, Any]) -> list[str]:
    """Throughput and memory rows, yolo-lightning (16-mixed) / native, against the goals."""
    rows = []
    for key, label, goal, higher_is_better in (
        ("train_ips", "train images/s", 1.0, True),
        ("val_ips", "validation images/s", 1.0, True),
        ("peak_mib", "peak GPU memory, MiB (`max_memory_allocated`)", 1.1, False),
    ):
        if "error" in native or "error" in lightning or native[key] is None or lightning[key] is None:
            rows.append(f"| {label} | {_value(native, key)} | {_value(lightning, key)} | | | n/a |")
            continue
        ratio = lightning[key] / native[key]
        met = ratio >= goal if higher_is_better else ratio <= goal
        rows.append(
            f"| {label} | {native[key]:.1f} | {lightning[key]:.1f} | **{ratio:.2f}x** | "
            f"{'>=' if higher_is_better else '<='} {goal}x | {'meets goal' if met else 'misses goal'} |"
        )
    fp32_ips = _value(fp32, "train_ips")
    rows.append(f"| train images/s, yolo-lightning 32-true (no AMP, for reference) | | {fp32_ips} | | | |")
    return rows


def _value(run: dict[str, Any], key: str) -> str:
    """A run's number for the table, or what stood in its way."""
    if "error" in run:
        return "(no result)"
    return "n/a (no CUDA)" if run[key] is None else f"{run[key]:.1f}"


def main() -> None:
    """Parse the options; run one runner (``--runner``) or the whole check, then print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="per run, >= 2 (the first is not timed)")
    parser.add_argument("--images", type=int, default=256, help="training images in the synthetic dataset")
    parser.add_argument("--val-images", type=int, default=64, help="validation images in the synthetic dataset")
    parser.add_argument("--workers", type=int, default=8, help="loader workers (both trainers)")
    parser.add_argument("--out", type=Path, help="folder for the dataset, runs and logs (default: a new temporary one)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="hard limit for the whole invocation, seconds")
    parser.add_argument("--runner", choices=tuple(RUNNERS), help="(internal: run one runner in this process)")
    parser.add_argument("--precision", choices=PRECISIONS, help="(internal: the fit's precision)")
    parser.add_argument("--weights", nargs="+", help="(internal: the best.pt files to check)")
    parser.add_argument("--data", help="(internal)")
    parser.add_argument("--root", help="(internal)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch and validation are not timed")
    if args.runner:
        print(json.dumps(RUNNERS[args.runner](args)))
        return

    budget = Budget(args.budget_s)
    out = (args.out or Path(tempfile.mkdtemp(prefix="yolo_lightning_gpu_check_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(OFFLINE_ENV)  # before anything imports ultralytics
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics_config"))
    from yolo_lightning.synthetic import synthetic_data_yaml  # places Ultralytics' fonts: no font download later

    import lightning
    import torch
    import ultralytics

    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU machine, or pass --accelerator cpu for a smoke test")
    data = synthetic_data_yaml(out / "data", n_train=args.images, n_val=args.val_images, imgsz=args.imgsz, seed=0)
    fits = {p: launch(f"lightning-{p}", ["fit", "--precision", p], args, data, out, budget) for p in PRECISIONS}
    native = launch("native", ["native"], args, data, out, budget)
    weights = [run["best_pt"] for run in fits.values() if "error" not in run]
    check = launch("check", ["check", "--weights", *weights], args, data, out, budget) if weights else {"checks": {}}

    rows, failures = [], []
    for name, run in {**{f"yolo-lightning {p}": fits[p] for p in PRECISIONS}, "native": native, "check": check}.items():
        if "error" in run:
            rows.append(f"| run: {name} | | | | completes | **FAIL**: {run['error'].replace('|', '/')} |")
            failures.append(f"{name}: {run['error']}")
    for precision, fit in fits.items():
        if "error" not in fit and fit["best_pt"] in check.get("checks", {}):
            used = fit["precision"] if fit["precision"] == precision else f"{precision} (ran as {fit['precision']})"
            new_rows, new_failures = check_rows(used, check["checks"][fit["best_pt"]])
            rows += new_rows
            failures += new_failures
    rows += speed_rows(native, fits["16-mixed"], fits["32-true"])

    device = next((run["device"] for run in (*fits.values(), native, check) if "device" in run), "(no run finished)")
    print(
        f"\n{datetime.date.today()}, {device}: torch {torch.__version__}, lightning {lightning.__version__}, "
        f"ultralytics {ultralytics.__version__}. {MODEL}, {args.imgsz} px, batch {args.batch}, {args.images} train / "
        f"{args.val_images} val images, {args.epochs} epochs, workers {args.workers}; yolo-lightning 16-mixed "
        f"(deterministic='warn') vs native amp={args.accelerator == 'gpu'}; rates without the first epoch and the "
        f"first validation.\n"
    )  # fmt: skip
    print("| check or measure | Ultralytics | yolo-lightning | difference or ratio | target | result |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nruns and logs: {out}", file=sys.stderr)
    if failures:
        print("gpu_check: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("gpu_check: all checks passed", file=sys.stderr)


if __name__ == "__main__":
    main()
