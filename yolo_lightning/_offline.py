"""Keep Ultralytics from touching the network: must run before the first ``import ultralytics``."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

# Ultralytics reads these once, at import time. ``setdefault`` lets a user opt back in explicitly.
_OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # no DNS probe, no PyPI update check, no analytics events
    "YOLO_AUTOINSTALL": "False",  # never pip-install a missing requirement at run time
}
# check_font() looks for these names in Ultralytics' config dir before it tries a download.
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


# OMP_NUM_THREADS as the user set it: Ultralytics sets its own value when it is imported first (see hardware.py).
USER_THREADS = None if "ultralytics" in sys.modules else os.environ.get("OMP_NUM_THREADS")


def set_offline_environment() -> None:
    """Set the environment variables that stop Ultralytics' network probes (call before importing it)."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def provide_local_fonts() -> None:
    """Place a bundled TTF where Ultralytics' ``check_font`` looks, so it never downloads Arial."""
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in _FONT_NAMES:
        target = Path(USER_CONFIG_DIR) / name
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        os.close(fd)
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)  # atomic: concurrent ranks never see a truncated font
