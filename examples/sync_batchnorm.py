"""Synchronize BatchNorm statistics across GPUs under DDP: python examples/sync_batchnorm.py --devices 2.

On one device, or on CPUs (where torch's SyncBatchNorm cannot run), the callback keeps plain BatchNorm.
"""

import lightning as L
from torch import nn

from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import SyncBatchNorm


def main() -> None:
    """Train yolo26n on the embedded synthetic dataset with the SyncBatchNorm callback, then print what it did."""
    parser = example_parser(__doc__, epochs=20, root="runs/sync_batchnorm")
    parser.add_argument("--devices", default="auto", help="Lightning's devices: 'auto', a count, or '0,1'")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1)
    sync = SyncBatchNorm()
    trainer = L.Trainer(max_epochs=args.epochs, devices=args.devices, default_root_dir=args.root, callbacks=[sync])
    trainer.fit(model, datamodule)
    if trainer.is_global_zero:
        batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in model.model.modules())
        print(
            f"world size {trainer.world_size}: {sync.converted} layers trained as SyncBatchNorm, "
            f"{batchnorms} BatchNorm2d after fit"
        )
        print_metrics(trainer)


if __name__ == "__main__":
    main()
