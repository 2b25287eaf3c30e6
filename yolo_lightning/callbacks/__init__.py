"""Lightning callbacks that reproduce (and customize) Ultralytics' DetectionTrainer behaviour."""

from yolo_lightning.callbacks.checkpoint import UltralyticsCheckpoint
from yolo_lightning.callbacks.close_mosaic import CloseMosaic
from yolo_lightning.callbacks.ema import UltralyticsEMA
from yolo_lightning.callbacks.freeze_backbone import FreezeBackbone
from yolo_lightning.callbacks.gradient_clipping import GradientClipping
from yolo_lightning.callbacks.model_summary import UltralyticsModelSummary
from yolo_lightning.callbacks.nonfinite_recovery import NonFiniteRecovery
from yolo_lightning.callbacks.prediction_writer import UltralyticsPredictionWriter
from yolo_lightning.callbacks.progress import UltralyticsProgressBar
from yolo_lightning.callbacks.run_report import RunReport
from yolo_lightning.callbacks.sync_batchnorm import SyncBatchNorm

__all__ = [
    "CloseMosaic", "FreezeBackbone", "GradientClipping", "NonFiniteRecovery", "RunReport", "SyncBatchNorm",
    "UltralyticsCheckpoint", "UltralyticsEMA", "UltralyticsModelSummary",
    "UltralyticsPredictionWriter", "UltralyticsProgressBar",
]  # fmt: skip
