"""Training batches from an optimized dataset in LitData's order: its ``StreamingDataset`` shards the chunks over the
ranks and loader workers (each epoch every rank reads a disjoint part, chunk after chunk, shuffled by chunk and within
chunks) and its ``StreamingDataLoader`` keeps the position, so Lightning saves it in checkpoints and a run resumed
mid-epoch reads only the images that epoch had not read yet. Each image it reads goes through the Ultralytics
dataset's ``training_sample`` (labels, every augmentation); a rank downloads only its own chunks, once each, into a
per-node cache that LitData bounds and evicts (data bigger than the disk streams through it).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from litdata import StreamingDataLoader, StreamingDataset

CACHE_FOLDER = "yolo-lightning-chunks"


class ChunkOrderedImages(StreamingDataset):
    """LitData's sharded, shuffled iteration over an optimized split, yielding the Ultralytics training samples of
    ``images`` (a streamed dataset, see ``streamed_datasets``); only its first ``len(images)`` images (``fraction``)."""

    def __init__(self, images: Any, seed: int) -> None:
        super().__init__(
            images.stream_location, cache_dir=node_chunk_cache(images.storage_options),
            storage_options=images.storage_options, shuffle=True, seed=seed, transform=images.training_sample,
        )  # fmt: skip
        self.images = images
        _keep_first(self, len(images))


class RunEpochLoader(StreamingDataLoader):
    """LitData's loader, shuffling each epoch as the run's epoch ``run_epoch()`` says (None: LitData's own count),
    resuming a saved position only in the epoch it was saved in.

    LitData counts epochs in the loader (one per iteration); Lightning restores that count only for a checkpoint saved
    mid-epoch, so a run resumed from an epoch's end would shuffle its next epochs as its first ones. And LitData ends
    a restored position only when an iteration runs to its end, which Lightning's epoch (it stops at the loader's
    length) never does: the epoch after a resumed one would replay the resumed one's order.
    """

    def __init__(self, *args: Any, run_epoch: Callable[[], int | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_epoch = run_epoch
        self._position_loaded = False

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """LitData's position (a mid-epoch checkpoint's), for the next iteration only."""
        super().load_state_dict(obj)
        self._position_loaded = self.restore

    def __iter__(self) -> Iterator[Any]:
        # A generator, as LitData's: Lightning creates an epoch's iterator before it restores a checkpoint's position
        # (see ``restore_loader_position``), and this runs at its first batch, after it.
        epoch = self.run_epoch()
        if not self._position_loaded and epoch is not None:  # a fresh epoch: its shuffle is the run's (LitData adds one)
            self.restore = False
            self.current_epoch = epoch
        self._position_loaded = False
        yield from super().__iter__()


def node_chunk_cache(storage_options: dict[str, Any] | None) -> str:
    """The chunk cache every process of this machine shares for one endpoint: ``$TMPDIR/yolo-lightning-chunks/<id>``.

    LitData keys a dataset's folder in it by the dataset's URL and by its index's ``updated_at`` (a dataset optimized
    again replaces the old chunks), and locks each chunk's download, so the ranks of a node download each chunk once.
    The endpoint gets its own folder: the same ``s3://`` URL on two endpoints is two datasets.
    """
    endpoint = str((storage_options or {}).get("endpoint_url") or "default")
    folder = Path(tempfile.gettempdir()) / CACHE_FOLDER / hashlib.sha256(endpoint.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _keep_first(stream: StreamingDataset, count: int) -> None:
    """Restrict ``stream`` to its first ``count`` samples, as Ultralytics keeps the first images for ``fraction`` < 1.

    LitData's own ``subsample`` draws a random part; its per-chunk regions of interest (``region_of_interest``, read
    when the chunk reader is built) are cut here instead.
    """
    files, regions, kept = [], [], 0
    for file, (start, end) in zip(stream.subsampled_files, stream.region_of_interest):
        if kept >= count:
            break
        end = min(end, start + count - kept)
        files.append(file)
        regions.append((start, end))
        kept += end - start
    stream.subsampled_files, stream.region_of_interest = files, regions
