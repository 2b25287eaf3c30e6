"""Keep Ultralytics from touching the network on its own: must run before the first ``import ultralytics``.

Only what the user names and is not on disk is downloaded (official weights by name, a shipped dataset's images: see
``yolo_lightning.assets``). ``YOLO_OFFLINE`` does not block those downloads: it makes ``safe_download`` give up at the
first failure (no DNS probe, no 5-10-20 s retries), so offline they fail at once.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

# Ultralytics reads these at import time (YOLO_OFFLINE also in is_online(), after a failed download). ``setdefault``
# lets a user opt back in explicitly.
_OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # no DNS probe at import, no PyPI update check, no analytics events; downloads fail fast
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
