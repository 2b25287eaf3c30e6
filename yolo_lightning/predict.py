"""Predict as ``YOLO.predict`` does: Ultralytics' inference-source loaders, its task predictor's letterbox and
post-processing, and ``Results`` per image, for a YOLOModule's network."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from ultralytics.data.build import load_inference_source
from ultralytics.engine.predictor import BasePredictor
from ultralytics.engine.results import Results
from ultralytics.nn.autobackend import AutoBackend

from yolo_lightning.class_weights import attach_criterion
from yolo_lightning.tasks import Task

PREDICT_BATCH = 1  # YOLO.predict's batch: one image per forward pass, letterboxed to its own (minimal) padding


class InferenceSource(IterableDataset):
    """Ultralytics' loader for a predict ``source`` (an image, a folder, a glob, a video, a ``.txt`` list of files),
    yielding its batches as Ultralytics' predictor receives them: ``(paths, original BGR images, info strings)``.

    No ``__len__``: Ultralytics counts a video as one file, and Lightning would stop after that many batches.
    """

    def __init__(self, source: str | list[str], batch: int = PREDICT_BATCH, vid_stride: int = 1) -> None:
        self.source = source
        self.batch = batch
        self.vid_stride = vid_stride

    def __iter__(self) -> Iterator[tuple[list[str], list[Any], list[str]]]:
        yield from load_inference_source(self.source, batch=self.batch, vid_stride=self.vid_stride)


def _as_is(batch: Any) -> Any:
    """A collate function that keeps Ultralytics' batch as it is (file paths and numpy images)."""
    return batch


def inference_loader(source: str | list[str], vid_stride: int = 1) -> DataLoader:
    """A DataLoader over ``InferenceSource``: Ultralytics' batches, unchanged (loaded in this process)."""
    return DataLoader(InferenceSource(source, vid_stride=vid_stride), batch_size=None, collate_fn=_as_is)


def task_predictor(task: Task, network: nn.Module, args: dict[str, Any], source: Any, device: torch.device) -> BasePredictor:
    """The task's Ultralytics predictor, set up on a copy of ``network`` as ``YOLO.predict`` sets one up.

    As ``BasePredictor.setup_model``: a deep copy of the network in an ``AutoBackend`` (fused Conv+BN, the same
    arithmetic as ``YOLO("best.pt").predict()``), on ``device`` directly (Ultralytics' ``select_device`` would also
    rewrite ``CUDA_VISIBLE_DEVICES`` in this already running process).
    """
    predictor = task.predictor_class(overrides={**args, "mode": "predict", "save": False, "verbose": False})
    backend = AutoBackend(
        model=_plain_copy(network), device=device, fp16=predictor.args.quantize == 16,
        channels_last=predictor.args.channels_last, fuse=True, verbose=False, end2end=predictor.args.nms is False,
    )  # fmt: skip
    predictor.model, predictor.device = backend.eval(), backend.device
    predictor.setup_source(source)
    return predictor


def predict_batch(predictor: BasePredictor, batch: tuple[list[str], list[Any], list[str]]) -> list[Results]:
    """One batch through the predictor's own pre-processing, inference and post-processing: ``Results`` per image."""
    predictor.batch = batch
    images = predictor.preprocess(batch[1])
    return predictor.postprocess(predictor.inference(images), images, batch[1])


def _plain_copy(network: nn.Module) -> nn.Module:
    """A deep copy of the network without its loss criterion (AutoBackend fuses the copy, never the training one)."""
    criterion = getattr(network, "criterion", None)
    attach_criterion(network, None)
    try:
        return copy.deepcopy(network)
    finally:
        attach_criterion(network, criterion)
