"""Training throughput of yolo-lightning vs native ``YOLO(...).train()`` and vs the compute floor, in one run.

    python bench/benchmark.py --imgsz 160 --batch 8 --epochs 3 --repeats 2

Both trainers see the same synthetic data, model YAML and hyper-parameters, with workers=0 (Ultralytics forces 0
on CPU), alternating repeats (and which one runs first). Throughput is images/s over the training epochs after the first (steady state; no
validation inside the timed span). The floor is forward + backward + optimizer step on pre-loaded batches.
Prints a markdown table of the medians and their ratios (for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from ultralytics import YOLO

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.recipe import build_optimizer
from yolo_lightning.synthetic import synthetic_data_yaml

RECIPE = dict(optimizer="AdamW", lr0=0.003, warmup_epochs=1)


class _EpochTimer(L.Callback):
    """Wall time of each training epoch (batches only)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def native_images_per_second(data: Path, images: int, args: argparse.Namespace, root: Path) -> float:
    """Steady-state training images/s of Ultralytics' DetectionTrainer."""
    seconds: list[float] = []
    model = YOLO(args.model)
    model.add_callback("on_train_epoch_start", lambda t: setattr(t, "_bench_start", time.perf_counter()))
    model.add_callback("on_train_epoch_end", lambda t: seconds.append(time.perf_counter() - t._bench_start))
    model.train(
        data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, nbs=args.batch, workers=0,
        device="cpu", plots=False, verbose=False, project=str(root), name="native", exist_ok=True, **RECIPE,
    )  # fmt: skip
    return images / statistics.mean(seconds[1:])


def lightning_images_per_second(data: Path, images: int, args: argparse.Namespace, root: Path) -> float:
    """Steady-state training images/s of yolo-lightning (Lightning's Trainer.fit)."""
    timer = _EpochTimer()
    trainer = L.Trainer(
        max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer],
        default_root_dir=str(root),
    )  # fmt: skip
    module = YOLOModule(model=args.model, nbs=args.batch, **RECIPE)
    trainer.fit(module, YOLODataModule(data=str(data), imgsz=args.imgsz, batch=args.batch, workers=0))
    return images / statistics.mean(timer.seconds[1:])


def floor_images_per_second(data: Path, args: argparse.Namespace) -> float:
    """Forward + backward + optimizer step on pre-loaded batches: no data loading, no framework."""
    datamodule = YOLODataModule(data=str(data), imgsz=args.imgsz, batch=args.batch, workers=0)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    module = YOLOModule(model=args.model, names=datamodule.names, nbs=args.batch, **RECIPE)
    module.model.args = module._ultralytics_args()
    optimizer = build_optimizer(module.model, module.model.args, len(datamodule.names), args.batch, len(datamodule.train_dataset), args.epochs)
    module.model.train()
    for batch in batches:
        batch["img"] = batch["img"].float() / 255
    for _ in range(2):  # warm-up pass, then the timed pass
        start = time.perf_counter()
        for batch in batches:
            loss, _ = module.model.loss(batch)
            loss.sum().backward()
            torch.nn.utils.clip_grad_norm_(module.model.parameters(), max_norm=10.0)
            optimizer.step()
            optimizer.zero_grad()
        seconds = time.perf_counter() - start
    return len(datamodule.train_dataset) / seconds


def main() -> None:
    """Run the alternating repeats and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolo26n.yaml")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=64, help="training images in the synthetic dataset")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="yolo_lightning_bench_"))
    data = synthetic_data_yaml(root / "data", n_train=args.images, n_val=16, imgsz=args.imgsz)
    native, ours, floor = [], [], []
    for repeat in range(args.repeats):  # alternate who runs first: drifts and in-process after-effects hit both
        runs = [(native, native_images_per_second), (ours, lightning_images_per_second)]
        for results, measure in runs if repeat % 2 == 0 else runs[::-1]:
            results.append(measure(data, args.images, args, root))
        floor.append(floor_images_per_second(data, args))
    n, o, f = (statistics.median(x) for x in (native, ours, floor))
    print(f"\n{args.model} imgsz={args.imgsz} batch={args.batch} images={args.images} epochs={args.epochs} "
          f"repeats={args.repeats}, CPU threads={torch.get_num_threads()}, workers=0")  # fmt: skip
    print("| measure | native | yolo-lightning | floor | yolo-lightning / native | floor / yolo-lightning |")
    print("|---|---|---|---|---|---|")
    print(f"| train images/s (median) | {n:.1f} | {o:.1f} | {f:.1f} | {o / n:.2f}x | {f / o:.2f}x |")
    print(f"| all repeats | {', '.join(f'{x:.1f}' for x in native)} | {', '.join(f'{x:.1f}' for x in ours)} "
          f"| {', '.join(f'{x:.1f}' for x in floor)} | | |")  # fmt: skip


if __name__ == "__main__":
    main()
