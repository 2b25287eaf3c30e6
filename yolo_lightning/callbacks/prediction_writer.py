"""Save predictions as Ultralytics' predict does: annotated images and videos, optional label files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from ultralytics.data.utils import VID_FORMATS
from ultralytics.engine.results import Results

VIDEO_FOURCC = "MJPG"  # Ultralytics' choice on Linux (.avi)


class UltralyticsPredictionWriter(BasePredictionWriter):
    """Write what ``YOLOModule.predict_step`` returns (Ultralytics ``Results``) into ``<run folder>`` (``output_dir``):
    each image annotated as ``<name>.jpg``, each video as ``<name>.avi`` (frames in order, at the video's frame rate
    divided by ``vid_stride``), and with ``save_txt`` a YOLO label file per image or frame in ``labels/``
    (``<name>.txt``, ``<name>_<frame>.txt`` for video frames; ``save_conf`` adds the confidences), as ``yolo predict``.

    Files are written by the process that predicted them; the default folder is the Trainer's run folder
    (``runs/<task>/predict`` from the CLI).

    Args:
        output_dir: where to write; default: the Trainer's ``default_root_dir``.
        save_txt: also write label files.
        save_conf: write confidences into the label files.
        vid_stride: the datamodule's ``vid_stride`` (frames read per frame kept), for the saved videos' frame rate.
    """

    def __init__(
        self, output_dir: str | Path | None = None, save_txt: bool = False, save_conf: bool = False, vid_stride: int = 1
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.save_txt = save_txt
        self.save_conf = save_conf
        self.vid_stride = vid_stride
        self.saved: list[Path] = []
        self._videos: dict[str, cv2.VideoWriter] = {}
        self._frames: dict[str, int] = {}

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Resolve the folder (the Trainer's run folder unless given)."""
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: list[Results], batch_indices: Any,
        batch: Any, batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        """Save one batch's results."""
        for result in prediction:
            source = Path(result.path)
            is_video = source.suffix[1:].lower() in VID_FORMATS
            frame = self._frames.get(result.path, 0)
            self._frames[result.path] = frame + 1
            if is_video:
                self._write_frame(result)
            else:
                target = self.output_dir / f"{source.stem}.jpg"
                cv2.imwrite(str(target), result.plot())
                self.saved.append(target)
            if self.save_txt:
                name = source.stem if not is_video else f"{source.stem}_{frame}"
                result.save_txt(self.output_dir / "labels" / f"{name}.txt", save_conf=self.save_conf)

    def _write_frame(self, result: Results) -> None:
        """Append an annotated frame to its video's writer (opened at its first frame)."""
        image = result.plot()
        if result.path not in self._videos:
            fps = cv2.VideoCapture(result.path).get(cv2.CAP_PROP_FPS) or 30
            target = self.output_dir / f"{Path(result.path).stem}.avi"
            self._videos[result.path] = cv2.VideoWriter(
                str(target), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), max(1.0, fps / self.vid_stride),
                (image.shape[1], image.shape[0]),
            )  # fmt: skip
            self.saved.append(target)
        self._videos[result.path].write(image)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Close the videos and say where everything went."""
        for writer in self._videos.values():
            writer.release()
        self._videos.clear()
        if self.saved:
            rank_zero_info(f"Results saved to {self.output_dir} ({len(self.saved)} files)")
