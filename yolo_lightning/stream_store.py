"""Datasets bigger than a disk: a dataset ``YOLODataModule`` trains on, converted once into LitData's optimized format
(chunks of encoded images, in a local folder or an ``s3://`` bucket), then trained on from there.

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

import io
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from yolo_lightning.errors import ConfigurationError

MARKER = "yolo_lightning.yaml"  # written last: its presence means the optimized dataset is complete
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_REMOTE = ("s3://",)  # LitData also streams gs:// and azure://; this version reads its metadata from S3 or disk


def is_remote(location: str | Path) -> bool:
    """True for an object-store URL (``s3://...``)."""
    return str(location).startswith(_REMOTE)


def require_streaming() -> None:
    """One clear error when the streaming extra (LitData, boto3) is not installed."""
    import importlib.util

    missing = [name for name in ("litdata", "boto3") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"streaming datasets need {' and '.join(missing)}: pip install 'yolo-lightning[streaming]'"
        )


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
    """True when ``data`` names an optimized dataset: an ``s3://`` URL, or a folder holding ``yolo_lightning.yaml``
    or LitData chunks (an incomplete one: reading it says so)."""
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
    require_streaming()
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
    payload = _read_bytes(f"{location.rstrip('/')}/{split}.cache", storage_options)
    if payload is None:
        raise ConfigurationError(f"data={location!r}: the label cache {split}.cache is missing: optimize it again.")
    return np.load(io.BytesIO(payload), allow_pickle=True).item()  # Ultralytics' own cache format (np.save of a dict)


def split_location(location: str, split: str) -> str:
    """Where the LitData chunks of ``split`` lie."""
    return f"{location.rstrip('/')}/{split}"


# ------------------------------------------------------------------------------------------------ reading bytes
def _read_bytes(path: str, storage_options: dict[str, Any] | None) -> bytes | None:
    """The bytes at a local path or ``s3://`` URL; None when there is no such object; one-line errors otherwise."""
    if not is_remote(path):
        return Path(path).read_bytes() if Path(path).is_file() else None
    client = _s3_client(storage_options)
    bucket, _, key = path[len("s3://") :].partition("/")
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    except Exception as e:  # noqa: BLE001 - botocore's many failure types, each turned into one line
        raise ConfigurationError(f"{path}: {_s3_reason(e)}") from None


def read_text(path: str, storage_options: dict[str, Any] | None) -> str | None:
    payload = _read_bytes(path, storage_options)
    return None if payload is None else payload.decode("utf-8")


def write_object(path: str, payload: bytes, storage_options: dict[str, Any] | None) -> None:
    """Write ``payload`` whole: locally through a temporary file and a rename, to S3 in one PUT."""
    if not is_remote(path):
        target = Path(path)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_bytes(payload)
        os.replace(temporary, target)
        return
    bucket, _, key = path[len("s3://") :].partition("/")
    try:
        _s3_client(storage_options).put_object(Bucket=bucket, Key=key, Body=payload)
    except Exception as e:  # noqa: BLE001
        raise ConfigurationError(f"{path}: {_s3_reason(e)}") from None


def delete_object(path: str, storage_options: dict[str, Any] | None) -> None:
    """Remove the object or file at ``path`` if it exists."""
    if not is_remote(path):
        Path(path).unlink(missing_ok=True)
        return
    bucket, _, key = path[len("s3://") :].partition("/")
    try:
        _s3_client(storage_options).delete_object(Bucket=bucket, Key=key)
    except Exception as e:  # noqa: BLE001
        raise ConfigurationError(f"{path}: {_s3_reason(e)}") from None


def _s3_client(storage_options: dict[str, Any] | None) -> Any:
    """A boto3 S3 client from LitData's ``storage_options`` (endpoint, keys, region), failing fast when unreachable."""
    import boto3
    from botocore.config import Config

    options = dict(storage_options or {})
    config = Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 1})
    return boto3.client("s3", config=config, **options)


def _s3_reason(error: Exception) -> str:
    """One line saying why an S3 request failed and what to do."""
    name = type(error).__name__
    if name == "NoCredentialsError":
        return (
            "no credentials for the bucket: pass storage_options={'aws_access_key_id': ..., "
            "'aws_secret_access_key': ...} (or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"}:
        return f"the endpoint is unreachable ({str(error).splitlines()[0]}): check storage_options['endpoint_url']"
    if name == "ClientError":
        return f"refused by the object store: {str(error).splitlines()[0]}"
    return f"{name}: {str(error).splitlines()[0] if str(error) else ''}"
