"""Does yolo-lightning follow DetectionTrainer's training trajectory over a whole run, not just a few iterations?

    python bench/trajectory.py --epochs 30 --images 128

Both trainers start from the same initial weights (yolo26n), use the benchmark's recipe with Ultralytics' default
augmentations, and have Python's, numpy's and torch's global generators seeded at the first epoch's start
(``--reseed every``: at each epoch's start), so mosaic, HSV, flips and affine draw the same numbers on both sides
only if neither trainer draws or reseeds anything the other does not. Prints, per epoch, the largest relative difference of
the per-iteration training losses and both trainers' mAP50-95. Uses the parity harness of ``tests/parity.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from parity import run_lightning, run_ultralytics, save_initial_weights

RECIPE = {"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1, "close_mosaic": 0}  # bench/benchmark.py's


def main() -> None:
    """Run both trainers and print the per-epoch comparison as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--images", type=int, default=128, help="training images in the synthetic dataset")
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reseed", choices=("first", "every"), default="first", help="seed at the first or every epoch")
    args = parser.parse_args()

    from ultralytics.data.utils import check_det_dataset

    from yolo_lightning.synthetic import synthetic_data_yaml

    root = Path(tempfile.mkdtemp(prefix="yolo_lightning_trajectory_"))
    data = synthetic_data_yaml(root / "data", n_train=args.images, n_val=32, imgsz=args.imgsz)
    weights = save_initial_weights("yolo26n.yaml", check_det_dataset(str(data))["names"], root / "init.pt")
    recipe = dict(imgsz=args.imgsz, batch=args.batch, nbs=args.batch, **RECIPE)
    seeding = {"epoch_seed": 7, "seed_once": args.reseed == "first"}
    native = run_ultralytics(weights, data, root / "native", args.epochs, **seeding, **recipe)
    ours, _ = run_lightning(weights, data, root / "lightning", args.epochs, **seeding, **recipe)

    theirs, mine = np.array(native.losses), np.array(ours.losses)
    relative = np.abs(theirs - mine) / np.maximum(np.abs(theirs), 1e-12)
    per_epoch = np.array_split(relative, args.epochs)
    key = "metrics/mAP50-95(B)"
    print(f"\nyolo26n imgsz={args.imgsz} batch={args.batch} images={args.images} epochs={args.epochs}, {RECIPE}, "
          f"generators seeded at {args.reseed} epoch start")  # fmt: skip
    print("| epoch | max relative loss difference | mAP50-95 native | mAP50-95 yolo-lightning |")
    print("|---|---|---|---|")
    for epoch, (diff, n, o) in enumerate(zip(per_epoch, native.epoch_metrics, ours.epoch_metrics, strict=True)):
        print(f"| {epoch} | {diff.max():.1e} | {n[key]:.4f} | {o[key]:.4f} |")
    print(f"identical per-iteration losses: {bool((theirs == mine).all())} ({len(theirs)} iterations)")


if __name__ == "__main__":
    main()
