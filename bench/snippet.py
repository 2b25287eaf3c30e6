"""The README's Python snippet vs its CLI vs native ``YOLO.train()``, with only the settings a reader sees, on a quiet
machine and on one kept busy by another program; plus the progress bar's cost.

    python bench/snippet.py --epochs 5 --repeats 1

Runners (each a fresh process; no thread or worker setting beyond the README's):
- ``snippet``: ``YOLODataModule(data="synthetic", imgsz=64, batch=16, workers=4)``, ``YOLOModule(model="yolo26n.yaml")``,
  ``L.Trainer(max_epochs=E).fit(model, dm)`` (progress bar on, as by default);
- ``snippet-no-bar``: the same with ``Trainer(enable_progress_bar=False)``: the difference is the bar's cost;
- ``cli``: ``yolo-lightning fit --data.data synthetic --data.imgsz 64 --data.batch 16 --trainer.max_epochs E``;
- ``native``: ``YOLO("yolo26n.yaml").train(data=<the same data.yaml>, imgsz=64, batch=16, epochs=E)``.
Measured: seconds per steady epoch, i.e. neither the first (start-up) nor the last (yolo-lightning plots its last
validation there; native leaves its plots to the final validation after training), from each run's results.csv
``time`` column (training and validation); so ``--epochs`` >= 3
and the wall time of the whole command. "loaded": one other process spins on a core during the run (a shared
machine); "quiet": nothing else runs.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNIPPET = """
import sys
import lightning as L
from yolo_lightning import YOLODataModule, YOLOModule

dm = YOLODataModule(data="synthetic", imgsz=64, batch=16, workers=4)
model = YOLOModule(model="yolo26n.yaml")
L.Trainer(max_epochs=int(sys.argv[1]), default_root_dir=sys.argv[2], enable_progress_bar=sys.argv[3] == "bar").fit(model, dm)
"""
NATIVE = """
import sys
from ultralytics import YOLO
from yolo_lightning.synthetic import synthetic_data_yaml

YOLO("yolo26n.yaml").train(data=str(synthetic_data_yaml()), imgsz=64, batch=16, epochs=int(sys.argv[1]),
                           project=sys.argv[2], name="native", exist_ok=True)
"""
RUNNERS = ("snippet", "snippet-no-bar", "cli", "native")


def command(runner: str, epochs: int, run: Path) -> tuple[list[str], Path]:
    """The runner's command line and the results.csv it writes."""
    if runner.startswith("snippet"):
        bar = "no-bar" if runner.endswith("no-bar") else "bar"
        return [sys.executable, "-c", SNIPPET, str(epochs), str(run), bar], run / "results.csv"
    if runner == "cli":
        return ["yolo-lightning", "fit", "--data.data", "synthetic", "--data.imgsz", "64", "--data.batch", "16",
                "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(run)], run / "results.csv"  # fmt: skip
    return [sys.executable, "-c", NATIVE, str(epochs), str(run)], run / "native" / "results.csv"


def measure(runner: str, epochs: int, run: Path) -> tuple[float, float]:
    """(seconds per steady epoch: neither the first nor the last, wall seconds of the command)."""
    line, results = command(runner, epochs, run)
    start = time.perf_counter()
    done = subprocess.run(line, capture_output=True, text=True, cwd=run.parent)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{runner} failed:\n{done.stderr[-3000:]}")
    with open(results, encoding="utf-8") as file:
        times = [float({k.strip(): v for k, v in row.items()}["time"]) for row in csv.DictReader(file)]
    return (times[-2] - times[0]) / (len(times) - 2), wall


def main() -> None:
    """Every runner, quiet then loaded, alternating the order per repeat; print the markdown table of medians."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be >= 3: steady epochs are neither the first nor the last")
    root = Path(tempfile.mkdtemp(prefix="yolo_lightning_snippet_"))
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for load in ("quiet", "loaded"):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "loaded" else None
        try:
            for repeat in range(args.repeats):
                for runner in RUNNERS if repeat % 2 == 0 else RUNNERS[::-1]:
                    run = root / f"{load}-{runner}-{repeat}"
                    run.mkdir(parents=True)
                    results.setdefault((load, runner), []).append(measure(runner, args.epochs, run))
                    print(load, runner, results[(load, runner)][-1], file=sys.stderr, flush=True)
        finally:
            if spinner is not None:
                spinner.kill()
    print(f"\nyolo26n, data='synthetic' (128/32 images, 64 px), batch 16, {args.epochs} epochs, medians of {args.repeats}")
    print("| machine | runner | s per steady epoch | wall s (whole command) | per epoch vs native |")
    print("|---|---|---|---|---|")
    for load in ("quiet", "loaded"):
        native = statistics.median(e for e, _ in results[(load, "native")])
        for runner in RUNNERS:
            epoch = statistics.median(e for e, _ in results[(load, runner)])
            wall = statistics.median(w for _, w in results[(load, runner)])
            print(f"| {load} | {runner} | {epoch:.2f} | {wall:.1f} | {epoch / native:.2f}x |")


if __name__ == "__main__":
    main()
