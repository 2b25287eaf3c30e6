"""``yolo-lightning`` command line: LightningCLI over YOLOModule and YOLODataModule."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from yolo_lightning.callbacks import UltralyticsCheckpoint
from yolo_lightning.datamodule import YOLODataModule
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.export import export_ultralytics
from yolo_lightning.hardware import default_precision
from yolo_lightning.module import YOLOModule

DEFAULT_RUN_DIR = "runs/detect/train"  # weights land in runs/detect/train/weights/, as with Ultralytics
RESULT_KEYS = (
    "metrics/precision(B)", "metrics/recall(B)", "metrics/F1(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)", "fitness",
    "metrics/coco/mAP50(B)", "metrics/coco/mAP50-95(B)",
)  # fmt: skip  (printed when logged; per-class values are in the table printed at each validation)


class YOLOLightningCLI(LightningCLI):
    """LightningCLI with yolo-lightning's classes, an Ultralytics run folder and best.pt/last.pt on by default."""

    def add_arguments_to_parser(self, parser) -> None:
        """Always-on ``--checkpoint.*`` (UltralyticsCheckpoint) and ``runs/detect/train`` as the run folder."""
        parser.add_lightning_class_args(UltralyticsCheckpoint, "checkpoint")
        parser.set_defaults({"trainer.default_root_dir": DEFAULT_RUN_DIR})

    def before_instantiate_classes(self) -> None:
        """Without ``--trainer.precision``: Ultralytics' ``amp=True`` default, i.e. ``16-mixed`` on CUDA, else ``32-true``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.precision is None:
            config.trainer.precision = default_precision(config.trainer.accelerator)

    def after_fit(self) -> None:
        """Print the last validation's metrics."""
        self._print_results("fit")

    def after_validate(self) -> None:
        """Print the validation metrics."""
        self._print_results("validate")

    def _print_results(self, stage: str) -> None:
        metrics = self.trainer.callback_metrics
        lines = [f"  {key:<24} {float(metrics[key]):.4f}" for key in RESULT_KEYS if key in metrics]
        checkpoint = self.trainer.checkpoint_callback
        if stage == "fit" and isinstance(checkpoint, UltralyticsCheckpoint) and checkpoint.best_model_score is not None:
            best = Path(checkpoint.best_model_path).with_suffix(".pt")
            lines.append(f"  best {checkpoint.monitor} {float(checkpoint.best_model_score):.4f}: {best}")
        if lines:
            rank_zero_info(f"yolo-lightning {stage} results:\n" + "\n".join(lines))


def export_main(args: list[str]) -> None:
    """``yolo-lightning export --ckpt_path X.ckpt --out best.pt``: write an Ultralytics checkpoint."""
    parser = argparse.ArgumentParser(prog="yolo-lightning export", description=export_ultralytics.__doc__)
    parser.add_argument("--ckpt_path", required=True, help="a yolo-lightning .ckpt file or a run folder")
    parser.add_argument("--out", required=True, help="the Ultralytics .pt file to write")
    options = parser.parse_args(args)
    rank_zero_info(f"Wrote {export_ultralytics(options.ckpt_path, options.out)}")


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``yolo-lightning`` console script; bad input exits with one line, status 2."""
    argv = sys.argv[1:] if args is None else args
    try:
        if argv[:1] == ["export"]:
            export_main(argv[1:])
        else:  # args=None: LightningCLI reads sys.argv itself (passing both makes it warn)
            YOLOLightningCLI(YOLOModule, YOLODataModule, save_config_kwargs={"overwrite": True}, args=args)
    except Exception as error:  # a ConfigurationError may arrive wrapped (jsonargparse instantiating a callback)
        cause = _configuration_error(error)
        if cause is None:
            raise
        sys.stderr.write(f"yolo-lightning: error: {cause}\n")
        raise SystemExit(2) from None


def _configuration_error(error: BaseException | None) -> ConfigurationError | None:
    """The ConfigurationError in an exception's cause/context chain, if any."""
    while error is not None and not isinstance(error, ConfigurationError):
        error = error.__cause__ or error.__context__
    return error


if __name__ == "__main__":
    main()
