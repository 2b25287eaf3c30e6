"""Lightning callbacks that reproduce (and customize) Ultralytics' DetectionTrainer behaviour."""

from yolo_lightning.callbacks.checkpoint import UltralyticsCheckpoint
from yolo_lightning.callbacks.close_mosaic import CloseMosaic
from yolo_lightning.callbacks.ema import UltralyticsEMA

__all__ = ["CloseMosaic", "UltralyticsCheckpoint", "UltralyticsEMA"]
