"""The final validation of ``best.pt``, as Ultralytics' ``final_eval`` and ``YOLO("best.pt").val()`` compute it.

    python -m yolo_lightning.final_validation SETTINGS_JSON METRICS_JSON

runs it in a process of its own (what a DDP run's rank 0 does: Ultralytics' validator would start collectives of its
own inside a process group).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Ultralytics reads these at import and then gathers statistics over a process group: a standalone validation must
# not inherit the DDP rank it was started from.
_DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")


def validate_weights(settings: dict[str, Any]) -> dict[str, float]:
    """``YOLO(weights).val(data=..., imgsz=..., batch=..., ...)`` (its rect loader, fused model and table), as floats.

    ``settings``: ``weights``, ``data``, ``imgsz``, ``batch``, ``device``, ``half`` (Ultralytics' AMP validation on a
    GPU), ``plots`` and ``save_dir`` (the run folder, where its plots go, as ``final_eval`` writes them).
    """
    from ultralytics import YOLO

    save_dir = Path(settings["save_dir"])
    metrics = YOLO(settings["weights"]).val(
        data=settings["data"], imgsz=settings["imgsz"], batch=settings["batch"], device=settings["device"],
        quantize=16 if settings["half"] else None, plots=settings["plots"], project=str(save_dir.parent),
        name=save_dir.name, exist_ok=True,
    )  # fmt: skip
    return {k: float(v) for k, v in metrics.results_dict.items()}


def launched_as_a_rank() -> bool:
    """True when a launcher gave this process a DDP rank (torchrun's ``RANK``...), even a single one: Ultralytics'
    validator would then gather its statistics over a process group that does not exist."""
    return any(name in os.environ for name in _DISTRIBUTED_ENV)


def validate_weights_in_new_process(settings: dict[str, Any], scratch: Path) -> dict[str, float]:
    """``validate_weights`` in a fresh Python process without the DDP environment (its output shown as it runs)."""
    settings_file, metrics_file = scratch / ".final_validation.json", scratch / ".final_metrics.json"
    settings_file.write_text(json.dumps(settings))
    env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED_ENV}
    try:
        subprocess.run([sys.executable, "-m", __name__, str(settings_file), str(metrics_file)], env=env, check=True)
        return json.loads(metrics_file.read_text())
    finally:
        settings_file.unlink(missing_ok=True)
        metrics_file.unlink(missing_ok=True)


if __name__ == "__main__":
    import yolo_lightning  # noqa: F401  (its offline settings and fonts, as in the training process)

    Path(sys.argv[2]).write_text(json.dumps(validate_weights(json.loads(Path(sys.argv[1]).read_text()))))
