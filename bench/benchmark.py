"""yolo-lightning vs native ``YOLO(...).train()`` (and vs the compute floor): speed, memory and accuracy, in one run.

    python bench/benchmark.py speed --imgsz 160 --batch 8 --epochs 3 --repeats 2
    python bench/benchmark.py accuracy --epochs 30 --seeds 0 1 2

Every runner uses the torch thread count Ultralytics sets on CPU (cpu_count - 1). Every measurement runs in a
fresh Python process (so peak memory is its own, and no runner inherits another's
warm caches), alternating which trainer goes first in each repeat. Both trainers see the same synthetic data,
model YAML and hyper-parameters.

speed, per runner: training images/s over the epochs after the first (batches only, validation excluded);
validation images/s (in-training validations after the first); peak resident memory of the process; time from
the start of the run (model construction included) to the end of the first training batch. Runners: ``native``
and ``lightning`` at workers=0 (like for like: Ultralytics forces 0 on CPU), ``lightning-workers`` (the DataModule
with ``--workers`` loader processes), and ``floor`` (forward + backward + clip + optimizer step on pre-loaded
batches, no framework, no data loading).

accuracy: final mAP50-95 after the same number of epochs, for each seed, native vs yolo-lightning (workers=0).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RECIPE = dict(optimizer="AdamW", lr0=0.003, warmup_epochs=1)
RUNNERS = ("native", "lightning", "lightning-workers", "floor")


# ------------------------------------------------------------------------------------------- one run per process
def run_native(args: argparse.Namespace) -> dict[str, Any]:
    """Ultralytics' DetectionTrainer: YOLO(model).train(...)."""
    from ultralytics import YOLO

    start = time.perf_counter()
    epochs: list[float] = []
    validations: list[float] = []
    first_step: list[float] = []
    model = YOLO(args.model)

    def batch_end(trainer: Any) -> None:
        if not first_step:
            first_step.append(time.perf_counter() - start)

    model.add_callback("on_train_batch_end", batch_end)
    model.add_callback("on_train_epoch_start", lambda t: setattr(t, "_bench_epoch", time.perf_counter()))
    model.add_callback("on_train_epoch_end", lambda t: epochs.append(time.perf_counter() - t._bench_epoch))
    model.add_callback("on_val_start", lambda v: setattr(v, "_bench_val", time.perf_counter()))
    model.add_callback("on_val_end", lambda v: validations.append(time.perf_counter() - v._bench_val))
    maps: list[float] = []  # each epoch's mAP50-95 (train() itself returns the final re-validation of best.pt)
    model.add_callback("on_fit_epoch_end", lambda t: maps.append(float(t.metrics["metrics/mAP50-95(B)"])))
    model.train(
        data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, nbs=args.batch, workers=0,
        device="cpu", plots=False, verbose=False, project=args.root, name="native", exist_ok=True, seed=args.seed,
        close_mosaic=0, **RECIPE,
    )  # fmt: skip
    return _summary(args, epochs, validations[: args.epochs], first_step, maps[: args.epochs])


def use_ultralytics_cpu_threads() -> None:
    """The intra-op thread count Ultralytics' ``select_device("cpu")`` sets (cpu_count - 1, at most 8): like for like."""
    import torch
    from ultralytics.utils import NUM_THREADS

    torch.set_num_threads(NUM_THREADS)


def run_lightning(args: argparse.Namespace) -> dict[str, Any]:
    """yolo-lightning: Lightning's Trainer.fit with YOLOModule and YOLODataModule."""
    import lightning as L

    from yolo_lightning import YOLODataModule, YOLOModule

    class Timer(L.Callback):
        """Epoch (validation excluded), validation and first-batch times."""

        def __init__(self) -> None:
            self.epochs: list[float] = []
            self.validations: list[float] = []
            self.first_step: list[float] = []
            self.maps: list[float] = []
            self.validated = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.epoch_start, self.validated = time.perf_counter(), 0.0

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if not self.first_step:
                self.first_step.append(time.perf_counter() - start)

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self.validation_start = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            # like native's on_val_start..on_val_end: the loop, the metrics, the logging and the printed table
            self.validations.append(time.perf_counter() - self.validation_start)
            self.validated = self.validations[-1]
            self.maps.append(float(trainer.callback_metrics["metrics/mAP50-95(B)"]))

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # Lightning validates inside the training epoch, before on_train_epoch_end: leave that time out
            self.epochs.append(time.perf_counter() - self.epoch_start - self.validated)

    use_ultralytics_cpu_threads()
    start = time.perf_counter()
    timer = Timer()
    module = YOLOModule(model=args.model, nbs=args.batch, plots=False, **RECIPE)
    datamodule = YOLODataModule(
        data=args.data, imgsz=args.imgsz, batch=args.batch, workers=args.workers, seed=args.seed, close_mosaic=0
    )
    trainer = L.Trainer(
        max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer], default_root_dir=args.root,
    )  # fmt: skip
    L.seed_everything(args.seed, verbose=False)
    trainer.fit(module, datamodule)
    return _summary(args, timer.epochs, timer.validations, timer.first_step, timer.maps)


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Forward + backward + clip + optimizer step on pre-loaded batches: no data loading, no framework."""
    import torch

    from yolo_lightning import YOLODataModule, YOLOModule
    from yolo_lightning.recipe import build_optimizer

    use_ultralytics_cpu_threads()
    datamodule = YOLODataModule(data=args.data, imgsz=args.imgsz, batch=args.batch, workers=0, close_mosaic=0)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    module = YOLOModule(model=args.model, names=datamodule.names, nbs=args.batch, **RECIPE)
    module.model.args = module.ultralytics_args()
    images = len(datamodule.train_dataset)
    optimizer = build_optimizer(module.model, module.model.args, len(datamodule.names), args.batch, images, args.epochs)
    module.model.train()
    for batch in batches:
        batch["img"] = batch["img"].float() / 255
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for batch in batches:
            loss, _ = module.model.loss(batch)
            loss.sum().backward()
            torch.nn.utils.clip_grad_norm_(module.model.parameters(), max_norm=10.0)
            optimizer.step()
            optimizer.zero_grad()
        epochs.append(time.perf_counter() - start)
    return _summary(args, epochs, [], [], [])


def _summary(
    args: argparse.Namespace, epochs: list[float], validations: list[float], first_step: list[float], maps: list[float]
) -> dict[str, Any]:
    """Per-run numbers: steady-state rates (first epoch/validation excluded), peak RSS, first step, mAP50-95s."""
    steady = epochs[1:] or epochs
    return {
        "train_ips": args.images / statistics.mean(steady),
        "val_ips": args.val_images / statistics.mean(validations[1:]) if len(validations) > 1 else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_step_s": first_step[0] if first_step else None,
        "final_map50_95": maps[-1] if maps else None,  # the last epoch's validation
        "best_map50_95": max(maps) if maps else None,  # the best epoch's (what best.pt keeps)
    }


# ------------------------------------------------------------------------------------------------- orchestration
def measure(runner: str, args: argparse.Namespace, data: Path, root: Path, seed: int = 0) -> dict[str, Any]:
    """Run one runner in a fresh process and return its JSON summary."""
    workers = args.workers if runner == "lightning-workers" else 0
    command = [
        sys.executable, __file__, "_run", runner, "--data", str(data), "--root", str(root / f"{runner}-{seed}"),
        "--model", args.model, "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--epochs", str(args.epochs),
        "--images", str(args.images), "--val-images", str(args.val_images), "--workers", str(workers),
        "--seed", str(seed),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{runner} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def speed(args: argparse.Namespace, data: Path, root: Path) -> None:
    """Alternating repeats of every runner; print the markdown table of medians and ratios."""
    results: dict[str, list[dict[str, Any]]] = {runner: [] for runner in RUNNERS}
    for repeat in range(args.repeats):
        order = RUNNERS if repeat % 2 == 0 else RUNNERS[::-1]
        for runner in order:
            results[runner].append(measure(runner, args, data, root))
            print(f"repeat {repeat} {runner}: {results[runner][-1]}", file=sys.stderr)

    def median(runner: str, key: str) -> float | None:
        values = [r[key] for r in results[runner] if r[key] is not None]
        return statistics.median(values) if values else None

    from ultralytics.utils import NUM_THREADS

    print(f"\n{args.model} imgsz={args.imgsz} batch={args.batch} images={args.images} val images={args.val_images} "
          f"epochs={args.epochs} repeats={args.repeats}, lightning-workers: workers={args.workers}, "
          f"torch threads={NUM_THREADS} in every runner")  # fmt: skip
    print("| measure | native | yolo-lightning | yolo-lightning, workers | floor | ratio |")
    print("|---|---|---|---|---|---|")
    n, o, w, f = (median(r, "train_ips") for r in RUNNERS)
    print(f"| train images/s | {n:.1f} | {o:.1f} | {w:.1f} | {f:.1f} | lightning/native **{o / n:.2f}x**; "
          f"per-iteration time: lightning {f / o:.2f}x floor, with workers {f / w:.2f}x floor |")  # fmt: skip
    nv, ov, wv = (median(r, "val_ips") for r in RUNNERS[:3])
    print(f"| validation images/s | {nv:.1f} | {ov:.1f} | {wv:.1f} | | lightning/native **{ov / nv:.2f}x** |")
    nm, om, wm, fm = (median(r, "peak_rss_mb") for r in RUNNERS)
    print(f"| peak RSS, MB (main process) | {nm:.0f} | {om:.0f} | {wm:.0f} | {fm:.0f} | lightning/native **{om / nm:.2f}x** |")
    nf, of, wf = (median(r, "first_step_s") for r in RUNNERS[:3])
    print(f"| time to first step, s | {nf:.1f} | {of:.1f} | {wf:.1f} | | lightning/native {of / nf:.2f}x |")
    print("| all train images/s | " + " | ".join(", ".join(f"{r['train_ips']:.1f}" for r in results[k]) for k in RUNNERS) + " | |")


def accuracy(args: argparse.Namespace, data: Path, root: Path) -> None:
    """Last-epoch and best-epoch mAP50-95 per seed for native and yolo-lightning; print means and spreads."""
    runs: dict[str, list[dict[str, Any]]] = {"native": [], "lightning": []}
    for i, seed in enumerate(args.seeds):
        for runner in ("native", "lightning") if i % 2 == 0 else ("lightning", "native"):
            runs[runner].append(measure(runner, args, data, root, seed))
            print(f"seed {seed} {runner}: {runs[runner][-1]}", file=sys.stderr)
    print(f"\n{args.model} imgsz={args.imgsz} batch={args.batch} images={args.images} epochs={args.epochs}, "
          f"seeds {args.seeds}")  # fmt: skip
    print("| mAP50-95 | runner | per seed | mean | spread (max - min) |")
    print("|---|---|---|---|---|")
    for key, label in (("final_map50_95", "last epoch"), ("best_map50_95", "best epoch")):
        for runner, results in runs.items():
            values = [r[key] for r in results]
            print(f"| {label} | {runner} | {', '.join(f'{v:.3f}' for v in values)} | {statistics.mean(values):.3f} | "
                  f"{max(values) - min(values):.3f} |")  # fmt: skip


def main() -> None:
    """Parse the command and run it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("speed", "accuracy", "_run"))
    parser.add_argument("runner", nargs="?", choices=RUNNERS, help="(internal: the runner of a _run)")
    parser.add_argument("--model", default="yolo26n.yaml")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=64, help="training images in the synthetic dataset")
    parser.add_argument("--val-images", type=int, default=32, help="validation images in the synthetic dataset")
    parser.add_argument(
        "--workers", type=int, default=1, help="loader processes of the lightning-workers runner (1: the core torch leaves)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed", type=int, default=0, help="(internal)")
    parser.add_argument("--data", help="(internal)")
    parser.add_argument("--root", help="(internal)")
    args = parser.parse_args()

    if args.command == "_run":
        run = {"native": run_native, "floor": run_floor}.get(args.runner, run_lightning)
        print(json.dumps(run(args)))
        return
    from yolo_lightning.synthetic import synthetic_data_yaml

    root = Path(tempfile.mkdtemp(prefix="yolo_lightning_bench_"))
    data = synthetic_data_yaml(root / "data", n_train=args.images, n_val=args.val_images, imgsz=args.imgsz)
    (speed if args.command == "speed" else accuracy)(args, data, root)


if __name__ == "__main__":
    main()
