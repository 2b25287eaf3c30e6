"""``yolo-lightning`` command line: LightningCLI over YOLOModule and YOLODataModule."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from yolo_lightning.callbacks import UltralyticsCheckpoint
from yolo_lightning.datamodule import YOLODataModule
from yolo_lightning.errors import ConfigurationError, TrainingError
from yolo_lightning.export import check_known_hyperparameters, export_ultralytics
from yolo_lightning.hardware import default_precision
from yolo_lightning.run_folder import (
    announce_to_child_processes,
    claim_run_folder,
    folder_from_launching_process,
    run_folder_of,
)
from yolo_lightning.models import model_config
from yolo_lightning.module import YOLOModule
from yolo_lightning.tasks import task_of

RUN_FOLDERS = {"fit": "train", "validate": "val", "test": "test", "predict": "predict"}  # runs/<task>/<this>


def _is_summary_key(key: str) -> bool:
    """Printed after fit/validate: the mean metrics and fitness (per-class values are in the printed table)."""
    return key == "fitness" or (key.startswith("metrics/") and (key.count("/") == 1 or key.startswith("metrics/coco/")))


class YOLOLightningCLI(LightningCLI):
    """LightningCLI with yolo-lightning's classes, an Ultralytics run folder and best.pt/last.pt on by default."""

    def add_arguments_to_parser(self, parser) -> None:
        """Always-on ``--checkpoint.*`` (UltralyticsCheckpoint); the run folder defaults to ``runs/<task>/train``."""
        parser.add_lightning_class_args(UltralyticsCheckpoint, "checkpoint")

    def before_instantiate_classes(self) -> None:
        """Ultralytics' ``amp=True`` default without ``--trainer.precision`` (``16-mixed`` on CUDA, else ``32-true``); for
        ``fit``, this run's own run folder."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.precision is None:
            config.trainer.precision = default_precision(config.trainer.accelerator)
        if config.trainer.default_root_dir is None:  # Ultralytics' runs/<task>/<train|val|test|predict>
            model = config.model
            task = task_of(model_config(model.model_yaml or model.model), model.task).name
            config.trainer.default_root_dir = str(Path("runs", task, RUN_FOLDERS.get(self.subcommand, "train")))
        if self.subcommand == "fit":
            self._choose_run_folder(config)

    def _choose_run_folder(self, config: Namespace) -> None:
        """Resuming: the checkpoint's run folder; else the given one if free (or ``--checkpoint.exist_ok``), else the
        next free ``train2``, ``train3``..., claimed before anything (the saved config, logs) is written into it.

        DDP processes that Lightning starts from this one re-run the command: they take the folder claimed here. Under
        an external launcher (torchrun, SLURM) every process starts alone and UltralyticsCheckpoint claims the folder on
        rank 0 when fitting starts.
        """
        root = Path(config.trainer.default_root_dir)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path:
            root = (run_folder_of(ckpt_path) if Path(ckpt_path).is_file() else None) or root
        elif (launched := folder_from_launching_process()) is not None:
            root = launched
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return
        else:
            root = claim_run_folder(root, config.checkpoint.exist_ok)
            announce_to_child_processes(root)
        config.trainer.default_root_dir = str(root)
        config.checkpoint.exist_ok = True  # the folder is this run's: the callback must not move it again

    def _parse_ckpt_path(self) -> None:
        """Take the checkpoint's hyper-parameters, as LightningCLI does, after checking them against the command line.

        A ``--model.model`` that differs from the checkpoint's is an error naming both; other module arguments given
        with other values are ignored with a warning (the run continues as it was configured); hyper-parameters this
        version does not know mean the checkpoint comes from a newer yolo-lightning, and the error says so.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            self._check_against_checkpoint(Path(ckpt_path), self.config[subcommand].model)
        super()._parse_ckpt_path()

    @staticmethod
    def _check_against_checkpoint(ckpt_path: Path, given: Namespace) -> None:
        try:
            checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        except Exception:  # not a Lightning checkpoint: LightningCLI's own loading reports it
            return
        saved = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
        check_known_hyperparameters(saved, checkpoint.get("yolo_lightning", {}).get("version"), ckpt_path)
        defaults = {k: v.default for k, v in inspect.signature(YOLOModule.__init__).parameters.items()}
        for key, value in vars(given).items():
            if key not in saved or key not in defaults or value == defaults[key] or value == saved[key]:
                continue  # not given, or the same
            if key == "model":
                raise ConfigurationError(
                    f"--ckpt_path {ckpt_path} holds a model={saved['model']!r} network, not --model.model {value!r}: "
                    f"drop --model.model to continue that run, or start a new one from its weights "
                    f"(--model.model path/to/best.pt)."
                )
            rank_zero_warn(f"--model.{key} {value!r} is ignored: the run in {ckpt_path} continues with {key}={saved[key]!r}.")

    def after_fit(self) -> None:
        """Print the last validation's metrics."""
        self._print_results("fit")

    def after_validate(self) -> None:
        """Print the validation metrics."""
        self._print_results("validate")

    def _print_results(self, stage: str) -> None:
        metrics = self.trainer.callback_metrics
        lines = [f"  {key:<24} {float(value):.4f}" for key, value in metrics.items() if _is_summary_key(key)]
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
        cause = _our_error(error)
        if cause is None:
            raise
        sys.stderr.write(f"yolo-lightning: error: {cause}\n")
        raise SystemExit(2 if isinstance(cause, ConfigurationError) else 1) from None


def _our_error(error: BaseException | None) -> ConfigurationError | TrainingError | None:
    """The ConfigurationError (bad input) or TrainingError (training cannot go on) in an exception's chain, if any."""
    while error is not None and not isinstance(error, (ConfigurationError, TrainingError)):
        error = error.__cause__ or error.__context__
    return error


if __name__ == "__main__":
    main()
