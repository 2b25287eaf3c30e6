"""Which images each process loads, in which order, with which random streams: Ultralytics' samplers and seeds."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler, default_collate
from ultralytics.data.build import ContiguousDistributedSampler

_ULTRALYTICS_SHUFFLE_SEED = 6148914691236517205  # build_dataloader's generator offset
NON_DISTRIBUTED_RANK = -1  # Ultralytics' RANK outside DDP, part of its shuffle seed
PADDING_KEY = "padding"  # marks a batch that only keeps an otherwise idle DDP rank in step: never evaluated


class UltralyticsShuffleSampler(Sampler[int]):
    """The exact shuffle order of Ultralytics' ``build_dataloader`` (a persistent InfiniteDataLoader) for one process.

    Ultralytics seeds one generator, draws the loader's base seed from it once, then shuffles with ``RandomSampler``,
    whose every pass ends with one more (empty) ``randperm`` draw. A plain DataLoader re-creates its iterator each
    epoch and may stop before that trailing draw, so this sampler makes it itself, exactly once per pass.
    """

    def __init__(self, dataset_size: int, seed: int) -> None:
        self.dataset_size = dataset_size
        self.generator = torch.Generator()
        self.generator.manual_seed((_ULTRALYTICS_SHUFFLE_SEED + NON_DISTRIBUTED_RANK + seed) % (1 << 64))
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the loader's base-seed draw
        self._trailing_draw_due = False

    def __len__(self) -> int:
        return self.dataset_size

    def __iter__(self) -> Iterator[int]:
        if self._trailing_draw_due:  # the previous pass was not iterated to its end
            self._trailing_draw()
        order = torch.randperm(self.dataset_size, generator=self.generator).tolist()
        self._trailing_draw_due = True
        yield from order
        self._trailing_draw()

    def state_dict(self) -> dict[str, Any]:
        """Generator state, so a resumed run shuffles its next epochs exactly as the uninterrupted run would."""
        return {"generator": self.generator.get_state(), "trailing_draw_due": self._trailing_draw_due}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the shuffle sequence of a saved run."""
        self.generator.set_state(state["generator"])
        self._trailing_draw_due = state["trailing_draw_due"]

    def _trailing_draw(self) -> None:
        """RandomSampler's final ``randperm(n)[:0]`` of each pass."""
        torch.randperm(self.dataset_size, generator=self.generator)
        self._trailing_draw_due = False


class ContiguousValSampler(ContiguousDistributedSampler, DistributedSampler):
    """Ultralytics' contiguous, unrepeated validation shard, typed as a DistributedSampler so Lightning keeps it.

    A rank whose shard is empty (fewer validation batches than ranks) gets one padding image instead (``padding``):
    Lightning skips the whole evaluation epoch of a rank without batches, epoch-end hooks and their collectives
    included, and the other ranks would wait for it forever. Its loader marks that batch with ``PADDING_KEY``.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, batch_size: int) -> None:
        ContiguousDistributedSampler.__init__(self, dataset, num_replicas, batch_size, rank, shuffle=False)
        self.padding = ContiguousDistributedSampler.__len__(self) == 0

    def __iter__(self) -> Iterator[int]:
        return iter([0]) if self.padding else ContiguousDistributedSampler.__iter__(self)

    def __len__(self) -> int:
        return 1 if self.padding else ContiguousDistributedSampler.__len__(self)


class PaddingCollate:
    """A dataset's ``collate_fn`` whose batches carry ``PADDING_KEY``: the module skips them (a picklable callable)."""

    def __init__(self, collate_fn: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.collate_fn(samples), PADDING_KEY: True}


def dataset_collate(dataset: Dataset) -> Callable[[list[Any]], Any]:
    """The dataset's own collate (YOLO datasets), else torch's default (classification's image-folder dataset)."""
    return getattr(dataset, "collate_fn", None) or default_collate


def evaluation_sampler(
    dataset: Dataset, world_size: int, rank: int, batch: int, shuffled: bool, seed: int
) -> Sampler[int] | None:
    """Under DDP this rank's contiguous shard; alone, the dataset's order, or (``shuffled``: classify) Ultralytics'
    seeded shuffle, as ``build_dataloader``'s default for the test loader."""
    if world_size > 1:
        return ContiguousValSampler(dataset, world_size, rank, batch)
    return UltralyticsShuffleSampler(len(dataset), seed) if shuffled else None


def evaluation_collate(dataset: Dataset, sampler: Sampler[int] | None) -> Callable[[list[Any]], Any]:
    """The dataset's collate, marking the batch of a rank that only loads a padding image with ``PADDING_KEY``."""
    collate = dataset_collate(dataset)
    return PaddingCollate(collate) if getattr(sampler, "padding", False) else collate


def worker_generator(seed: int, world_size: int, rank: int) -> torch.Generator:
    """The loader generator its workers' seeds come from: under DDP each rank's augmentation draws its own numbers
    (Ultralytics' ``build_dataloader``: seed + RANK)."""
    generator = torch.Generator()
    generator.manual_seed(seed if world_size == 1 else (_ULTRALYTICS_SHUFFLE_SEED + rank + seed) % (1 << 64))
    return generator


def seed_main_process(seed: int, rank: int) -> None:
    """Seed this DDP rank's own random streams as Ultralytics' ``init_seeds(seed + 1 + RANK)``: augmentation drawn
    in the main process (``workers=0``) differs between ranks (Lightning seeds every rank alike)."""
    random.seed(seed + 1 + rank)
    np.random.seed(seed + 1 + rank)
    torch.manual_seed(seed + 1 + rank)


def restore_loader_position(trainer: L.Trainer) -> None:
    """Give the training loader the position a mid-epoch checkpoint saved (LitData's loader holds one), before the
    resumed epoch starts.

    Lightning drops it when ``estimated_stepping_batches`` built the loader before the checkpoint was restored, as
    ``configure_optimizers`` does (Lightning issue #20550); its own loading step, run here, applies it only when
    restarting mid-epoch and only once. A loader without a position (files, after a streamed run) drops the saved one,
    as Lightning always did.
    """
    fit_loop = trainer.fit_loop
    if not hasattr(trainer.train_dataloader, "load_state_dict"):
        fit_loop._combined_loader_states_to_load = []
    elif hasattr(fit_loop, "_load_combined_loader_states"):  # Lightning 2.6's; a later one may load it itself
        fit_loop._load_combined_loader_states()
