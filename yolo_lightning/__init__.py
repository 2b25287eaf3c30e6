"""Train Ultralytics models of every task (detect, segment, pose, OBB, classify) with PyTorch Lightning."""

from yolo_lightning._offline import provide_local_fonts, set_offline_environment
from yolo_lightning.quiet import silence_lightning_tips

set_offline_environment()  # before anything imports ultralytics
provide_local_fonts()
silence_lightning_tips()

from yolo_lightning.checkpoint_export import export_ultralytics  # noqa: E402
from yolo_lightning.datamodule import YOLODataModule  # noqa: E402
from yolo_lightning.module import YOLOModule  # noqa: E402
from yolo_lightning.version import yolo_lightning_version  # noqa: E402

__all__ = ["YOLODataModule", "YOLOModule", "export_ultralytics"]
__version__ = yolo_lightning_version()
