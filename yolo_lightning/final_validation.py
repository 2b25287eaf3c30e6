"""The final validation of ``best.pt``, as Ultralytics' ``final_eval`` and ``YOLO("best.pt").val()`` compute it.

    python -m yolo_lightning.final_validation METRICS_JSON  < pickled settings

runs it in a process of its own (what a DDP run's rank 0 does: Ultralytics' validator would start collectives of its
own inside a process group). The settings go through stdin: a bucket's credentials are never written to disk.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from yolo_lightning.errors import ConfigurationError

_PATCH_LOCK = threading.Lock()  # one streamed validation at a time patches Ultralytics' dataset check
# Ultralytics reads these at import and then gathers statistics over a process group: a standalone validation must
# not inherit the DDP rank it was started from.
_DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")


def validate_weights(settings: dict[str, Any]) -> dict[str, float]:
    """``YOLO(weights).val(data=..., imgsz=..., batch=..., ...)`` (its rect loader, fused model and table), as floats.

    ``settings``: ``weights``, ``data``, ``imgsz``, ``batch``, ``device``, ``half`` (Ultralytics' AMP validation on a
    GPU), ``plots`` and ``save_dir`` (the run folder, where its plots go, as ``final_eval`` writes them); for an
    optimized dataset also ``streamed_config`` (its dataset config) and ``storage_options``.
    """
    from ultralytics import YOLO

    save_dir = Path(settings["save_dir"]).resolve()  # Ultralytics puts a relative project under its runs_dir/<task>
    model = YOLO(settings["weights"])
    streamed = settings.get("streamed_config")
    validator = None if streamed is None else streamed_validator(model, streamed, settings.get("storage_options"))
    metrics = model.val(
        validator=validator, data=settings["data"], imgsz=settings["imgsz"], batch=settings["batch"],
        device=settings["device"], quantize=16 if settings["half"] else None, plots=settings["plots"],
        project=str(save_dir.parent), name=save_dir.name, exist_ok=True,
    )  # fmt: skip
    return {k: float(v) for k, v in metrics.results_dict.items()}


def streamed_validator(model: Any, config: dict[str, Any], storage_options: dict[str, Any] | None) -> type:
    """The task's Ultralytics validator reading an optimized dataset (``config``: its dataset config): its own loop,
    metrics, table and plots; only the dataset it builds and the dataset config it checks differ."""
    from ultralytics.utils import LOGGER

    from yolo_lightning.streamed_datasets import build_streamed_dataset

    base = model.task_map[model.task]["validator"]

    class StreamedValidator(base):  # type: ignore[misc, valid-type]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with _dataset_config(config):
                return super().__call__(*args, **kwargs)

        def init_metrics(self, model: Any) -> None:
            """The task's metrics. Ultralytics scores COCO and LVIS (told by the split's original path) with their
            official evaluation, which reads annotation files that are not streamed: said once, and left out."""
            split = self.args.split or "val"
            streamed, source = self.data.get(split), (config.get("sources") or {}).get(split)
            self.data[split] = source or streamed  # what Ultralytics' COCO/LVIS test reads
            try:
                super().init_metrics(model)
            finally:
                self.data[split] = streamed
            if getattr(self, "is_coco", False) or getattr(self, "is_lvis", False):
                LOGGER.warning(
                    f"{source} is COCO's or LVIS's: YOLO(best.pt).val() on the original files would also report "
                    "the official evaluation (pycocotools/faster-coco-eval on its annotation JSON), which streamed "
                    "data lacks; the numbers below are Ultralytics' own mAP (its table)."
                )
                self.args.save_json = False

        def build_dataset(self, img_path: str, mode: str = "val", batch: int | None = None) -> Any:
            """``build_yolo_dataset``'s dataset (classify: ClassificationDataset's) from the optimized split."""
            split = self.args.split or "val"
            return build_streamed_dataset(
                self.args, config["path"], split, batch, self.data, mode, storage_options, int(self.stride)
            )

    return StreamedValidator


@contextlib.contextmanager
def _dataset_config(config: dict[str, Any]) -> Iterator[None]:
    """Within: BaseValidator's dataset check gives ``config``. Its ``__call__`` reads a data.yaml (or a classification
    folder) inline, with no hook; an optimized dataset's config comes from its stored metadata. One validation at a
    time holds the patch (validations in threads would read each other's config)."""
    import ultralytics.engine.validator as validator_module

    with _PATCH_LOCK:
        checks = {name: getattr(validator_module, name) for name in ("check_det_dataset", "check_cls_dataset")}
        for name in checks:
            setattr(validator_module, name, lambda *args, **kwargs: copy.deepcopy(config))
        try:
            yield
        finally:
            for name, check in checks.items():
                setattr(validator_module, name, check)


def launched_as_a_rank() -> bool:
    """True when a launcher gave this process a DDP rank (torchrun's ``RANK``...), even a single one: Ultralytics'
    validator would then gather its statistics over a process group that does not exist."""
    return any(name in os.environ for name in _DISTRIBUTED_ENV)


def validate_weights_in_new_process(settings: dict[str, Any], scratch: Path) -> dict[str, float]:
    """``validate_weights`` in a fresh Python process without the DDP environment (its output shown as it runs)."""
    metrics_file = scratch / ".final_metrics.json"
    env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED_ENV}
    payload = passable_settings(settings)
    try:
        command = [sys.executable, "-m", __name__, str(metrics_file)]
        subprocess.run(command, input=payload, env=env, check=True)
        return json.loads(metrics_file.read_text())
    finally:
        metrics_file.unlink(missing_ok=True)


def passable_settings(settings: dict[str, Any]) -> bytes:
    """``settings`` pickled for the final validation's own process, or one error when that process could not read
    them (a credentials object that cannot be pickled, or a class defined in the running script)."""
    try:
        payload = pickle.dumps(settings)
        _ImportableElsewhere(io.BytesIO(payload)).load()
    except Exception as e:  # noqa: BLE001 - pickle's many failure types, turned into one line
        raise ConfigurationError(
            f"the final validation runs in a process of its own and storage_options cannot be passed to it ({e}): "
            "give the bucket's credentials through the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS) instead."
        ) from None
    return payload


class _ImportableElsewhere(pickle.Unpickler):
    """Unpickles what another Python process can import: nothing defined in the running script (``__main__``), which
    ``python -m yolo_lightning.final_validation`` does not run."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__":
            raise pickle.UnpicklingError(f"{name} is defined in the running script, which that process does not run")
        return super().find_class(module, name)


if __name__ == "__main__":
    import yolo_lightning  # noqa: F401  (its offline settings and fonts, as in the training process)

    Path(sys.argv[1]).write_text(json.dumps(validate_weights(pickle.loads(sys.stdin.buffer.read()))))
