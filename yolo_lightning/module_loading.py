"""Rebuild a YOLOModule from a yolo-lightning ``.ckpt``, to validate or test its weights.

It sits above ``module`` in the import graph: nothing that ``module`` imports (a callback, the exporter) may import it.
Exporting a ``.ckpt`` needs no YOLOModule: see ``checkpoint_export``.
"""

from __future__ import annotations

from pathlib import Path

from yolo_lightning.checkpoint_export import read_yolo_checkpoint
from yolo_lightning.module import YOLOModule


def load_yolo_checkpoint(path: str | Path) -> tuple[YOLOModule, int, dict[str, float]]:
    """(YOLOModule with the checkpoint's EMA weights, epoch, last metrics) of a yolo-lightning ``.ckpt``.

    The file is read with ``weights_only=True``, and the network is rebuilt from the architecture the checkpoint
    carries, so the ``.pt``/YAML it started from may be gone.
    """
    saved = read_yolo_checkpoint(path)
    module = YOLOModule(**saved.hyper_parameters)
    module.load_state_dict(saved.state_dict)
    module.model.args = saved.train_args
    return module, saved.epoch, saved.metrics
