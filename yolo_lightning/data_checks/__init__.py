"""The parts of ``yolo_lightning.dataset_checks``, one module per thing checked; import them from there."""
