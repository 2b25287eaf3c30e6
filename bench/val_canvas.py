"""What Ultralytics' validation canvas costs a small-image model: best.pt validated as usual and without the frame.

    python bench/val_canvas.py runs/quickstart/weights/best.pt --data synthetic256

Ultralytics validates in rectangular batches padded by half a stride on each side (``pad=0.5``): a 64 px image sits
in a 96 px canvas with a 16 px gray frame that training at 64 px (mosaic off) rarely shows. This prints mAP50 and the
per-class AP50 of the same weights with that padding and with ``pad=0`` (a 64 px canvas, as in training).
"""

from __future__ import annotations

import argparse


def validate(weights: str, data: str, imgsz: int, pad: float) -> tuple[float, list[float]]:
    """mAP50 and per-class AP50 of ``weights`` on ``data``'s validation split, its images padded by ``pad`` strides."""
    from ultralytics import YOLO
    from ultralytics.data import build

    original = build.YOLODataset.__init__

    def padded(self, *args, **kwargs) -> None:
        """YOLODataset with this run's validation padding (training datasets untouched)."""
        original(self, *args, **{**kwargs, "pad": pad} if not kwargs.get("augment") else kwargs)

    build.YOLODataset.__init__ = padded
    try:
        metrics = YOLO(weights).val(data=data, imgsz=imgsz, batch=16, device="cpu", workers=0, plots=False, verbose=False)
    finally:
        build.YOLODataset.__init__ = original
    return float(metrics.box.map50), [round(float(ap), 3) for ap in metrics.box.ap50]


def main() -> None:
    """Validate the weights both ways and print one line each."""
    from yolo_lightning.synthetic import synthetic_source

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="best.pt files")
    parser.add_argument("--data", default="synthetic256", help="data.yaml or synthetic[<N>] (default: synthetic256)")
    parser.add_argument("--imgsz", type=int, default=64)
    args = parser.parse_args()
    for weights in args.weights:
        for pad in (0.5, 0.0):
            map50, per_class = validate(weights, synthetic_source(args.data), args.imgsz, pad)
            print(f"{weights}  pad {pad}: mAP50 {map50:.3f}  per class {per_class}", flush=True)


if __name__ == "__main__":
    main()
