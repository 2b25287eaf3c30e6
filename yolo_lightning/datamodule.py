"""``YOLODataModule``: Ultralytics' datasets (every task), augmentations and collate behind plain DataLoaders."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from copy import copy
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from ultralytics.cfg import DEFAULT_CFG
from ultralytics.data.build import seed_worker
from ultralytics.utils import IterableSimpleNamespace
from ultralytics.utils.checks import check_imgsz

from yolo_lightning.dataset_checks import (
    SPLITS,
    DatasetError,
    check_task_data,
    count_images,
    check_dense_labels_exist,
    find_dense_label_problems,
    find_label_problems,
    image_files,
    load_classification_config,
    load_data_config,
    missing_labels_message,
    report_label_problems,
    unusable_images,
)
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.hardware import loader_workers, pin_memory
from yolo_lightning.image_cache import write_disk_cache
from yolo_lightning.hyperparameters import (
    DATAMODULE_ARGS,
    check_no_unknown_arguments,
    ultralytics_namespace,
)
from yolo_lightning.predict import inference_loader
from yolo_lightning.sampling import (
    UltralyticsShuffleSampler,
    dataset_collate,
    evaluation_collate,
    evaluation_sampler,
    seed_main_process,
    worker_generator,
)
from yolo_lightning.stream_store import is_optimized, optimized_config
from yolo_lightning.streamed_datasets import build_streamed_dataset
from yolo_lightning.synthetic import synthetic_sizes, synthetic_source
from yolo_lightning.tasks import DETECT, GRID_STRIDE, Task

D = DEFAULT_CFG
STAGE_SPLITS = {  # the data.yaml splits each Trainer function reads
    TrainerFn.FITTING: ("train", "val"),
    TrainerFn.VALIDATING: ("val",),
    TrainerFn.TESTING: ("test",),
    TrainerFn.PREDICTING: ("val",),
}


class YOLODataModule(L.LightningDataModule):
    """Serve an Ultralytics dataset the way the model's task trainer does: a ``data.yaml`` (detect, segment, semantic,
    depth, pose, obb), an image-folder tree (classify), or ``"synthetic"`` (the embedded shapes, in the task's format: 128 training and 32
    validation images; ``"synthetic<N>"``: N and N // 4).

    The task is the trained module's (``YOLOModule.task``, inferred from its model as Ultralytics does); without a
    module, detect. Argument names and defaults are Ultralytics' train arguments; ``imgsz`` defaults to the task's
    (640, classify 224). ``batch`` is the global batch size: under DDP each rank loads ``batch // world_size``
    (validation twice that, except OBB, as Ultralytics does).

    ``predict`` reads Ultralytics' ``source`` (an image, a folder, a glob, a video or a ``.txt`` list, one image at a
    time as ``YOLO.predict``; frames of a video every ``vid_stride``), default: the ``val`` split's images.
    """

    def __init__(
        self,
        data: str = "synthetic",
        imgsz: int | None = None,
        batch: int = D.batch,
        workers: int = D.workers,
        seed: int = D.seed,
        cache: bool | str = False,
        fraction: float = D.fraction,
        single_cls: bool = D.single_cls,
        classes: list[int] | None = None,
        close_mosaic: int = D.close_mosaic,
        overlap_mask: bool = D.overlap_mask,
        mask_ratio: int = D.mask_ratio,
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
        erasing: float = D.erasing,
        auto_augment: str | None = D.auto_augment,
        source: str | None = None,
        vid_stride: int = D.vid_stride,
        storage_options: dict[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        check_no_unknown_arguments("YOLODataModule", unknown)
        if not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(f"batch={batch!r} must be an integer >= 1 (Ultralytics' AutoBatch, batch=-1, is not supported).")
        if workers < 0:
            raise ConfigurationError(f"workers={workers!r} must be >= 0.")
        synthetic_sizes(data)  # a bad "synthetic<N>" fails here, not at setup
        imgsz = _round_imgsz(imgsz) if imgsz is not None else None
        self.save_hyperparameters(ignore=["storage_options"])  # credentials stay out of checkpoints and logs
        self.storage_options = storage_options
        self.streamed = is_optimized(data)
        self.fixed_task: Task | None = None  # optimize_dataset's task; else the trained module's
        self.hparams.imgsz = imgsz
        self._hyps: dict[str, IterableSimpleNamespace] = {}
        self._hyp(DETECT)  # Ultralytics' range checks, at construction
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
    def task(self) -> Task:
        """The task of the module being trained (detect without one)."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        return self.fixed_task or getattr(module, "task", DETECT)

    @property
    def imgsz(self) -> int:
        """``imgsz``, or the task's Ultralytics default (640; classify 224)."""
        return self.hparams.imgsz or self.task.default_imgsz

    @property
    def hyp(self) -> IterableSimpleNamespace:
        """Ultralytics' argument namespace the datasets read, for the current task."""
        return self._hyp(self.task)

    def _hyp(self, task: Task) -> IterableSimpleNamespace:
        if task.name not in self._hyps:
            args = {k: self.hparams[k] for k in DATAMODULE_ARGS - {"data", "batch", "workers", "imgsz"}}
            imgsz = self.hparams.imgsz or task.default_imgsz
            self._hyps[task.name] = ultralytics_namespace("YOLODataModule", **args, imgsz=imgsz, task=task.name)
        return self._hyps[task.name]

    @property
    def data_path(self) -> str:
        """What the data was read from: the data.yaml, or the classification folder (after ``setup``)."""
        return self._data_source()

    @property
    def batch(self) -> int:
        """Global batch size (all ranks together), as Ultralytics' ``batch``."""
        return self.hparams.batch

    @property
    def names(self) -> dict[int, str] | None:
        """Class names of the dataset (after ``setup``; None when predicting from a ``source``: the model's names)."""
        return self.data_config["names"] if self.data_config is not None else None

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
        if not hasattr(self.train_dataset, "close_mosaic"):  # classification: no mosaic to close
            return
        rank_zero_info(f"Closing dataloader mosaic (close_mosaic={self.hparams.close_mosaic}).")
        self.mosaic_closed = True
        self.train_dataset.mosaic = False
        self.train_dataset.close_mosaic(hyp=copy(self.hyp))
        loader = self._train_loader
        iterator = getattr(loader, "_iterator", None)  # torch keeps persistent workers here between epochs
        if iterator is not None:
            iterator._shutdown_workers()
            loader._iterator = None

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move only the batch's tensors, as DetectionTrainer.preprocess_batch does (file names and shapes stay).

        Cheaper than Lightning's default, which walks every list and tuple of the batch on each step. Predict batches
        (Ultralytics' paths and original images) stay as they are: the predictor moves its input itself.
        """
        if not isinstance(batch, dict):
            return batch
        non_blocking = device.type == "cuda"
        return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def prepare_data(self) -> None:
        """Once per node: write the synthetic dataset if asked, check the splits this run uses, build their caches."""
        fn = self.trainer.state.fn if self.trainer is not None else None
        if fn == TrainerFn.PREDICTING and self.hparams.source is not None:
            return  # predict reads its source: no dataset to check
        splits = STAGE_SPLITS.get(fn)  # without a Trainer function: every split the data has
        config = self._load_config(splits, warn=True)
        if self.streamed:  # checked and cached when it was optimized
            return
        for split in splits or SPLITS:
            if config.get(split):
                if self.task.labels != "folders":  # a classification tree was checked by _load_config
                    self._check_labels(config, split, fn)
                self._build_label_cache(config, split)

    def setup(self, stage: str) -> None:
        """On every rank: resolve the data and build the datasets this stage needs (predict from a ``source``: none)."""
        if stage == "predict" and self.hparams.source is not None:
            return
        self.data_config = self._load_config(STAGE_SPLITS[TrainerFn(stage)])
        if stage == "fit":
            self.train_dataset = self._build_dataset(self.data_config, "train", self._per_rank_batch("train"))
        if stage in {"fit", "validate"}:
            self.val_dataset = self._build_dataset(self.data_config, "val", self._per_rank_batch("val"))
        if stage == "test":
            self.test_dataset = self._build_dataset(self.data_config, "test", self._per_rank_batch("val"))

    def validation_batch(self) -> int:
        """This process's validation batch (twice the training batch, OBB the same), as Ultralytics' test loader."""
        return self._per_rank_batch("val")

    def workers_per_process(self) -> int:
        """Loader processes this process's training loader starts (Ultralytics' cap per local device applied)."""
        if self.train_dataset is None:
            return 0
        local_devices = self.trainer.num_devices if self.trainer is not None else 1
        batches = math.ceil(len(self.train_dataset) / max(1, self._per_rank_batch("train")))
        return loader_workers(self.hparams.workers, local_devices, batches)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, in the same order as Ultralytics' ``build_dataloader`` for the same seed."""
        dataset = self.train_dataset
        batch = min(self._per_rank_batch("train"), len(dataset))
        world_size, rank = self._world()
        seed = self.hparams.seed
        if world_size > 1:
            seed_main_process(seed, rank)
        if self.mosaic_closed or self._starts_without_mosaic():
            self._train_loader = None
            self.close_mosaic()  # before any iterator exists, so even the first epoch's workers see it
        if self.streamed:  # LitData's sharded chunk order; the loader's own state resumes it (Lightning saves it)
            from yolo_lightning.streamed_loader import ChunkOrderedImages, RunEpochLoader

            nodes = self.trainer.num_nodes if self.trainer is not None else 1
            stream = ChunkOrderedImages(dataset, seed, world=(world_size, rank, nodes))
            # A persistent worker's copy of the stream counts epochs itself, when it runs out: an epoch cut short
            # (limit_train_batches) would leave it replaying the same order, so then workers restart each epoch
            limit = self.trainer.limit_train_batches if self.trainer is not None else 1.0
            whole_epochs = isinstance(limit, float) and limit == 1.0  # an int 1 is one batch per epoch
            self._train_loader = self._loader(
                stream, batch, None, self.hparams.workers, 4, dataset_collate(dataset),
                loader_class=partial(RunEpochLoader, run_epoch=self._run_epoch), persistent=whole_epochs,
            )  # fmt: skip
            if len(self._train_loader) == 0:  # LitData's drop_last under DDP: every rank runs the same batches
                raise ConfigurationError(
                    f"{len(dataset)} training images give no batch of {batch} to each of the {world_size} processes: "
                    "lower batch or use fewer devices."
                )
            return self._train_loader
        if world_size > 1:
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        else:
            sampler = UltralyticsShuffleSampler(len(dataset), seed)
            if self._sampler_state is not None:
                sampler.load_state_dict(self._sampler_state)
            self._train_sampler = sampler
        self._train_loader = self._loader(dataset, batch, sampler, self.hparams.workers, prefetch=4)
        return self._train_loader

    def _run_epoch(self) -> int | None:
        """The attached Trainer's current epoch (None without one)."""
        return self.trainer.current_epoch if self.trainer is not None else None

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
        sampler = evaluation_sampler(dataset, world_size, rank, batch, self.task.val_shuffled, self.hparams.seed)
        collate = evaluation_collate(dataset, sampler)
        return self._loader(dataset, batch, sampler, self.hparams.workers * 2, prefetch=2, collate=collate)

    def test_dataloader(self) -> DataLoader:
        """The ``test`` split, batched and sharded like validation."""
        return self._evaluation_loader(self.test_dataset)

    @property
    def predict_source(self) -> str | list[str]:
        """What ``predict`` reads: ``source``, or the ``val`` split's images."""
        if self.hparams.source is None and self.streamed:  # Ultralytics' predict loaders read files, streams, URLs
            raise ConfigurationError(
                f"data={self.hparams.data!r} holds its images in LitData chunks, which predict cannot read: pass "
                "source= (--data.source) an image, folder, video or URL to predict on."
            )
        return self.hparams.source if self.hparams.source is not None else self.data_config["val"]

    def predict_dataloader(self) -> DataLoader:
        """Ultralytics' loader for ``predict_source``: its batches (paths, original images, info) as they are."""
        return inference_loader(self.predict_source, vid_stride=self.hparams.vid_stride)

    def _loader(
        self,
        dataset: Dataset,
        batch: int,
        sampler: Sampler[int] | None,
        workers: int,
        prefetch: int,
        collate: Callable[[list[Any]], Any] | None = None,
        loader_class: Callable[..., DataLoader] = DataLoader,
        persistent: bool = True,
    ) -> DataLoader:
        """A DataLoader (or ``loader_class``: LitData's) with Ultralytics' collate, worker seeding and worker-count rule
        (workers honoured on CPU); ``persistent``: workers kept between epochs, as Ultralytics' InfiniteDataLoader."""
        batches = math.ceil((len(sampler) if sampler is not None else len(dataset)) / batch)
        local_devices = self.trainer.num_devices if self.trainer is not None else 1
        num_workers = loader_workers(workers, local_devices, batches)  # at most cpu_count // local devices
        return loader_class(
            dataset,
            batch_size=batch,
            sampler=sampler,
            num_workers=num_workers,
            prefetch_factor=prefetch if num_workers > 0 else None,
            pin_memory=pin_memory(self._root_device()),
            collate_fn=collate or dataset_collate(dataset),
            worker_init_fn=seed_worker,
            generator=worker_generator(self.hparams.seed, *self._world()),
            persistent_workers=persistent and num_workers > 0,  # mosaic's image buffer persists between epochs
        )

    def _data_source(self) -> str:
        """The data.yaml (or classification folder), generating the embedded dataset for ``"synthetic[<N>]"``."""
        return synthetic_source(self.hparams.data, self.task.name)

    def _load_config(self, splits: tuple[str, ...] | None, warn: bool = False) -> dict[str, Any]:
        """The checked dataset config for the task: a data.yaml's (plus the task's own keys) or a folder tree's."""
        task = self.task
        if self.streamed:
            return optimized_config(self.hparams.data, task, splits, self.storage_options)
        if task.labels == "folders":
            return load_classification_config(self._data_source(), splits, warn=warn)
        config = load_data_config(self._data_source(), splits)
        for message in check_task_data(config, task.name, config.get("yaml_file")):
            if warn:
                warnings.warn(message, stacklevel=3)
        return task.complete_data(config)

    def _build_dataset(self, config: dict[str, Any], split: str, batch: int, cache_images: bool = True) -> Dataset:
        """The dataset the task's trainer builds (detect: YOLODataset with rect validation; RT-DETR, classify: theirs);
        ``cache_images=False``: without loading images into ``cache`` (labels only, as ``prepare_data`` needs)."""
        mode = "train" if split == "train" else "val"
        hyp = self.hyp if cache_images else IterableSimpleNamespace(**{**vars(self.hyp), "cache": False})
        if self.streamed:
            return build_streamed_dataset(hyp, config["path"], split, batch, config, mode, self.storage_options, GRID_STRIDE)
        return self.task.build_dataset(hyp, str(config[split]), batch, config, mode)

    def labelled_datasets(self) -> tuple[dict[str, Any], dict[str, Dataset]]:
        """The checked dataset config and each split's dataset built without loading its images (its labels), after
        the checks and label caches of ``prepare_data``: what ``optimize_dataset`` converts."""
        self.prepare_data()
        config = self._load_config(None)
        return config, {s: self._build_dataset(config, s, 1, cache_images=False) for s in SPLITS if config.get(s)}

    def _check_labels(self, config: dict[str, Any], split: str, fn: TrainerFn | None) -> None:
        """Fail on a split without label files (train; others warn) or valid labels; warn about invalid label lines
        (masks and depth maps: fail when there are none; ``_build_label_cache`` reports the images Ultralytics skips)."""
        source = config[split]
        if self.task.per_pixel_labels(config):
            check_dense_labels_exist(source, config, self.task.labels)
            return
        if (missing := missing_labels_message(source, split)) is not None:
            if split == "train":
                raise DatasetError(missing)
            if fn != TrainerFn.PREDICTING:
                warnings.warn(missing, stacklevel=2)
            return
        problems = find_label_problems(source, config["nc"], self.task.name, config.get("kpt_shape"))
        self._report_label_problems(problems, count_images(source), split)

    @staticmethod
    def _report_label_problems(problems: list[Any], n_images: int, split: str) -> None:
        """Refuse a split whose every image (of ``n_images``) has an invalid label; warn about the others."""
        if not problems:
            return
        message = report_label_problems(problems, split)
        if len({p.file for p in problems if p.skipped}) >= n_images:
            raise DatasetError(f"every image of the '{split}' split has an invalid label. {message}")
        warnings.warn(message, stacklevel=2)

    def _build_label_cache(self, config: dict[str, Any], split: str) -> None:
        """Build the split's dataset without loading its images (Ultralytics writes its label cache; ``setup`` loads
        them for ``cache="ram"``), write ``cache="disk"``'s files, report the images it skipped as unusable."""
        if self.task.labels == "folders":  # ClassificationDataset verifies (and reports) its images, loads them lazily
            self._write_disk_cache(self._build_dataset(config, split, self._per_rank_batch(split)))
            return
        # Only skipped images are opened again: Ultralytics' reason for an unreadable one is its failed HEIF import
        images = image_files(config[split])
        try:
            dataset = self._build_dataset(config, split, self._per_rank_batch(split), cache_images=False)
        except RuntimeError as e:  # get_labels: no usable image at all
            if self.task.per_pixel_labels(config):  # every mask or depth map was refused: say why
                self._report_label_problems(find_dense_label_problems(images, config, self.task.labels), len(images), split)
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
        fraction = dataset.fraction  # Ultralytics keeps the first images when fraction < 1 (BaseDataset.get_img_files)
        scanned = images[: fraction if isinstance(fraction, int) else max(1, round(len(images) * fraction))]
        kept = set(dataset.im_files)
        dropped = [f for f in scanned if f not in kept]
        if dropped and self.task.per_pixel_labels(config):
            problems = find_dense_label_problems(dropped, config, self.task.labels)
            self._report_label_problems(problems, len(scanned), split)
            dropped = [f for f in dropped if f not in {str(p.file) for p in problems}]  # reported: not again
        for image, reason in unusable_images(dropped).items():
            warnings.warn(f"{image}: skipped, {reason}", stacklevel=2)
        self._write_disk_cache(dataset)

    def _write_disk_cache(self, dataset: Dataset) -> None:
        """``cache="disk"``: every ``.npy`` written whole, once per node, before any rank's dataset reads them."""
        if str(self.hparams.cache).lower() == "disk":
            write_disk_cache(dataset)

    def _per_rank_batch(self, split: str) -> int:
        """Per-rank batch: ``batch // world_size`` for training, twice that for validation (OBB: the same)."""
        world_size, _ = self._world()
        batch = self.hparams.batch // world_size
        if batch < 1:
            raise ConfigurationError(f"batch={self.hparams.batch} is smaller than the number of processes ({world_size}).")
        return batch if split == "train" else batch * self.task.val_batch_factor

    def _root_device(self) -> torch.device | None:
        """The device the batches go to (None without a Trainer)."""
        return getattr(getattr(self.trainer, "strategy", None), "root_device", None)

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
