"""Datasets bigger than a disk: convert a dataset once into LitData's optimized format (a local folder, an ``s3://``
or a ``gs://`` bucket), then train, validate and test from it on any number of nodes.

    from yolo_lightning.streaming import optimize_dataset
    optimize_dataset("data.yaml", "s3://bucket/ds", storage_options={"endpoint_url": ..., ...})
    YOLODataModule(data="s3://bucket/ds", storage_options={...})

or ``yolo-lightning optimize --data data.yaml --output s3://bucket/ds``. See ``stream_store`` for the layout.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ultralytics.data.dataset import DATASET_CACHE_VERSION, ClassificationDataset, DepthDataset
from ultralytics.data.utils import load_dataset_cache_file

from yolo_lightning.errors import ConfigurationError, TrainingError
from yolo_lightning.object_store import delete_object, is_remote, list_names, read_text, write_object
from yolo_lightning.stream_store import (
    FORMAT_VERSION, MARKER, SPLITS, allow_plain_http, require_streaming, split_location,
)  # fmt: skip
from yolo_lightning.tasks import TASKS, Task

__all__ = ["optimize_dataset"]
_STAGING = "DATA_OPTIMIZER_CACHE_FOLDER"  # LitData's staging folder for the chunks it writes
# What an optimize run writes (an interrupted one included): the marker, each split's label cache, their temporary
# files (write_object), and in each split's folder LitData's chunks and index (its per-worker indexes, its index's
# temporary name)
_SPLIT = "(?:" + "|".join(SPLITS) + ")"
_WRITTEN = re.compile(
    rf"{re.escape(MARKER)}|{_SPLIT}\.cache|\.[^/]+\.tmp"
    rf"|{_SPLIT}/(?:chunk-\d+-\d+(?:\.\w+)?\.bin|(?:\d+[.-])?index\.json(?:\.tmp)?)"
)
# data.yaml keys a task reads besides the splits: carried over, so that training needs no original file
_CARRIED_KEYS = (
    "names", "nc", "channels", "kpt_shape", "flip_idx", "kpt_names", "kpt_oks_sigmas", "masks_dir", "label_mapping",
    "bg_class_idx", "_polygon_bg_added", "depth_scale", "max_depth",
)  # fmt: skip


def optimize_dataset(
    data: str | Path,
    output_dir: str,
    *,
    task: str | None = None,
    num_workers: int = 1,
    storage_options: dict[str, Any] | None = None,
    chunk_bytes: str | int = "8MB",
    overwrite: bool = False,
) -> str:
    """Convert every split of ``data`` (a data.yaml or a classification image-folder tree ``YOLODataModule`` trains
    on) into LitData's optimized format at ``output_dir`` (a local folder, ``s3://bucket/prefix`` or
    ``gs://bucket/prefix``); returns ``output_dir``.

    ``task``: the task whose labels to store (detect, segment, semantic, depth, pose, obb, classify); by default read
    from the data (a folder: classify; ``kpt_shape``: pose, ``masks_dir``: semantic, ``depth_scale``: depth, else the
    label rows: 4 corner points obb, polygons segment, boxes detect). Labels are read and checked by the task's own
    Ultralytics dataset, exactly as for training from the data. The completion marker is written last and removed
    first: an interrupted run leaves a dataset that readers refuse as incomplete, and a rerun starts it over.

    ``overwrite``: replace a complete optimized dataset at ``output_dir`` (refused without it: runs reading it would
    break). An output holding files an optimize run did not write is always refused (in a bucket LitData deletes each
    split's prefix before writing it).

    ``chunk_bytes``: the size of each chunk. 8 MB, not LitData's 64 MB: a rank's loader workers share the chunks they
    read, and LitData reads a shared chunk cached from a bucket without a memory map, at a cost that grows with the
    chunk (measured with 2 workers: 0.21-0.28 of the file loader's speed at 64 MB, 0.91-1.18 at 8 MB;
    BENCHMARKS.md). For data of many terabytes a larger size keeps LitData's index short.
    """
    from yolo_lightning.datamodule import YOLODataModule

    if "://" in str(output_dir) and not is_remote(output_dir):
        raise ConfigurationError(
            f"output_dir={output_dir!r}: optimize into a local folder, an s3:// or a gs:// URL (LitData writes no other)."
        )
    require_streaming(output_dir)
    allow_plain_http(storage_options)
    _check_output(output_dir, overwrite, storage_options)
    spec = _task(data, task)
    datamodule = YOLODataModule(data=str(data), workers=0)
    datamodule.fixed_task = spec
    config, datasets = datamodule.labelled_datasets()
    delete_object(f"{output_dir.rstrip('/')}/{MARKER}", storage_options)
    counts = {}
    for split, dataset in datasets.items():
        cache, payload = _label_cache(dataset)
        location = split_location(output_dir, split)
        counts[split] = _optimize_split(cache, spec, location, num_workers, chunk_bytes, storage_options)
        write_object(f"{output_dir.rstrip('/')}/{split}.cache", payload, storage_options)
    metadata = {"format": FORMAT_VERSION, "task": spec.name, "images": counts}
    metadata["sources"] = {split: _plain_paths(config[split]) for split in counts}  # what each was optimized from
    metadata.update({k: config[k] for k in _CARRIED_KEYS if k in config})
    write_object(f"{output_dir.rstrip('/')}/{MARKER}", yaml.safe_dump(metadata).encode(), storage_options)
    return output_dir


def _check_output(output_dir: str, overwrite: bool, storage_options: dict[str, Any] | None) -> None:
    """Refuse an output holding a complete optimized dataset unless ``overwrite``, or files of other origins."""
    if not overwrite and read_text(f"{output_dir.rstrip('/')}/{MARKER}", storage_options) is not None:
        raise ConfigurationError(
            f"output_dir={output_dir!r} holds an optimized dataset already: choose another output, or replace it "
            "with overwrite=True (--overwrite; runs reading it then fail)."
        )
    foreign = [name for name in list_names(output_dir, storage_options) if not _WRITTEN.fullmatch(name)]
    if foreign:
        raise ConfigurationError(
            f"output_dir={output_dir!r} holds files that optimize did not write ({foreign[0]!r}, {len(foreign)} in "
            "all; in a bucket LitData deletes each split's prefix before writing it): choose an empty folder or prefix."
        )


def _plain_paths(paths: Any) -> str | list[str]:
    """A split's path (or list of paths) as YAML-safe text."""
    return [str(p) for p in paths] if isinstance(paths, (list, tuple)) else str(paths)


def _task(data: str | Path, task: str | None) -> Task:
    """The task named, else the one the data says: classify for a folder, else the data.yaml's keys and label rows."""
    if task is not None:
        if task not in TASKS:
            raise ConfigurationError(f"task={task!r}: choose one of {', '.join(TASKS)}.")
        return TASKS[task]
    if not str(data).endswith((".yaml", ".yml")):  # an image-folder tree (Ultralytics' classification layout)
        return TASKS["classify"]
    config = yaml.safe_load(Path(data).read_text())
    for key, name in (("kpt_shape", "pose"), ("masks_dir", "semantic"), ("depth_scale", "depth")):
        if config.get(key) is not None:
            return TASKS[name]
    return TASKS[_rows_task(Path(data), config)]


def _rows_task(data: Path, config: dict[str, Any]) -> str:
    """detect, segment or obb from the width of the label rows of the first labelled training images."""
    root = Path(config.get("path") or data.parent)
    root = root if root.is_absolute() else data.parent / root
    widths = set()
    for label_file in sorted((root / str(config.get("train", "")).replace("images", "labels", 1)).rglob("*.txt"))[:50]:
        widths |= {len(row.split()) for row in label_file.read_text().splitlines() if row.strip()}
    if widths and widths == {9}:
        return "obb"
    return "segment" if any(w > 5 for w in widths) else "detect"


def _optimize_split(
    cache: dict[str, Any], spec: Task, output: str, num_workers: int, chunk_bytes: str | int,
    storage_options: dict | None,
) -> int:  # fmt: skip
    """LitData chunks of one split: one sample per image of its label cache, in the cache's order."""
    import litdata

    inputs = [(i, label["im_file"], _pixel_file(label, spec)) for i, label in enumerate(cache["labels"])]
    with _private_staging(), _own_sigint():
        litdata.optimize(
            fn=_sample, inputs=inputs, output_dir=output, chunk_bytes=chunk_bytes, num_workers=max(1, num_workers),
            mode="overwrite", keep_data_ordered=True, start_method="fork",
            storage_options=dict(storage_options or {}), verbose=False,
        )  # fmt: skip
    if _indexed_samples(output, storage_options) != len(inputs):
        raise TrainingError(
            f"optimize_dataset: LitData's index of {output} does not list the {len(inputs)} images it wrote; check the "
            "storage's free space and permissions, then run it again."
        )
    return len(inputs)


@contextmanager
def _own_sigint() -> Iterator[None]:
    """LitData's optimize installs a SIGINT handler that exits with status 0 and never restores the previous one: keep
    Ctrl-C an interruption (KeyboardInterrupt, status 130) during and after it."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _private_staging() -> Iterator[None]:
    """LitData stages chunks in one folder per machine (``$TMPDIR/chunks``): two optimize runs at once would write each
    other's index (measured: a split whose index.json lists no chunk). This run stages in a folder of its own."""
    previous = os.environ.get(_STAGING)
    os.environ[_STAGING] = tempfile.mkdtemp(prefix="yolo-lightning-optimize-", dir=previous)  # under the user's own
    try:
        yield
    finally:
        shutil.rmtree(os.environ[_STAGING], ignore_errors=True)
        if previous is None:
            del os.environ[_STAGING]
        else:
            os.environ[_STAGING] = previous


def _indexed_samples(output: str, storage_options: dict[str, Any] | None) -> int:
    """How many samples the split's ``index.json`` lists (0 when it is missing)."""
    text = read_text(f"{output.rstrip('/')}/index.json", storage_options)
    return sum(chunk["chunk_size"] for chunk in json.loads(text)["chunks"]) if text else 0


def _pixel_file(label: dict[str, Any], spec: Task) -> str | None:
    """An image's mask (semantic with masks_dir) or depth map file; None for labels held in rows."""
    if spec.labels == "depth":
        return DepthDataset._depth_path_for(None, label["im_file"])  # reads no instance attribute
    return label.get("mask_file")


def _sample(item: tuple[int, str, str | None]) -> dict[str, Any]:
    """One image's sample: its index in the label cache, the image file's bytes, its mask or depth map's bytes."""
    index, image, pixels = item
    return {
        "index": index,
        "image": Path(image).read_bytes(),
        "pixels": Path(pixels).read_bytes() if pixels else b"",
        "pixels_format": Path(pixels).suffix.lstrip(".").lower() if pixels else "",
    }


def _label_cache(dataset: Any) -> tuple[dict[str, Any], bytes]:
    """The label cache Ultralytics wrote for the split (``prepare_data`` built it): its dict and its file's bytes; for
    a classification split, one in its format built from the dataset's checked samples (image, class)."""
    if isinstance(dataset, ClassificationDataset):
        labels = [{"im_file": str(sample[0]), "cls": int(sample[1])} for sample in dataset.samples]
        cache = {"version": DATASET_CACHE_VERSION, "labels": labels}
        buffer = io.BytesIO()
        np.save(buffer, np.array(cache, dtype=object), allow_pickle=True)  # as Ultralytics' save_dataset_cache_file
        return cache, buffer.getvalue()
    path = Path(dataset.get_label_files()[0]).parent.with_suffix(".cache")
    if not path.is_file():
        raise ConfigurationError(
            f"optimize_dataset: Ultralytics wrote no label cache for {dataset.img_path} ({path}: its folder is not "
            "writeable); copy the dataset somewhere writeable and optimize that."
        )
    return load_dataset_cache_file(path), path.read_bytes()
