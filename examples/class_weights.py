"""Up-weight rare classes in the classification loss: python examples/class_weights.py --power 0.5.

``class_weights="inverse_frequency"`` gives each class ``(max(count) / count) ** power`` over the training labels
(the synthetic 'star' is rare); a list (one weight per class) or a ``{name: weight}`` dict sets them by hand.
"""

import lightning as L
from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule


def main() -> None:
    """Train with inverse-frequency class weights (BCE pos_weight), then print them and the rare class's metrics."""
    parser = example_parser(__doc__, epochs=20, root="runs/class_weights")
    parser.add_argument("--power", type=float, default=1.0, help="exponent on max(count)/count (0.5 dampens)")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(
        model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1,
        class_weights="inverse_frequency", class_weights_power=args.power,
    )  # fmt: skip
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root)
    trainer.fit(model, datamodule)
    names = model.model.names
    print("class weights:", {names[i]: round(w, 3) for i, w in enumerate(model.class_weight_values.tolist())})
    print_metrics(trainer, ("metrics/mAP50-95(B)", "metrics/F1(B)/star", "metrics/recall(B)/star"))


if __name__ == "__main__":
    main()
