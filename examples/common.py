"""What every example script shares: its command-line options and the final metrics printout."""

from __future__ import annotations

import argparse

import lightning as L

METRIC_KEYS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")


def example_parser(
    description: str, epochs: int | None, root: str, model: str = "yolo26n.yaml", data: str = "synthetic"
) -> argparse.ArgumentParser:
    """An ArgumentParser with the options every example takes (CI shortens runs with ``--epochs`` and ``--data``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--model", default=model)
    parser.add_argument("--data", default=data, help="a data.yaml path, or 'synthetic[<N>]' (N training images)")
    parser.add_argument("--root", default=root, help="Lightning's default_root_dir")
    return parser


def print_metrics(trainer: L.Trainer, keys: tuple[str, ...] = METRIC_KEYS) -> None:
    """Print the last validation's values of ``keys``, one per line."""
    for key in keys:
        print(f"{key:<28} {float(trainer.callback_metrics[key]):.4f}")


def print_param_groups(trainer: L.Trainer) -> None:
    """Print each optimizer parameter group's section (head/backbone), kind, size and final learning rate."""
    for group in trainer.optimizers[0].param_groups:
        print(f"{group['section']:>8}/{group['param_group']:<6} {len(group['params']):>4} tensors  lr {group['lr']:.3g}")

