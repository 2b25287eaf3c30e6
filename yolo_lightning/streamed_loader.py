"""Training batches from an optimized dataset in LitData's order: its ``StreamingDataset`` shards the chunks over the
ranks and loader workers (each epoch every rank reads its own part, chunk after chunk, shuffled by chunk and within
chunks) and its ``StreamingDataLoader`` keeps the position, so Lightning saves it in checkpoints and a run resumed
mid-epoch reads only the images that epoch had not read yet. Each image it reads goes through the Ultralytics
dataset's ``training_sample`` (labels, every augmentation); a rank downloads only its own chunks, once each, into a
per-node cache that LitData bounds and evicts (data bigger than the disk streams through it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from litdata import StreamingDataLoader, StreamingDataset
from litdata.utilities.env import _DistributedEnv

from yolo_lightning.errors import ConfigurationError
from yolo_lightning.stream_store import opening_in_node_cache


class ChunkOrderedImages(StreamingDataset):
    """LitData's sharded, shuffled iteration over an optimized split, yielding the Ultralytics training samples of
    ``images`` (a streamed dataset, see ``streamed_datasets``); only its first ``len(images)`` images (``fraction``).

    ``world``: (world size, global rank, nodes) of the run, as Lightning knows them.
    """

    def __init__(self, images: Any, seed: int, world: tuple[int, int, int]) -> None:
        with _lightning_world(*world), opening_in_node_cache(images.chunk_cache):
            super().__init__(
                images.stream_location, cache_dir=images.chunk_cache,
                storage_options=images.storage_options, shuffle=True, seed=seed, transform=images.training_sample,
            )  # fmt: skip
        self.images, self.world = images, world
        _keep_first(self, len(images))

    def _create_cache(self, *args: Any, **kwargs: Any) -> Any:
        """LitData's chunk reader, built with Lightning's world (its writer half looks the world up)."""
        with _lightning_world(*self.world):
            return super()._create_cache(*args, **kwargs)


@contextmanager
def _lightning_world(world_size: int, global_rank: int, num_nodes: int) -> Iterator[None]:
    """LitData reads the world from torch.distributed and guesses the nodes as ``world_size // GPUs per machine``: a
    wrong count on CPU or with fewer devices per node than GPUs, which skews how it shares chunks between the ranks of
    a node, or a RuntimeError on several nodes whose world size is no multiple of a machine's GPUs (3 nodes x 6 of 8).
    The sharding (the dataset's stored ``distributed_env``, also in its workers) and the loader's own look-ups (its
    workers' iterator, a restored position) use Lightning's values."""
    world = _DistributedEnv(world_size, global_rank, num_nodes)
    with mock.patch.object(_DistributedEnv, "detect", classmethod(lambda cls: world)):
        yield


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
        """LitData's position (a mid-epoch checkpoint's), for the next iteration only.

        LitData refuses a state whose dataset or cache paths differ from this run's; they differ for the same data
        when the job's temporary folder does (SLURM's per-job ``TMPDIR``) or a local dataset moved: this run's are kept.
        """
        dataset, saved = self.dataset, obj["dataset"]
        if saved.get("input_dir_url") and Path(saved["input_dir_path"]).name != Path(dataset.input_dir.path).name:
            raise ConfigurationError(  # the path's last part is the split's updated_at: optimized again since
                f"{dataset.input_dir.url} was optimized again after this checkpoint was saved: its position in the old "
                "images does not apply; resume from an epoch's end, or start the run over."
            )
        if _images(saved["region_of_interest"]) != _images(dataset.region_of_interest):
            raise ConfigurationError(
                f"the checkpoint's training loader read {_images(saved['region_of_interest'])} images, this one reads "
                f"{_images(dataset.region_of_interest)} (fraction changed?): resume with the same data and fraction."
            )
        obj = {**obj, "dataset": {**saved, "input_dir_path": dataset.input_dir.path,
                                  "cache_dir_path": dataset.cache_dir.path}}  # fmt: skip
        with _lightning_world(*dataset.world):
            super().load_state_dict(obj)
        self._position_loaded = self.restore

    def _get_iterator(self) -> Any:
        """LitData's iterator, built with Lightning's world (it looks the world up when it starts the workers)."""
        with _lightning_world(*self.dataset.world):
            return super()._get_iterator()

    def __iter__(self) -> Iterator[Any]:
        # A generator, as LitData's: Lightning creates an epoch's iterator before it restores a checkpoint's position
        # (see ``restore_loader_position``), and this runs at its first batch, after it.
        epoch = self.run_epoch()
        if not self._position_loaded and epoch is not None:  # a fresh epoch, shuffled as the run's (LitData adds 1)
            self.restore = False
            self.current_epoch = epoch
        self._position_loaded = False
        yield from super().__iter__()


def _images(regions: list[tuple[int, int]]) -> int:
    """How many samples per-chunk regions of interest hold."""
    return sum(end - start for start, end in regions)


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
