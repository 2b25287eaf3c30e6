"""Datasets bigger than a disk: a dataset ``YOLODataModule`` trains on, converted once into LitData's optimized format
(chunks of encoded images, in a local folder or an ``s3://`` or ``gs://`` bucket), then trained on from there.

    optimize_dataset("data.yaml", "s3://bucket/ds", storage_options={...})
    YOLODataModule(data="s3://bucket/ds", storage_options={...})

Layout of an optimized dataset ``OUT``: ``OUT/<split>/`` LitData chunks, one sample per image (its index, the image
file's bytes, and its mask or depth map file's bytes for semantic and depth); ``OUT/<split>.cache`` Ultralytics' own
label cache of the split (the labels of every image, small: read whole at the start; classification: each image's
class, in that format); ``OUT/yolo_lightning.yaml``
what training needs without the original files (task, class names, keypoint shape, ...), written last: a dataset
without it is incomplete, and ``optimize_dataset`` starts it over.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from yolo_lightning.errors import ConfigurationError
from yolo_lightning.object_store import is_remote, read_bytes, read_text, require_sdk

MARKER = "yolo_lightning.yaml"  # written last: its presence means the optimized dataset is complete
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
CACHE_FOLDER = "yolo-lightning-chunks"  # under $TMPDIR: the chunks a node downloaded


def require_streaming(location: str | Path) -> None:
    """One clear error when LitData, or the SDK of ``location``'s object store, is not installed."""
    import importlib.util

    if importlib.util.find_spec("litdata") is None:
        raise ConfigurationError("streaming datasets need litdata: pip install 'yolo-lightning[streaming]'")
    require_sdk(location)


def allow_plain_http(storage_options: dict[str, Any] | None) -> None:
    """Let LitData's S3 client (obstore) talk to an ``http://`` endpoint (a MinIO or moto without TLS).

    obstore refuses plain HTTP unless its client option ``allow_http`` is set ("HTTP error: builder error"), and LitData
    builds its clients from one module-level option dict. Every process that reads or writes calls this (the datasets
    call it again when unpickled in a DataLoader worker, whatever the start method).
    """
    endpoint = str((storage_options or {}).get("endpoint_url") or "")
    if endpoint.startswith("http://"):
        from litdata.streaming import downloader

        downloader._OBSTORE_CLIENT_OPTIONS["allow_http"] = "true"  # LitData has no public option for it


def is_optimized(data: Any) -> bool:
    """True when ``data`` names an optimized dataset: an ``s3://`` or ``gs://`` URL, or a folder holding
    ``yolo_lightning.yaml`` or LitData chunks (an incomplete one: reading it says so)."""
    if not isinstance(data, (str, Path)):
        return False
    folder = Path(data)
    return is_remote(data) or (folder.is_dir() and ((folder / MARKER).is_file() or any(folder.glob("*/index.json"))))


def read_metadata(location: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of a complete optimized dataset, or one clear error (incomplete, unreachable, no credentials)."""
    text = read_text(f"{location.rstrip('/')}/{MARKER}", storage_options)
    if text is None:
        raise ConfigurationError(
            f"data={location!r}: no {MARKER}, so no complete optimized dataset there (an interrupted "
            f"optimize leaves none): run yolo-lightning optimize --data DATA.yaml --output {location}"
        )
    metadata = yaml.safe_load(text)
    if metadata.get("format") != FORMAT_VERSION:
        raise ConfigurationError(
            f"data={location!r} was optimized in format {metadata.get('format')!r}; this yolo-lightning reads format "
            f"{FORMAT_VERSION}: optimize it again."
        )
    return metadata


def optimized_config(
    location: str, task: Any, splits: tuple[str, ...] | None, storage_options: dict[str, Any] | None
) -> dict[str, Any]:
    """The dataset config of an optimized dataset, as check_det_dataset gives a data.yaml's: its class names and task
    keys, ``path`` the dataset's location, each split it holds; one error for another task or a missing split."""
    require_streaming(location)
    if task.is_rtdetr:
        raise ConfigurationError(
            f"data={location!r}: RT-DETR trains on RTDETRDataset's pipeline, which streaming does not serve yet; "
            "train it from the data.yaml."
        )
    metadata = read_metadata(location, storage_options)
    if metadata["task"] != task.name:
        raise ConfigurationError(
            f"data={location!r} holds {metadata['task']} labels; this is a {task.name} model: optimize the data with "
            f"task={task.name!r} (yolo-lightning optimize --task {task.name}) or train a {metadata['task']} model."
        )
    held = tuple(metadata["images"])
    for split in splits or ():
        if split not in held:
            raise ConfigurationError(f"data={location!r} has no {split!r} split (it holds {', '.join(held)}).")
    config = {k: v for k, v in metadata.items() if k not in {"format", "task", "images"}}
    config.update({split: split_location(location, split) for split in held}, path=location.rstrip("/"))
    config["names"] = {int(k): str(v) for k, v in config["names"].items()}
    config.setdefault("nc", len(config["names"]))
    return config


def load_label_cache(location: str, split: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ultralytics' label cache of ``split`` (a dict with ``labels``), read from the optimized dataset."""
    payload = read_bytes(f"{location.rstrip('/')}/{split}.cache", storage_options)
    if payload is None:
        raise ConfigurationError(f"data={location!r}: the label cache {split}.cache is missing: optimize it again.")
    return np.load(io.BytesIO(payload), allow_pickle=True).item()  # Ultralytics' own cache format (np.save of a dict)


def split_location(location: str, split: str) -> str:
    """Where the LitData chunks of ``split`` lie."""
    return f"{location.rstrip('/')}/{split}"


def node_chunk_cache(location: str, storage_options: dict[str, Any] | None) -> str:
    """The chunk cache every process of this machine shares for one version of a split:
    ``$TMPDIR/yolo-lightning-chunks/<endpoint and version>``.

    LitData locks each chunk's download in it, so the ranks of a node download each chunk once. The endpoint gets its
    own folder (the same URL on two endpoints is two datasets), and so does each version of the split (its
    index's ``updated_at``, new at each optimize): LitData deletes a dataset's other versions from its cache folder
    without a lock, which would pull chunks from under the other ranks or another run reading the old version.
    """
    index = read_text(f"{location.rstrip('/')}/index.json", storage_options)
    version = str(json.loads(index).get("updated_at")) if index else "none"
    endpoint = str((storage_options or {}).get("endpoint_url") or "default")
    key = hashlib.sha256(f"{endpoint}|{version}".encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / CACHE_FOLDER / key
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


@contextmanager
def opening_in_node_cache(cache: str) -> Iterator[None]:
    """Within: the only process of the machine opening a LitData dataset in the node cache ``cache``.

    Opening creates ``<cache>/<URL hash>/<version>/`` and first deletes the URL's folder unless it holds exactly that
    version (``_clear_cache_dir_if_updated``, without a lock): a process listing it between another's creation of the
    two folders deletes them, index.json included (measured: a validation loader worker failed with "doesn't contain
    any index.json file" when two workers opened a fresh split at once). Ranks and workers take turns here.
    """
    from filelock import FileLock  # LitData's own dependency, as it locks chunk downloads

    with FileLock(str(Path(cache) / ".opening.lock")):
        yield
