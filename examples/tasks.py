"""Train any Ultralytics task on the embedded synthetic dataset, served in that task's format:

    python examples/tasks.py --task segment        # detect, segment, semantic, depth, classify, pose or obb

The task comes from the model (yolo26n-seg.yaml is a segment model), as with Ultralytics; the datamodule serves the
matching dataset (data="synthetic": polygons, per-pixel masks, depth maps, crops, keypoints or rotated boxes of the same
shapes).
"""

import lightning as L

from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import UltralyticsCheckpoint

MODELS = {"detect": "yolo26n.yaml", "segment": "yolo26n-seg.yaml", "semantic": "yolo26n-sem.yaml",
          "depth": "yolo26n-depth.yaml", "classify": "yolo26n-cls.yaml", "pose": "yolo26n-pose.yaml",
          "obb": "yolo26n-obb.yaml"}  # fmt: skip
EPOCHS = {"semantic": 60}  # the shapes' classes come late (mIoU ~0.2 at 30 epochs, ~0.65 at 60); others: 30


def main() -> None:
    """Fit the task's YOLO26 model, then print its metrics (Ultralytics' keys: (B), (M), (P), mIoU, delta1...)."""
    parser = example_parser(__doc__, epochs=None, root="runs/tasks")
    parser.add_argument("--task", choices=sorted(MODELS), default="segment")
    args = parser.parse_args()
    epochs = args.epochs or EPOCHS.get(args.task, 30)

    model = YOLOModule(model=MODELS[args.task], optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1)
    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=0)
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=f"{args.root}/{args.task}",
                        callbacks=[UltralyticsCheckpoint()])  # fmt: skip
    trainer.fit(model, datamodule)
    summary = tuple(k for k in trainer.callback_metrics if k.startswith("metrics/") and k.count("/") == 1)
    print_metrics(trainer, summary)


if __name__ == "__main__":
    main()
