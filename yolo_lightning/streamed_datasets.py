"""Ultralytics' own datasets (YOLODataset, SemanticDataset, PolygonSemanticDataset, DepthDataset) reading their images,
masks and depth maps from an optimized dataset (LitData chunks, local, ``s3://`` or ``gs://``) instead of files.

Everything else is Ultralytics': the labels (its label cache, stored with the chunks), every augmentation (mosaic
through its image buffer, mixup, cutmix, copy-paste, HSV, affine), ``close_mosaic``, rect validation batches and the
collate. Training reads the images in LitData's chunk order (``streamed_loader``: each sample goes through
``training_sample``); validation and test fetch each image by index (LitData's random access: the chunk holding it is
downloaded once into a local cache), so rect batches keep Ultralytics' aspect-ratio order.
"""

from __future__ import annotations

import copy
import io
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from ultralytics.data.dataset import (
    DATASET_CACHE_VERSION,
    ClassificationDataset,
    DepthDataset,
    PolygonSemanticDataset,
    SemanticDataset,
    YOLODataset,
)
from ultralytics.data.augment import BaseMixTransform, Mosaic, classify_augmentations, classify_transforms
from ultralytics.data.utils import add_polygon_background, get_split_fraction
from ultralytics.utils import IterableSimpleNamespace, colorstr
from ultralytics.utils.patches import PIL_FALLBACK_SUFFIXES, imread

from yolo_lightning.errors import ConfigurationError
from yolo_lightning.stream_store import (
    allow_plain_http, load_label_cache, node_chunk_cache, opening_in_node_cache, split_location,
)  # fmt: skip


class _StreamedImages:
    """Mixin for an Ultralytics dataset: images (and per-pixel labels) from LitData chunks, labels from the stored
    label cache. ``location``: the optimized dataset; ``split``: which of its splits."""

    def __init__(
        self, *args: Any, location: str, split: str, storage_options: dict[str, Any] | None, **kwargs: Any
    ) -> None:
        self._open_optimized(location, split, storage_options)
        super().__init__(*args, **kwargs)
        self._label_cache = None  # Ultralytics holds the labels now; workers need no second copy

    def _open_optimized(self, location: str, split: str, storage_options: dict[str, Any] | None) -> None:
        """Read the split's stored labels and open its chunks."""
        self.stream_location = split_location(location, split)
        self.storage_options = storage_options
        self._label_cache: dict[str, Any] | None = load_label_cache(location, split, storage_options)
        if self._label_cache.get("version") != DATASET_CACHE_VERSION:
            raise ConfigurationError(
                f"{self.stream_location}: its labels were stored by an Ultralytics with label cache version "
                f"{self._label_cache.get('version')!r}, this one reads {DATASET_CACHE_VERSION!r}: optimize it again."
            )
        # The chunks hold the images in the stored label cache's order; Ultralytics re-sorts its labels and images
        # (rect batches sort them by aspect ratio), so a sample is found by its image's name, never by position.
        self._positions = {label["im_file"]: k for k, label in enumerate(self._label_cache["labels"])}
        self._last: tuple[int, dict[str, Any]] | None = None
        self._indices: dict[int, int] | None = None  # chunk position -> Ultralytics' index, built on first use
        allow_plain_http(storage_options)
        # The node's chunk cache of this version of the split, shared by every rank and loader worker of the machine
        # and by later runs (LitData locks each chunk's download): validation under DDP and the final validation
        # download each chunk once per node. LitData's reader is opened on first use, in each process: training
        # reads in chunk order (streamed_loader) and never needs it, and a process that forks loader workers holds
        # none of its threads.
        self.chunk_cache = node_chunk_cache(self.stream_location, storage_options)
        self._stream: Any = None
        self._stream_pid = -1

    # ------------------------------------------------------------------------ what BaseDataset reads from files
    def get_img_files(self, img_path: Any) -> list[str]:
        """The images the labels name, in their order (the first ones only, for ``fraction`` < 1, as Ultralytics)."""
        files = [label["im_file"] for label in self._label_cache["labels"]]
        count = self.fraction if isinstance(self.fraction, int) else max(1, round(len(files) * self.fraction))
        return files[:count]

    def _load_or_scan_cache(self, cache_path: Path, cache_hash: str) -> tuple[dict[str, Any], bool]:
        """The stored label cache (the files it was built from may not be on this machine)."""
        cache = copy.deepcopy(self._label_cache)
        kept = set(self.im_files)
        cache["labels"] = [label for label in cache["labels"] if label["im_file"] in kept]
        return cache, True

    def get_cache_hash(self) -> str:
        """Unused: the stored cache is taken as it is (hashing would stat every original file)."""
        return ""

    def load_image(self, i: int, rect_mode: bool = True, resize_short: bool = False) -> tuple[np.ndarray, Any, Any]:
        """BaseDataset.load_image on the image's bytes from the chunks: the same resize and mosaic buffer.

        BaseDataset reads a path (``imread``) and has no hook for bytes, so its resize and buffer steps are repeated
        here, line for line.
        """
        if self.ims[i] is not None:
            return self.ims[i], self.im_hw0[i], self.im_hw[i]
        im = decode_image(self._sample(i)["image"], self.im_files[i], self.cv2_flag)
        if im is None:
            raise FileNotFoundError(f"Image Not Found {self.im_files[i]} (in {self.stream_location})")
        h0, w0 = im.shape[:2]  # orig hw
        shape = tuple(self.imgsz) if isinstance(self.imgsz, (tuple, list)) else (self.imgsz, self.imgsz)
        imgsz = max(shape)
        if rect_mode:  # resize long side to imgsz while maintaining aspect ratio
            if resize_short:  # resize short side to imgsz while maintaining aspect ratio
                r = imgsz / min(h0, w0)
                if r != 1:
                    w, h = (math.ceil(w0 * r), imgsz) if h0 < w0 else (imgsz, math.ceil(h0 * r))
                    im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                r = imgsz / max(h0, w0)
                if r != 1:
                    w, h = (min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz))
                    im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
        elif (h0, w0) != shape:  # resize by stretching to the requested shape
            im = cv2.resize(im, shape[::-1], interpolation=cv2.INTER_LINEAR)
        if im.ndim == 2:
            im = im[..., None]
        if self.augment and self.cache != "ram":  # the mosaic buffer
            self.ims[i], self.im_hw0[i], self.im_hw[i] = im, (h0, w0), im.shape[:2]
            self.buffer.append(i)
            if 1 < len(self.buffer) >= self.max_buffer_length:
                j = self.buffer.pop(0)
                self.ims[j], self.im_hw0[j], self.im_hw[j] = None, None, None
        return im, (h0, w0), im.shape[:2]

    def build_transforms(self, hyp: IterableSimpleNamespace) -> Any:
        """The task dataset's transforms; in training, mixup, cutmix and copy-paste draw their partner image from the
        image buffer, as mosaic does (Ultralytics draws it from the whole dataset: in chunk order that is a chunk
        download per partner; the buffer holds the last ``min(n, 8 x batch, 1000)`` images this loader read)."""
        transforms = super().build_transforms(hyp)
        if self.augment:
            _draw_partners_from_buffer(transforms, self, set())
        return transforms

    def training_sample(self, item: dict[str, Any]) -> dict[str, Any]:
        """Ultralytics' training sample (labels, augmentations) of the image that LitData's iteration read: ``item``."""
        position = int(item["index"])
        if self._indices is None:
            self._indices = {self._positions[name]: i for i, name in enumerate(self.im_files)}
        self._last = (position, item)
        return self[self._indices[position]]

    def _open_stream(self) -> None:
        """LitData's dataset over the split's chunks, for this process (its reader is not fork-safe once used)."""
        from litdata import StreamingDataset

        with opening_in_node_cache(self.chunk_cache):
            self._stream = StreamingDataset(
                self.stream_location, cache_dir=self.chunk_cache, storage_options=self.storage_options
            )
        # Random access fetches one sample's bytes per request by default; whole chunks, kept in the cache, serve every
        # later image of theirs without a request (measured on moto: 21 images/s per sample, see BENCHMARKS.md).
        self._stream._on_demand_bytes = False  # LitData sets it through a property only once its cache exists
        self._stream_pid = os.getpid()

    def _sample(self, i: int) -> dict[str, Any]:
        """The sample of image ``i`` (as Ultralytics orders them now; the last one is kept: an image and its mask
        are read from one sample)."""
        position = self._positions[self.im_files[int(i)]]
        if self._last is not None and self._last[0] == position:
            return self._last[1]
        if self._stream_pid != os.getpid():  # first use here (a forked worker's parent reader is not its own)
            self._open_stream()
        sample = self._stream[position]
        if int(sample["index"]) != position:
            raise RuntimeError(f"{self.stream_location}: sample {position} holds image {sample['index']}: optimize it again.")
        self._last = (position, sample)
        return sample

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_last"] = state["_stream"] = None  # each process opens its own reader
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        allow_plain_http(self.storage_options)  # a spawned worker imports LitData afresh
        self._stream_pid = -1  # opened again on first use in this process


def decode_image(
    payload: bytes, name: str, flags: int, through_file: tuple[str, ...] = (".tiff", ".tif", *PIL_FALLBACK_SUFFIXES)
) -> np.ndarray | None:
    """The image ``imread(name, flags)`` would read from a file holding ``payload``. Ultralytics' ``imread`` takes only
    a path: the suffixes ``through_file`` that it decodes its own way (TIFF pages; HEIC and AVIF through PIL,
    EXIF-aware) go through a temporary file with the image's suffix; every other format is OpenCV's ``imdecode``, as in
    ``imread``."""
    if name.lower().endswith(through_file):
        with tempfile.NamedTemporaryFile(suffix=Path(name).suffix) as file:
            file.write(payload)
            file.flush()
            return imread(file.name, flags)
    im = cv2.imdecode(np.frombuffer(payload, np.uint8), flags) if payload else None
    return im[..., None] if im is not None and im.ndim == 2 else im


class _BufferedPartner:
    """A mix transform's ``get_indexes``: a random image of the dataset's mosaic buffer (picklable, for workers)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __call__(self) -> int:
        return random.choice(self.dataset.buffer)


def _draw_partners_from_buffer(transform: Any, dataset: Dataset, seen: set[int]) -> None:
    """Make every mix transform of ``dataset`` under ``transform`` (but Mosaic, which does already) draw partners from
    the dataset's image buffer."""
    if id(transform) in seen:
        return
    seen.add(id(transform))
    if isinstance(transform, BaseMixTransform) and not isinstance(transform, Mosaic) and transform.dataset is dataset:
        transform.get_indexes = _BufferedPartner(dataset)
    for child in [*getattr(transform, "transforms", ()), getattr(transform, "pre_transform", None)]:
        if child is not None:
            _draw_partners_from_buffer(child, dataset, seen)


class StreamedYOLODataset(_StreamedImages, YOLODataset):
    """YOLODataset (detect, segment, pose, obb) on an optimized dataset."""


class StreamedPolygonSemanticDataset(_StreamedImages, PolygonSemanticDataset):
    """PolygonSemanticDataset (semantic from polygon rows) on an optimized dataset."""


class StreamedSemanticDataset(_StreamedImages, SemanticDataset):
    """SemanticDataset on an optimized dataset: masks from the chunks, decoded as ``read_mask`` decodes files."""

    def load_image(self, i: int, rect_mode: bool = True) -> tuple[np.ndarray, Any, Any]:
        """As SemanticDataset.load_image: training scales the short side to imgsz."""
        return super().load_image(i, rect_mode=rect_mode, resize_short=self.augment)

    def load_mask(self, index: int, image_shape: tuple[int, int] | None = None) -> np.ndarray:
        payload, mode = self._sample(index)["pixels"], self.labels[index]["mode"]
        if mode == "P":  # as read_mask: a coloured palette holds class ids, a grey one grey levels
            with Image.open(io.BytesIO(payload)) as im:
                palette = np.array(im.getpalette()).reshape(-1, 3)
                mask = np.array(im.convert("L") if (palette == palette[:, :1]).all() else im)
        else:
            mask = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_ANYDEPTH)
            mask = mask // 255 if mode == "1" else mask
        if self.label_mapping:
            mask = self.convert_label(mask, inverse=False)
        return mask.astype(np.uint8, copy=False)


class StreamedDepthDataset(_StreamedImages, DepthDataset):
    """DepthDataset on an optimized dataset: depth maps from the chunks, decoded as ``load_depth`` decodes files."""

    def _load_depth(self, index: int) -> np.ndarray:
        sample = self._sample(index)
        if sample["pixels_format"] == "npy":  # metres, float
            depth = np.load(io.BytesIO(sample["pixels"]), allow_pickle=False)
            return np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        encoded = cv2.imdecode(np.frombuffer(sample["pixels"], np.uint8), cv2.IMREAD_UNCHANGED)
        return encoded.astype(np.float32) / float(self.data.get("depth_scale", 1000))


class StreamedClassificationDataset(_StreamedImages, ClassificationDataset):
    """ClassificationDataset on an optimized dataset: its samples (image, class) stored, its images from the chunks."""

    def __init__(
        self, args: IterableSimpleNamespace, augment: bool, prefix: str, *, location: str, split: str,
        storage_options: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        # ClassificationDataset.__init__ scans a folder tree (torchvision's ImageFolder) and has no hook for a stored
        # sample list: its steps for one (fraction, no image cache, transforms) are repeated here
        self._open_optimized(location, split, storage_options)
        labels = self._label_cache["labels"]
        fraction = get_split_fraction(args.fraction, prefix)
        count = fraction if isinstance(fraction, int) else max(int(fraction > 0), round(len(labels) * fraction))
        if count < len(labels):
            raise ConfigurationError(
                f"fraction={args.fraction!r}: Ultralytics takes classification images spread over the split, which "
                "LitData's chunk order cannot serve; optimize a folder holding those images instead."
            )
        self.samples = [[label["im_file"], 0 if args.single_cls else int(label["cls"]), None, None] for label in labels]
        self.im_files = [label["im_file"] for label in labels]
        self.root, self.prefix = self.stream_location, colorstr(f"{prefix}: ")
        self.cache_ram = self.cache_disk = False
        self.torch_transforms = (
            classify_augmentations(
                size=args.imgsz, scale=(1.0 - args.scale, 1.0), hflip=args.fliplr, vflip=args.flipud,
                erasing=args.erasing, auto_augment=args.auto_augment, hsv_h=args.hsv_h, hsv_s=args.hsv_s,
                hsv_v=args.hsv_v,
            )
            if augment
            else classify_transforms(size=args.imgsz)
        )  # fmt: skip
        self._label_cache = None

    def __getitem__(self, i: int) -> dict[str, Any]:
        """As ClassificationDataset.__getitem__, the image decoded from its bytes as ``imread`` decodes a file."""
        # ClassificationDataset.imread: Ultralytics' imread for the PIL formats only, else OpenCV's imdecode
        im = decode_image(self._sample(i)["image"], self.samples[i][0], cv2.IMREAD_COLOR, PIL_FALLBACK_SUFFIXES)
        if im is None:
            raise FileNotFoundError(f"Image Not Found {self.samples[i][0]} (in {self.stream_location})")
        sample = self.torch_transforms(Image.fromarray(cv2.cvtColor(im, cv2.COLOR_BGR2RGB)))
        return {"img": sample, "cls": self.samples[i][1]}


def build_streamed_dataset(
    hyp: IterableSimpleNamespace, location: str, split: str, batch: int, data: dict[str, Any], mode: str,
    storage_options: dict[str, Any] | None, stride: int,
) -> Dataset:  # fmt: skip
    """The dataset ``build_yolo_dataset`` builds for ``hyp.task`` (its class, rect and pad rules, repeated here: it
    takes no dataset class), reading the optimized dataset at ``location``."""
    if hyp.cache:
        raise ConfigurationError(
            f"cache={hyp.cache!r} caches image files; streamed data is read from its chunks (cached on disk by LitData):"
            " leave cache off."
        )
    if hyp.task == "classify":  # ClassificationTrainer.build_dataset
        return StreamedClassificationDataset(
            hyp, augment=mode == "train", prefix=mode, location=location, split=split, storage_options=storage_options
        )
    pad, rect = (0.0 if mode == "train" else 0.5), mode == "val"  # training never rect (no rect argument)
    if hyp.task == "depth":
        dataset_class, pad, rect = StreamedDepthDataset, 0.0, False  # DepthTrainer: never rect
    elif hyp.task == "semantic":
        dataset_class, pad = (StreamedSemanticDataset if data.get("masks_dir") else StreamedPolygonSemanticDataset), 0.0
        if dataset_class is StreamedPolygonSemanticDataset:
            add_polygon_background(data)
    else:
        dataset_class = StreamedYOLODataset
    return dataset_class(
        img_path=split_location(location, split), imgsz=hyp.imgsz, batch_size=batch, augment=mode == "train",
        hyp=hyp, rect=rect, cache=hyp.cache or None, single_cls=hyp.single_cls or False, stride=stride, pad=pad,
        prefix=colorstr(f"{mode}: "), task=hyp.task, classes=hyp.classes, data=data,
        fraction=hyp.fraction if mode == "train" else 1.0, location=location, split=split,
        storage_options=storage_options,
    )  # fmt: skip
