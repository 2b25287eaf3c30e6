"""Small whole objects (an optimized dataset's metadata and label caches) at a local path or an object-store URL: read,
written whole and deleted, each failure one line that says what to do.

Each URL scheme goes through the SDK LitData itself uses for it, with the same ``storage_options``: ``s3://`` boto3
(``boto3.client("s3", **storage_options)``), ``gs://`` google-cloud-storage (``storage.Client(**storage_options)``).
LitData has no call for a small object's bytes (its ``FsProvider`` moves files and has no S3 error types to tell a
missing object from a refused request), hence these few lines per scheme.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_lightning.errors import ConfigurationError

_TIMEOUT = (3, 30)  # seconds to connect, to read: an unreachable endpoint fails at once, without retries


@dataclass(frozen=True)
class _Scheme:
    """How to reach one kind of object store: its SDK, and its get (None when missing), put, delete and list."""

    module: str  # the SDK's import name, required before use
    package: str  # what pip installs
    get: Callable[[str, str, dict[str, Any]], bytes | None]
    put: Callable[[str, str, bytes, dict[str, Any]], None]
    delete: Callable[[str, str, dict[str, Any]], None]
    keys: Callable[[str, str, dict[str, Any]], list[str]]
    reason: Callable[[Exception], str]


# ---------------------------------------------------------------------------------------------------------- S3
def _s3_client(options: dict[str, Any], attempts: int = 1) -> Any:
    """A boto3 S3 client from LitData's ``storage_options`` (endpoint, keys, region, a botocore ``config`` such as
    path-style addressing, merged as LitData merges it), failing fast when unreachable (``attempts``: per request)."""
    import boto3
    from botocore.config import Config

    options = dict(options)
    config = Config(connect_timeout=_TIMEOUT[0], read_timeout=_TIMEOUT[1], retries={"max_attempts": attempts})
    if options.get("config") is not None:
        config = options.pop("config").merge(config)  # the user's settings, with a fast failure on top
    return boto3.client("s3", config=config, **options)


def _s3_get(bucket: str, key: str, options: dict[str, Any]) -> bytes | None:
    client = _s3_client(options)
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def _s3_put(bucket: str, key: str, payload: bytes, options: dict[str, Any]) -> None:
    _s3_client(options).put_object(Bucket=bucket, Key=key, Body=payload)


def _s3_delete(bucket: str, key: str, options: dict[str, Any]) -> None:
    _s3_client(options).delete_object(Bucket=bucket, Key=key)  # S3 deletes a missing key without complaint


def _s3_keys(bucket: str, prefix: str, options: dict[str, Any]) -> list[str]:
    # a prefix of many chunks is many pages: each retried (a throttled page would end the listing)
    pages = _s3_client(options, attempts=5).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _s3_reason(error: Exception) -> str:
    """One line saying why an S3 request failed and what to do."""
    name = type(error).__name__
    if name == "NoCredentialsError":
        return (
            "no credentials for the bucket: pass storage_options={'aws_access_key_id': ..., "
            "'aws_secret_access_key': ...} (or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"}:
        return f"the endpoint is unreachable ({_first_line(error)}): check storage_options['endpoint_url']"
    if name == "ClientError":
        return f"refused by the object store: {_first_line(error)}"
    return f"{name}: {_first_line(error)}"


# ---------------------------------------------------------------------------------------------- Google Cloud
def _gcs_bucket(bucket: str, options: dict[str, Any]) -> Any:
    """The bucket through ``google.cloud.storage.Client(**storage_options)``, as LitData's GCP downloader builds it."""
    from google.cloud import storage

    return storage.Client(**options).bucket(bucket)


def _gcs_get(bucket: str, key: str, options: dict[str, Any]) -> bytes | None:
    from google.api_core.exceptions import NotFound

    store = _gcs_bucket(bucket, options)
    try:
        return store.blob(key).download_as_bytes(retry=None, timeout=_TIMEOUT)
    except NotFound:  # also a missing bucket, which is not a missing dataset
        if not _bucket_exists(store):
            raise ConfigurationError(f"gs://{bucket}: no such bucket: create it or check the URL") from None
        return None


def _bucket_exists(store: Any) -> bool:
    """Whether the bucket exists; True when the credentials may read objects but not the bucket's metadata (roles
    like storage.objectViewer lack ``storage.buckets.get``), which only an existing bucket grants."""
    from google.api_core.exceptions import Forbidden

    try:
        return store.exists(retry=None, timeout=_TIMEOUT)
    except Forbidden:
        return True


def _gcs_put(bucket: str, key: str, payload: bytes, options: dict[str, Any]) -> None:
    _gcs_bucket(bucket, options).blob(key).upload_from_string(payload, timeout=_TIMEOUT)


def _gcs_delete(bucket: str, key: str, options: dict[str, Any]) -> None:
    from google.api_core.exceptions import NotFound

    try:
        _gcs_bucket(bucket, options).blob(key).delete(retry=None, timeout=_TIMEOUT)
    except NotFound:
        pass  # already gone: what deleting asks for


def _gcs_keys(bucket: str, prefix: str, options: dict[str, Any]) -> list[str]:
    # names only, each page with the SDK's default retry (a prefix of many chunks is many pages)
    blobs = _gcs_bucket(bucket, options).list_blobs(prefix=prefix, timeout=_TIMEOUT, fields="items(name),nextPageToken")
    return [blob.name for blob in blobs]


def _gcs_reason(error: Exception) -> str:
    """One line saying why a Google Cloud Storage request failed and what to do (requests' and google-auth's
    connection failures: unreachable; an HTTP answer: refused; anything else, e.g. no project: its own words)."""
    name = type(error).__name__
    if name == "DefaultCredentialsError":
        return (
            "no credentials for the bucket: set GOOGLE_APPLICATION_CREDENTIALS (or gcloud auth application-default "
            "login), or pass storage_options={'credentials': ..., 'project': ...}"
        )
    if name in {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "TransportError", "RetryError"}:
        return f"the endpoint is unreachable ({_first_line(error)}): check the network or storage_options"
    if "GoogleAPICallError" in {cls.__name__ for cls in type(error).__mro__}:  # an HTTP answer: 403, 400...
        return f"refused by the object store: {_first_line(error)}"
    return f"{name}: {_first_line(error)}"


_SCHEMES = {
    "s3://": _Scheme("boto3", "boto3", _s3_get, _s3_put, _s3_delete, _s3_keys, _s3_reason),
    "gs://": _Scheme(
        "google.cloud.storage", "google-cloud-storage", _gcs_get, _gcs_put, _gcs_delete, _gcs_keys, _gcs_reason
    ),
}
REMOTE_PREFIXES = tuple(_SCHEMES)


def is_remote(location: str | Path) -> bool:
    """True for an object-store URL (``s3://...``, ``gs://...``)."""
    return str(location).startswith(REMOTE_PREFIXES)


def require_sdk(location: str | Path) -> None:
    """One clear error when the SDK that reaches ``location``'s object store is not installed."""
    scheme = _scheme(str(location))
    if scheme is not None and not _installed(scheme.module):
        raise ConfigurationError(f"{location}: reading it needs {scheme.package}: pip install {scheme.package}")


def read_bytes(path: str, storage_options: dict[str, Any] | None) -> bytes | None:
    """The bytes at a local path or URL; None when there is no such object; one-line errors otherwise."""
    scheme = _scheme(path)
    if scheme is None:
        return Path(path).read_bytes() if Path(path).is_file() else None
    return _call(path, scheme.reason, scheme.get, *_bucket_and_key(path), dict(storage_options or {}))


def read_text(path: str, storage_options: dict[str, Any] | None) -> str | None:
    """The UTF-8 text at a local path or URL; None when there is no such object."""
    payload = read_bytes(path, storage_options)
    return None if payload is None else payload.decode("utf-8")


def write_object(path: str, payload: bytes, storage_options: dict[str, Any] | None) -> None:
    """Write ``payload`` whole: locally through a temporary file and a rename, to a bucket in one upload."""
    scheme = _scheme(path)
    if scheme is None:
        target = Path(path)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_bytes(payload)
        os.replace(temporary, target)
        return
    _call(path, scheme.reason, scheme.put, *_bucket_and_key(path), payload, dict(storage_options or {}))


def delete_object(path: str, storage_options: dict[str, Any] | None) -> None:
    """Remove the object or file at ``path`` if it exists."""
    scheme = _scheme(path)
    if scheme is None:
        Path(path).unlink(missing_ok=True)
        return
    _call(path, scheme.reason, scheme.delete, *_bucket_and_key(path), dict(storage_options or {}))


def list_names(folder: str, storage_options: dict[str, Any] | None) -> list[str]:
    """The paths of every file or object under the local folder or URL prefix ``folder``, relative to it (a bucket's
    folder placeholders, empty keys ending in ``/``, left out)."""
    scheme = _scheme(folder)
    if scheme is None:
        root = Path(folder)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()) if root.is_dir() else []
    bucket, prefix = _bucket_and_key(folder.rstrip("/") + "/")
    keys = _call(folder, scheme.reason, scheme.keys, bucket, prefix, dict(storage_options or {}))
    return sorted(key[len(prefix) :] for key in keys if not key.endswith("/"))  # not the consoles' empty "folders"


def _call(path: str, reason: Callable[[Exception], str], operation: Callable[..., Any], *args: Any) -> Any:
    """``operation(*args)`` with each failure turned into one ConfigurationError naming ``path``."""
    try:
        return operation(*args)
    except ConfigurationError:
        raise
    except Exception as e:  # noqa: BLE001 - the SDKs' many failure types, each turned into one line
        raise ConfigurationError(f"{path}: {reason(e)}") from None


def _scheme(path: str) -> _Scheme | None:
    return next((scheme for prefix, scheme in _SCHEMES.items() if path.startswith(prefix)), None)


def _bucket_and_key(url: str) -> tuple[str, str]:
    bucket, _, key = url.split("://", 1)[1].partition("/")
    return bucket, key


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else ""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (google.cloud) is missing
        return False
