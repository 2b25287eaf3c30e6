"""Train Ultralytics detectors (YOLO26, YOLO11, YOLOv8, RT-DETR) with PyTorch Lightning."""

from yolo_lightning._offline import provide_local_fonts, set_offline_environment

set_offline_environment()  # before anything imports ultralytics
provide_local_fonts()

from yolo_lightning.datamodule import YOLODataModule  # noqa: E402
from yolo_lightning.export import export_ultralytics  # noqa: E402
from yolo_lightning.module import YOLOModule  # noqa: E402
from yolo_lightning.version import yolo_lightning_version  # noqa: E402

__all__ = ["YOLODataModule", "YOLOModule", "export_ultralytics"]
__version__ = yolo_lightning_version()
