"""Datasets bigger than a disk: optimize a dataset once into LitData's format, then train from it (README "Large
datasets"): python examples/streaming.py --output s3://bucket/ds --storage_options '{"endpoint_url": ...}'.

By default the embedded synthetic dataset goes to a local folder (no bucket needed); ``--data`` takes any data.yaml or
classification folder ``YOLODataModule`` trains on; run it again with ``--overwrite`` (an optimized dataset is
replaced only when asked).
"""

import json
from pathlib import Path

import lightning as L

from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.streaming import optimize_dataset
from yolo_lightning.synthetic import synthetic_data


def main() -> None:
    """Optimize ``--data`` into ``--output``, then Trainer.fit streaming from it, and print the final metrics."""
    parser = example_parser(__doc__, epochs=30, root="runs/streaming", data="synthetic")
    parser.add_argument("--output", default="runs/streaming/optimized", help="a local folder or s3://bucket/prefix")
    parser.add_argument("--storage_options", type=json.loads, default=None, help="JSON: endpoint_url, keys, ...")
    parser.add_argument("--overwrite", action="store_true", help="replace what an earlier run optimized into --output")
    args = parser.parse_args()

    data = synthetic_data("detect", Path(args.root) / "data") if args.data == "synthetic" else args.data
    optimized = optimize_dataset(data, args.output, storage_options=args.storage_options, overwrite=args.overwrite)
    datamodule = YOLODataModule(data=optimized, imgsz=64, batch=16, workers=2, storage_options=args.storage_options)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root)
    trainer.fit(YOLOModule(model=args.model), datamodule)
    print_metrics(trainer)


if __name__ == "__main__":
    main()
