"""``YOLODataModule``: Ultralytics' YOLODataset, augmentations and collate behind plain DataLoaders."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from copy import copy
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from ultralytics.cfg import DEFAULT_CFG
from ultralytics.data.build import (
    ContiguousDistributedSampler,
    build_yolo_dataset,
    seed_worker,
)
from ultralytics.models.rtdetr.val import RTDETRDataset
from ultralytics.utils import IterableSimpleNamespace
from ultralytics.utils.checks import check_imgsz

from yolo_lightning.dataset_checks import (
    SPLITS,
    DatasetError,
    count_images,
    find_label_problems,
    image_files,
    load_data_config,
    missing_labels_message,
    report_label_problems,
    unusable_images,
)
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.hardware import loader_workers
from yolo_lightning.hyperparameters import (
    DATAMODULE_ARGS,
    check_no_unknown_arguments,
    ultralytics_namespace,
)
from yolo_lightning.synthetic import synthetic_data_yaml

D = DEFAULT_CFG
GRID_STRIDE = 32  # DetectionTrainer rounds imgsz to max(model stride, 32); every shipped detector has stride 32
_ULTRALYTICS_SHUFFLE_SEED = 6148914691236517205  # build_dataloader's generator offset
NON_DISTRIBUTED_RANK = -1  # Ultralytics' RANK outside DDP, part of its shuffle seed
STAGE_SPLITS = {  # the data.yaml splits each Trainer function reads
    TrainerFn.FITTING: ("train", "val"),
    TrainerFn.VALIDATING: ("val",),
    TrainerFn.TESTING: ("test",),
    TrainerFn.PREDICTING: ("val",),
}


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


PADDING_KEY = "padding"  # marks a batch that only keeps an otherwise idle DDP rank in step: never evaluated


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

    def __init__(self, collate_fn: Any) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.collate_fn(samples), PADDING_KEY: True}


class YOLODataModule(L.LightningDataModule):
    """Serve a YOLO-format detection dataset (a ``data.yaml``, or ``"synthetic"``) the way DetectionTrainer does.

    Argument names and defaults are Ultralytics' train arguments. ``batch`` is the global batch size: under DDP each
    rank loads ``batch // world_size`` (validation twice that, as Ultralytics does).
    """

    def __init__(
        self,
        data: str = "synthetic",
        imgsz: int = D.imgsz,
        batch: int = D.batch,
        workers: int = D.workers,
        seed: int = D.seed,
        cache: bool | str = False,
        fraction: float = D.fraction,
        single_cls: bool = D.single_cls,
        classes: list[int] | None = None,
        close_mosaic: int = D.close_mosaic,
        hsv_h: float = D.hsv_h,
        hsv_s: float = D.hsv_s,
        hsv_v: float = D.hsv_v,
        degrees: float = D.degrees,
        translate: float = D.translate,
        scale: float = D.scale,
        shear: float = D.shear,
        perspective: float = D.perspective,
        flipud: float = D.flipud,
        fliplr: float = D.fliplr,
        bgr: float = D.bgr,
        mosaic: float = D.mosaic,
        mixup: float = D.mixup,
        cutmix: float = D.cutmix,
        copy_paste: float = D.copy_paste,
        copy_paste_mode: str = D.copy_paste_mode,
        **unknown: Any,
    ) -> None:
        super().__init__()
        check_no_unknown_arguments("YOLODataModule", unknown)
        if not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(f"batch={batch!r} must be an integer >= 1 (Ultralytics' AutoBatch, batch=-1, is not supported).")
        if workers < 0:
            raise ConfigurationError(f"workers={workers!r} must be >= 0.")
        imgsz = _round_imgsz(imgsz)
        self.save_hyperparameters()
        self.hparams.imgsz = imgsz
        self.hyp: IterableSimpleNamespace = ultralytics_namespace(
            "YOLODataModule", **{k: self.hparams[k] for k in DATAMODULE_ARGS - {"data", "batch", "workers"}}, task="detect"
        )
        self.data_config: dict[str, Any] | None = None
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self._train_sampler: UltralyticsShuffleSampler | None = None
        self._train_loader: DataLoader | None = None
        self.mosaic_closed = False
        self._sampler_state: dict[str, Any] | None = None
        self.predict_dataset: Dataset | None = None

    @property
    def batch(self) -> int:
        """Global batch size (all ranks together), as Ultralytics' ``batch``."""
        return self.hparams.batch

    @property
    def names(self) -> dict[int, str]:
        """Class names of the dataset (available after ``setup``)."""
        if self.data_config is None:
            raise RuntimeError("YOLODataModule.names is known after setup(); call dm.setup('fit') first.")
        return self.data_config["names"]

    def state_dict(self) -> dict[str, Any]:
        """Shuffle order and close_mosaic state, saved in Lightning checkpoints so a resumed run continues them."""
        state: dict[str, Any] = {"mosaic_closed": self.mosaic_closed}
        if self._train_sampler is not None:  # DDP samplers are seeded per epoch instead
            state["train_sampler"] = self._train_sampler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the shuffle order and close_mosaic state of a checkpointed run (applied when the loader is built)."""
        self._sampler_state = state_dict.get("train_sampler")
        self.mosaic_closed = state_dict.get("mosaic_closed", False)

    def close_mosaic(self) -> None:
        """Turn off mosaic/mixup/cutmix/copy-paste for the rest of the run, as DetectionTrainer's close_mosaic.

        Like Ultralytics' ``train_loader.reset()``, persistent workers are restarted so their dataset copies see it;
        call it before an epoch's iterator exists (``CloseMosaic`` does, at epoch start).
        """
        rank_zero_info(f"Closing dataloader mosaic (close_mosaic={self.hparams.close_mosaic}).")
        self.mosaic_closed = True
        self.train_dataset.mosaic = False
        self.train_dataset.close_mosaic(hyp=copy(self.hyp))
        loader = self._train_loader
        iterator = getattr(loader, "_iterator", None)  # torch keeps persistent workers here between epochs
        if iterator is not None:
            iterator._shutdown_workers()
            loader._iterator = None

    def transfer_batch_to_device(self, batch: dict[str, Any], device: torch.device, dataloader_idx: int) -> dict[str, Any]:
        """Move only the batch's tensors, as DetectionTrainer.preprocess_batch does (file names and shapes stay).

        Cheaper than Lightning's default, which walks every list and tuple of the batch on each step.
        """
        non_blocking = device.type == "cuda"
        return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def prepare_data(self) -> None:
        """Once per node: write the synthetic dataset if asked, check the splits this run uses, build their caches."""
        fn = self.trainer.state.fn if self.trainer is not None else None
        splits = STAGE_SPLITS.get(fn)  # without a Trainer function: every split the data.yaml has
        config = load_data_config(self._data_yaml(), splits)
        for split in splits or SPLITS:
            if config.get(split):
                self._check_labels(config, split, fn)
                self._build_label_cache(config, split)

    def setup(self, stage: str) -> None:
        """On every rank: resolve the data.yaml and build the datasets this stage needs."""
        self.data_config = load_data_config(self._data_yaml(), STAGE_SPLITS[TrainerFn(stage)])
        if stage == "fit":
            self.train_dataset = self._build_dataset(self.data_config, "train", self._per_rank_batch("train"))
        if stage in {"fit", "validate"}:
            self.val_dataset = self._build_dataset(self.data_config, "val", self._per_rank_batch("val"))
        if stage == "test":
            self.test_dataset = self._build_dataset(self.data_config, "test", self._per_rank_batch("val"))
        if stage == "predict":
            self.predict_dataset = self._build_dataset(self.data_config, "val", self._per_rank_batch("val"))

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, in the same order as Ultralytics' ``build_dataloader`` for the same seed."""
        dataset = self.train_dataset
        batch = min(self._per_rank_batch("train"), len(dataset))
        world_size, rank = self._world()
        seed = self.hparams.seed
        if world_size > 1:
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        else:
            sampler = UltralyticsShuffleSampler(len(dataset), seed)
            if self._sampler_state is not None:
                sampler.load_state_dict(self._sampler_state)
            self._train_sampler = sampler
        if self.mosaic_closed or self._starts_without_mosaic():
            self._train_loader = None
            self.close_mosaic()  # before any iterator exists, so even the first epoch's workers see it
        self._train_loader = self._loader(dataset, batch, sampler, self.hparams.workers, prefetch=4)
        return self._train_loader

    def _starts_without_mosaic(self) -> bool:
        """True when a fresh run's first epoch already falls in the last ``close_mosaic`` epochs."""
        max_epochs = getattr(self.trainer, "max_epochs", None)
        close = self.hparams.close_mosaic
        return bool(close) and max_epochs is not None and max_epochs > 0 and max_epochs - close <= 0

    def val_dataloader(self) -> DataLoader:
        """Validation batches in rect (aspect-sorted) order; under DDP each image goes to exactly one rank."""
        return self._evaluation_loader(self.val_dataset)

    def _evaluation_loader(self, dataset: Dataset) -> DataLoader:
        """Unshuffled batches of twice the training batch, each image on exactly one rank (some ranks may get none).

        Like Ultralytics, with ``workers * 2`` loader processes, capped at this process's share of the CPU cores.
        """
        batch = self._per_rank_batch("val")
        world_size, rank = self._world()
        sampler = ContiguousValSampler(dataset, world_size, rank, batch) if world_size > 1 else None
        collate = PaddingCollate(dataset.collate_fn) if getattr(sampler, "padding", False) else dataset.collate_fn
        return self._loader(dataset, batch, sampler, self.hparams.workers * 2, prefetch=2, collate=collate)

    def test_dataloader(self) -> DataLoader:
        """The ``test`` split, batched and sharded like validation."""
        return self._evaluation_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        """The ``val`` split's images, batched like validation, for ``predict``."""
        return self._evaluation_loader(self.predict_dataset)

    def _loader(
        self, dataset: Dataset, batch: int, sampler: Any, workers: int, prefetch: int, collate: Any = None
    ) -> DataLoader:
        """A DataLoader with Ultralytics' collate, worker seeding and worker-count rule (workers honoured on CPU)."""
        batches = math.ceil((len(sampler) if sampler is not None else len(dataset)) / batch)
        local_devices = self.trainer.num_devices if self.trainer is not None else 1
        num_workers = loader_workers(workers, local_devices, batches)  # at most cpu_count // local devices
        worker_seeds = torch.Generator()
        worker_seeds.manual_seed(self.hparams.seed)
        return DataLoader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            shuffle=False,
            num_workers=num_workers,
            prefetch_factor=prefetch if num_workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate or dataset.collate_fn,
            worker_init_fn=seed_worker,
            generator=worker_seeds,
            persistent_workers=num_workers > 0,  # as Ultralytics' InfiniteDataLoader: mosaic's image buffer persists
        )

    def _data_yaml(self) -> str:
        """Path of the data.yaml, generating the embedded synthetic dataset for ``data="synthetic"``."""
        data = self.hparams.data
        return str(synthetic_data_yaml()) if data == "synthetic" else data

    def _build_dataset(self, config: dict[str, Any], split: str, batch: int) -> Dataset:
        """The dataset DetectionTrainer builds (val: rect, pad 0.5), or RTDETRTrainer's for an RT-DETR module."""
        mode = "train" if split == "train" else "val"
        if getattr(self.trainer and self.trainer.lightning_module, "is_rtdetr", False):
            return RTDETRDataset(
                img_path=config[split], imgsz=self.hyp.imgsz, batch_size=batch, augment=mode == "train",
                hyp=self.hyp, rect=False, cache=self.hyp.cache or None, single_cls=self.hyp.single_cls,
                prefix=f"{mode}: ", classes=self.hyp.classes, data=config,
                fraction=self.hyp.fraction if mode == "train" else 1.0,
            )  # fmt: skip
        return build_yolo_dataset(
            self.hyp, config[split], batch, config, mode=mode, rect=mode == "val", stride=GRID_STRIDE
        )

    def _check_labels(self, config: dict[str, Any], split: str, fn: TrainerFn | None) -> None:
        """Fail on a split without label files (train; others warn) or valid labels; warn about invalid label lines."""
        source = config[split]
        if (missing := missing_labels_message(source, split)) is not None:
            if split == "train":
                raise DatasetError(missing)
            if fn != TrainerFn.PREDICTING:
                warnings.warn(missing, stacklevel=2)
            return
        problems = find_label_problems(source, config["nc"])
        if not problems:
            return
        message = report_label_problems(problems, split)
        if len({p.file for p in problems}) >= count_images(source):
            raise DatasetError(f"every image of the '{split}' split has an invalid label. {message}")
        warnings.warn(message, stacklevel=2)

    def _build_label_cache(self, config: dict[str, Any], split: str) -> None:
        """Build the split's dataset (Ultralytics writes its label cache); report the images it skipped as unusable."""
        # Only skipped images are opened again: Ultralytics' reason for an unreadable one is its failed HEIF import
        images = image_files(config[split])
        try:
            dataset = self._build_dataset(config, split, self._per_rank_batch(split))
        except RuntimeError as e:  # get_labels: no usable image at all
            unusable = unusable_images(images)
            if not unusable:
                raise
            listed = "; ".join(f"{image}: {reason}" for image, reason in list(unusable.items())[:3])
            more = f"; and {len(unusable) - 3} more" if len(unusable) > 3 else ""
            what = (
                f"every image of the '{split}' split is unusable"
                if len(unusable) == len(set(images))
                else f"no usable image in the '{split}' split ({len(unusable)} of {len(set(images))} are unusable)"
            )
            raise DatasetError(f"{what}: {listed}{more}; replace or remove these files") from e
        scanned = images[: len(dataset.label_files)]  # Ultralytics keeps the first images when fraction < 1
        kept = set(dataset.im_files)
        for image, reason in unusable_images(f for f in scanned if f not in kept).items():
            warnings.warn(f"{image}: skipped, {reason}", stacklevel=2)

    def _per_rank_batch(self, split: str) -> int:
        """Per-rank batch: ``batch // world_size`` for training, twice that for validation."""
        world_size, _ = self._world()
        batch = self.hparams.batch // world_size
        if batch < 1:
            raise ConfigurationError(f"batch={self.hparams.batch} is smaller than the number of processes ({world_size}).")
        return batch if split == "train" else batch * 2

    def _world(self) -> tuple[int, int]:
        """(world size, global rank) of the attached Trainer, (1, 0) without one."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)


def _round_imgsz(imgsz: int) -> int:
    """Round ``imgsz`` up to a multiple of the grid stride (32), warning with the value used, as Ultralytics does."""
    if not isinstance(imgsz, int) or imgsz < 1:
        raise ConfigurationError(f"imgsz={imgsz!r} must be a positive integer (one side; training images are square).")
    rounded = check_imgsz(imgsz, stride=GRID_STRIDE, min_dim=1, max_dim=1, floor=GRID_STRIDE)
    if rounded != imgsz:
        warnings.warn(f"imgsz={imgsz} is not a multiple of the stride {GRID_STRIDE}; using imgsz={rounded}.", stacklevel=3)
    return rounded
