"""``yolo-lightning`` command line: LightningCLI over YOLOModule and YOLODataModule, plus ``export`` and ``optimize``."""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from yolo_lightning.assets import weights_file
from yolo_lightning.callbacks import RunReport, UltralyticsCheckpoint, UltralyticsPredictionWriter
from yolo_lightning.checkpoint_export import check_known_hyperparameters, export_ultralytics
from yolo_lightning.datamodule import YOLODataModule
from yolo_lightning.errors import ConfigurationError, TrainingError
from yolo_lightning.hardware import default_precision
from yolo_lightning.hyperparameters import DATAMODULE_ARGS, MODULE_ARGS
from yolo_lightning.models import model_config
from yolo_lightning.module import YOLOModule
from yolo_lightning.run_folder import (
    WEIGHTS,
    claim_run_folder,
    default_run_folder,
    move_run_folder,
    run_folder_of,
)
from yolo_lightning.tasks import task_of

DEFAULT_EPOCHS = 100  # Ultralytics' epochs (Lightning's max_epochs default is 1000)
EXPORT_HELP = (
    "export: yolo-lightning export --ckpt_path runs/detect/train/weights/best.ckpt --out best.pt (see --help); "
    "optimize: yolo-lightning optimize --data data.yaml --output s3://bucket/ds (streaming, see --help)"
)
# Ultralytics train arguments that Lightning (or a yolo-lightning callback) owns on this command line.
CLI_EQUIVALENTS = {
    "epochs": "--trainer.max_epochs", "time": "--trainer.max_time", "device": "--trainer.accelerator / --trainer.devices",
    "amp": "--trainer.precision (16-mixed, bf16-mixed, 32-true)", "deterministic": "--trainer.deterministic",
    "resume": "--ckpt_path runs/<task>/train/weights/last.ckpt", "project": "--trainer.default_root_dir",
    "name": "--trainer.default_root_dir", "exist_ok": "--checkpoint.exist_ok", "save_period": "--checkpoint.save_period",
    "patience": "--trainer.callbacks+=EarlyStopping --trainer.callbacks.monitor fitness --trainer.callbacks.mode max "
    "--trainer.callbacks.patience N", "val": "--trainer.check_val_every_n_epoch", "pretrained": "--model.model <.pt>",
    "optimizer": "--model.optimizer (Ultralytics' recipe: SGD, AdamW, auto...)", "lr_scheduler": "--model.cos_lr",
    "save_txt": "--predictions.save_txt", "save_conf": "--predictions.save_conf",
}  # fmt: skip
# Argument groups whose options a misspelt one is compared with, and the classes that define them.
GROUPS = {"model": YOLOModule, "data": YOLODataModule, "trainer": L.Trainer, "checkpoint": UltralyticsCheckpoint,
          "predictions": UltralyticsPredictionWriter}  # fmt: skip


def _is_summary_key(key: str) -> bool:
    """Printed after fit/validate: the mean metrics and fitness (per-class values are in the printed table)."""
    return key == "fitness" or (key.startswith("metrics/") and (key.count("/") == 1 or key.startswith("metrics/coco/")))


class SaveConfigInRunFolder(SaveConfigCallback):
    """LightningCLI's ``config.yaml``, saved into this run's own folder, which global rank 0 claims first.

    The claim waits for the Trainer's ``setup``, when the processes of every launcher (Lightning's own DDP, torchrun,
    SLURM, several nodes) are connected: global rank 0 claims ``run_folder`` (or the next free one, ``train2``...) and
    every process gets that path as claimed, so a relative one lands under each node's own current folder.

    Args:
        run_folder: The folder to claim; None: the Trainer's folder is already this run's (resuming, or given).
        marker: ``claim_run_folder``'s marker: ``weights`` for a training run, None for a new evaluation folder.
        exist_ok: Use ``run_folder`` even if another run did (``--checkpoint.exist_ok``).
    """

    def __init__(self, *args: Any, run_folder: str | Path | None = None, marker: str | None = WEIGHTS,
                 exist_ok: bool = False, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.run_folder = run_folder
        self.marker = marker
        self.exist_ok = exist_ok

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Claim the run folder (at the first setup), make it every process's, then save the config into it."""
        if self.run_folder is not None and not self.already_saved:
            claimed = claim_run_folder(self.run_folder, self.exist_ok, self.marker) if trainer.is_global_zero else None
            move_run_folder(trainer, Path(trainer.strategy.broadcast(claimed)))  # as claimed: relative stays relative
            for callback in trainer.callbacks:  # the folder is this run's: fitting must not move on to the next one
                if isinstance(callback, UltralyticsCheckpoint) and callback._default_layout:  # not a dirpath of its own
                    callback.exist_ok = True
        self.config = _without_secrets(self.config)
        super().setup(trainer, pl_module, stage)


def _without_secrets(config: Any) -> Any:
    """The config with ``--data.storage_options`` values other than the endpoint and region masked: config.yaml is a
    run-folder file others read, not a credentials store."""
    subcommand = config.get("subcommand") if hasattr(config, "get") else None
    key = f"{subcommand}.data.storage_options" if subcommand else "data.storage_options"
    options = config.get(key) if hasattr(config, "get") else None
    if not options:
        return config
    config = config.clone()
    config[key] = {k: v if k in {"endpoint_url", "region_name"} else "***" for k, v in options.items()}
    return config


class YOLOLightningCLI(LightningCLI):
    """LightningCLI with yolo-lightning's classes and Ultralytics' habits: best.pt/last.pt on by default, run folders
    ``runs/<task>/<train|val|test|predict>`` (``train2``... when taken), 100 epochs, AMP on CUDA, predictions saved,
    Ultralytics ``.pt`` files accepted by ``validate``/``test``/``predict``, and one-line errors.

    The optimizer is YOLOModule's (``--model.optimizer``, Ultralytics' recipe), so LightningCLI's ``--optimizer`` and
    ``--lr_scheduler`` options are not offered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("save_config_callback", SaveConfigInRunFolder)
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False, "epilog": EXPORT_HELP})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        """Always-on ``--checkpoint.*`` (UltralyticsCheckpoint) and ``--predictions.*`` (saved predictions)."""
        parser.add_lightning_class_args(UltralyticsCheckpoint, "checkpoint")
        parser.add_lightning_class_args(UltralyticsPredictionWriter, "predictions")
        parser.set_defaults({"trainer.max_epochs": DEFAULT_EPOCHS})

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """LightningCLI's, without the always-on ``--checkpoint`` callback under ``--trainer.enable_checkpointing
        false`` (Lightning refuses a ModelCheckpoint there; LightningCLI's own method offers no way to drop it)."""
        callbacks = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if trainer_config.get("enable_checkpointing") is False:
            callbacks = [c for c in callbacks if not isinstance(c, UltralyticsCheckpoint)]
        return self._instantiate_trainer(trainer_config, callbacks)

    # ------------------------------------------------------------------------------------------- configuration
    def _parse_ckpt_path(self) -> None:
        """Take the checkpoint's hyper-parameters, as LightningCLI does, after checking them against the command line;
        an Ultralytics ``.pt`` becomes the model to evaluate.

        A ``--model.model`` that differs from the checkpoint's is an error naming both; other module arguments given
        with other values are ignored with a warning (the run continues as it was configured); hyper-parameters this
        version does not know mean the checkpoint comes from a newer yolo-lightning, and the error says so.
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        ckpt_path = config.get("ckpt_path") if config is not None else None
        if ckpt_path and str(ckpt_path).endswith(".pt"):
            self._use_ultralytics_weights(config, subcommand, ckpt_path)
            return
        if ckpt_path and Path(ckpt_path).is_file():
            self._check_against_checkpoint(Path(ckpt_path), config.model)
        super()._parse_ckpt_path()

    @staticmethod
    def _use_ultralytics_weights(config: Namespace, subcommand: str, weights: str) -> None:
        """``--ckpt_path best.pt`` (Ultralytics' format): evaluate those weights (``--model.model best.pt``)."""
        if subcommand == "fit":
            raise ConfigurationError(
                f"--ckpt_path {weights}: an Ultralytics .pt holds weights, not a run to resume; start a new run from "
                f"them with --model.model {weights}, or resume with a .ckpt (weights/last.ckpt)."
            )
        config.model.model, config.ckpt_path = weights_file(weights), None  # official weights by name download

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

    def before_instantiate_classes(self) -> None:
        """Ultralytics' ``amp=True`` default without ``--trainer.precision`` (``16-mixed`` on CUDA, else ``32-true``),
        this run's own run folder, and a warning when validating weights nobody trained."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.precision is None:
            config.trainer.precision = default_precision(config.trainer.accelerator)
        model = config.model
        if self.subcommand in {"validate", "test", "predict"} and not config.get("ckpt_path"):
            if str(model.model_yaml or model.model).endswith((".yaml", ".yml")) and not model.model_yaml:
                rank_zero_warn(
                    f"{self.subcommand} with --model.model {model.model} and no --ckpt_path: the weights are random. "
                    f"Pass --ckpt_path runs/.../weights/best.ckpt (or best.pt)."
                )
        if self.subcommand is not None:
            self._choose_run_folder(config)

    def _choose_run_folder(self, config: Namespace) -> None:
        """Resuming: the checkpoint's run folder. Else, when fitting or without ``--trainer.default_root_dir``, a folder
        of this run's own: the given one (or ``runs/<task>/<train|val|test|predict>``) if free (or
        ``--checkpoint.exist_ok``), else the next free one (``train2``, ``val2``...), claimed by SaveConfigInRunFolder
        before anything (the saved config, logs) is written into it."""
        given = config.trainer.default_root_dir
        task = task_of(model_config(config.model.model_yaml or config.model.model), config.model.task).name
        root = Path(given) if given is not None else default_run_folder(task, self.subcommand)
        ckpt_path = config.get("ckpt_path")
        fitting = self.subcommand == "fit"
        if fitting and ckpt_path:
            root = (run_folder_of(ckpt_path) if Path(ckpt_path).is_file() else None) or root
            config.trainer.default_root_dir = str(root)
        elif fitting or given is None:
            # Claimed once every process of the run exists (only then can they agree on one folder); until then the
            # Trainer's folder is the given one or the current folder, where Lightning's loggers start
            exist_ok = fitting and config.checkpoint.exist_ok
            claim = {"run_folder": root, "marker": WEIGHTS if fitting else None, "exist_ok": exist_ok}
            self.save_config_kwargs = {**self.save_config_kwargs, **claim}

    # --------------------------------------------------------------------------------------------- results
    def after_fit(self) -> None:
        """Print the last validation's metrics and where best.pt is."""
        self._print_results("fit")

    def after_validate(self) -> None:
        """Print the validation metrics."""
        self._print_results("validate")

    def _print_results(self, stage: str) -> None:
        """The closing summary: after ``fit``, the last epoch's validation, labelled so, then best.pt's final validation
        (``YOLO(best.pt).val()``'s numbers, the last table printed); after ``validate``, its metrics."""
        blocks = [("", self.trainer.callback_metrics)]
        report = next((c for c in self.trainer.callbacks if isinstance(c, RunReport)), None)
        if stage == "fit":
            blocks = [("last epoch's validation", self.trainer.callback_metrics)]
            blocks += [("best.pt final validation", report.final_metrics)] if report is not None and report.final_metrics else []
        lines = []
        for title, metrics in blocks:
            values = [f"  {key:<24} {float(value):.4f}" for key, value in metrics.items() if _is_summary_key(key)]
            lines += ([f"  {title}:"] if title and values else []) + values
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


def optimize_main(args: list[str]) -> None:
    """``yolo-lightning optimize --data data.yaml --output DIR_OR_URL``: convert a dataset for streaming."""
    from yolo_lightning.streaming import optimize_dataset

    parser = argparse.ArgumentParser(prog="yolo-lightning optimize", description=optimize_dataset.__doc__)
    parser.add_argument("--data", required=True, help="the data.yaml (or classification folder) to convert")
    parser.add_argument("--output", required=True, help="a local folder, s3://bucket/prefix or gs://bucket/prefix")
    parser.add_argument("--task", default=None, help="the labels' task (default: read from the data)")
    parser.add_argument("--num_workers", type=int, default=1, help="LitData's writer processes")
    parser.add_argument("--chunk_bytes", default="8MB", help="size of each chunk (e.g. 8MB, 64MB)")
    parser.add_argument("--overwrite", action="store_true", help="replace an optimized dataset at --output")
    parser.add_argument("--storage_options", type=json.loads, default=None,
                        help='JSON, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\' (s3 keys: AWS_* variables; gs: '
                             'GOOGLE_APPLICATION_CREDENTIALS)')  # fmt: skip
    options = parser.parse_args(args)
    out = optimize_dataset(options.data, options.output, task=options.task, num_workers=options.num_workers,
                           storage_options=options.storage_options, chunk_bytes=options.chunk_bytes,
                           overwrite=options.overwrite)  # fmt: skip
    rank_zero_info(f"Optimized {options.data} into {out}: YOLODataModule(data={out!r}) trains from it.")


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``yolo-lightning`` console script; bad input exits with one line, status 2."""
    argv = sys.argv[1:] if args is None else args
    try:
        if argv[:1] == ["export"]:
            export_main(argv[1:])
        elif argv[:1] == ["optimize"]:
            optimize_main(argv[1:])
        else:  # args=None: LightningCLI reads sys.argv itself (passing both makes it warn)
            YOLOLightningCLI(YOLOModule, YOLODataModule, save_config_kwargs={"overwrite": True}, args=args)
    except argparse.ArgumentError as error:  # LightningCLI's parser (exit_on_error=False): one line, not the usage
        sys.stderr.write(f"yolo-lightning: error: {argument_error(str(error))}\n")
        raise SystemExit(2) from None
    except Exception as error:  # a ConfigurationError may arrive wrapped (jsonargparse instantiating a callback)
        cause = _our_error(error)
        if cause is None:
            raise
        sys.stderr.write(f"yolo-lightning: error: {cause}\n")
        raise SystemExit(2 if isinstance(cause, ConfigurationError) else 1) from None


def argument_error(message: str) -> str:
    """The parser's message on one line; for an unknown option, where it belongs or the closest valid names."""
    first = " ".join(message.split())
    prefix = "unrecognized arguments:"
    if not first.startswith(prefix):
        return f"{first} (yolo-lightning <fit|validate|test|predict> --help lists the options)"
    option = first[len(prefix) :].split()[0]
    name = option.lstrip("-").split("=")[0]
    if name in CLI_EQUIVALENTS:
        return f"unknown option {option}: Ultralytics' {name!r} is {CLI_EQUIVALENTS[name]} here."
    for group, owned in (("model", MODULE_ARGS), ("data", DATAMODULE_ARGS)):
        if name in owned:
            return f"unknown option {option}: it is --{group}.{name} (a {GROUPS[group].__name__} argument)."
    close = difflib.get_close_matches(name, _option_names(), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join('--' + c for c in close)}?" if close else ""
    return f"unknown option {option}.{hint} (yolo-lightning <fit|validate|test|predict> --help lists the options)"


def _option_names() -> list[str]:
    """``group.argument`` for every argument of the CLI's classes (``model.lr0``, ``data.batch``, ``trainer.devices``)."""
    names = []
    for group, cls in GROUPS.items():
        parameters = inspect.signature(cls.__init__).parameters
        names += [f"{group}.{p}" for p in parameters if p not in {"self", "unknown", "args", "kwargs"}]
    return names


def _our_error(error: BaseException | None) -> ConfigurationError | TrainingError | None:
    """The ConfigurationError (bad input) or TrainingError (training cannot go on) in an exception's chain, if any."""
    while error is not None and not isinstance(error, (ConfigurationError, TrainingError)):
        error = error.__cause__ or error.__context__
    return error


if __name__ == "__main__":
    main()
