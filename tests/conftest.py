"""Test-session isolation: Ultralytics settings, fonts and the synthetic dataset live in a temporary folder.

Under pytest-xdist (``-n``, as the README's test command runs) the workers of one run share that folder, so the
datasets (written atomically) and the weights the session fixtures train (under a lock, once) are made once per run.
"""

import fcntl
import os
import tempfile
from pathlib import Path

_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of one xdist run
if _RUN_ID:
    _SESSION_DIR = Path(tempfile.gettempdir()) / f"yolo_lightning_tests_{_RUN_ID}"
    _SESSION_DIR.mkdir(exist_ok=True)
else:
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="yolo_lightning_tests_"))
# Must be set before anything imports ultralytics (it reads them at import time). One settings folder per worker:
# Ultralytics writes its settings file at import, and two workers starting at once would race on one.
os.environ["YOLO_CONFIG_DIR"] = str(_SESSION_DIR / "ultralytics_config" / os.environ.get("PYTEST_XDIST_WORKER", "main"))
os.environ["YOLO_LIGHTNING_CACHE"] = str(_SESSION_DIR / "cache")
os.environ["YOLO_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as Ultralytics pins it here: parity runs share one arithmetic

import pytest  # noqa: E402


def _trained_once(name: str, model: str, data: Path, **recipe: object) -> Path:
    """best.pt of `model` trained on `data` by Ultralytics' own trainer into runs/`name`, once per test run (a lock
    shared by the xdist workers: the first trains, the others wait and reuse it)."""
    from ultralytics import YOLO

    run, done = _SESSION_DIR / "runs" / name, _SESSION_DIR / f"{name}.done"
    with open(_SESSION_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            YOLO(model).train(
                data=str(data), imgsz=64, batch=16, nbs=16, workers=0, device="cpu", optimizer="AdamW", lr0=0.003,
                warmup_epochs=1, close_mosaic=0, plots=False, seed=0, verbose=False, project=str(run.parent),
                name=run.name, exist_ok=True, **recipe,
            )  # fmt: skip
            done.touch()
    return run / "weights" / "best.pt"


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """A folder shared by the whole test session."""
    return _SESSION_DIR


@pytest.fixture(scope="session")
def tiny_data_yaml(session_dir: Path) -> Path:
    """A small synthetic dataset (24 train / 8 val images, 64 px) for fast behaviour tests."""
    from yolo_lightning.synthetic import synthetic_data_yaml

    return synthetic_data_yaml(session_dir / "tiny", n_train=24, n_val=8, imgsz=64, seed=0)


@pytest.fixture(scope="session")
def task_data(session_dir: Path) -> dict[str, Path]:
    """The tiny synthetic dataset of each task but detect (16 train / 8 val images at 64 px): data.yaml or folder."""
    from yolo_lightning.synthetic import synthetic_data

    tasks = ("segment", "semantic", "depth", "classify", "pose", "obb")
    return {task: synthetic_data(task, session_dir / "tasks", n_train=16, n_val=8, imgsz=64) for task in tasks}


@pytest.fixture(scope="session")
def trained(session_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Per task, YOLO26 weights trained by Ultralytics' own task trainer (so validations find something), and the
    data they were trained on (64 train / 16 val images)."""
    from yolo_lightning.synthetic import synthetic_data

    results = {}
    for task, model in TASK_MODELS.items():
        data = synthetic_data(task, session_dir / "tasks", n_train=64, n_val=16, imgsz=64)
        results[task] = (_trained_once(f"trained-{task}", model, data, epochs=15, **TASK_RECIPES.get(task, {})), data)
    return results


@pytest.fixture(scope="session")
def standard_data_yaml(session_dir: Path) -> Path:
    """The embedded synthetic dataset at its default size (what the demo trains on)."""
    from yolo_lightning.synthetic import synthetic_data_yaml

    return synthetic_data_yaml(session_dir / "standard")


@pytest.fixture(scope="session")
def trained_weights(session_dir: Path, standard_data_yaml: Path) -> Path:
    """yolo26n trained briefly by Ultralytics' own trainer (so validation numbers are not all zero): its best.pt."""
    return _trained_once("trained", "yolo26n.yaml", standard_data_yaml, epochs=TRAINED_EPOCHS, cls=2.0)


TRAINED_EPOCHS = 15
# obb with cls 2.0, as the detect fixture: with 0.5, yolo26n-obb ends this run finding nothing (mAP 0 on this machine,
# with plain Ultralytics too), and the validation-parity tests would compare zeros
TASK_RECIPES = {"obb": {"cls": 2.0}}
TASK_MODELS = {"segment": "yolo26n-seg.yaml", "pose": "yolo26n-pose.yaml", "obb": "yolo26n-obb.yaml",
               "classify": "yolo26n-cls.yaml"}  # fmt: skip
