"""Files written atomically: a temporary file in the target's folder, renamed into place, so no crash, full disk or
concurrent reader ever sees a half-written file, and a failed write leaves the previous file intact."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from yolo_lightning.errors import ConfigurationError, TrainingError


def _umask() -> int:
    """The process umask (reading it means setting it: restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


ORDINARY_FILE_MODE = 0o666 & ~_umask()  # what open() gives a new file: 0644 under the usual umask 022


def stage(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """``write`` into a temporary file next to ``path`` (flushed to disk, ordinary file mode); return its path.

    A folder that cannot be created is a ConfigurationError; a failed write (a full disk...) removes the temporary
    file and is a TrainingError naming ``path``, which stays untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise ConfigurationError(f"cannot write {path}: {error.strerror} ({path.parent})") from None
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, ORDINARY_FILE_MODE)  # mkstemp makes 0600; these are as readable as any file the user writes
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise TrainingError(f"cannot write {path}: {error.strerror or error} (the previous file is kept)") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def stage_copy(source: str | Path, path: str | Path) -> Path:
    """``stage`` a byte copy of ``source`` next to ``path`` (an unreadable ``source`` is a TrainingError too)."""

    def copy(file: BinaryIO) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, file)

    return stage(path, copy)


def commit(staged: Path, path: str | Path) -> Path:
    """Move a ``stage``d file into place (an atomic rename within one folder)."""
    os.replace(staged, path)
    return Path(path)


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """``stage`` then ``commit``: ``path`` holds either its previous content or all of the new one."""
    return commit(stage(path, write), path)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``write_atomically`` for UTF-8 text."""
    return write_atomically(path, lambda file: file.write(text.encode("utf-8")))
