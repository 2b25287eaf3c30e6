"""A fit and a validate make no network attempt at all (audit hook in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                  "urllib.Request", "http.client.connect")  # fmt: skip

SCRIPT = textwrap.dedent(
    """
    import json, sys
    attempts = []
    def audit(event, args):
        if event in {events!r}:
            attempts.append([event, repr(args)[:200]])
    sys.addaudithook(audit)

    import lightning as L
    from yolo_lightning import YOLODataModule, YOLOModule

    datamodule = YOLODataModule(data={data!r}, imgsz=64, batch=8, workers=0)
    module = YOLOModule()
    kwargs = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  limit_train_batches=2, limit_val_batches=1, default_root_dir={root!r})
    L.Trainer(max_epochs=1, **kwargs).fit(module, datamodule)
    L.Trainer(**kwargs).validate(module, datamodule)
    print("AUDIT" + json.dumps(attempts))
    """
)


@pytest.mark.slow
def test_fit_and_validate_make_no_network_attempt(tiny_data_yaml, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_OFFLINE")}
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "fresh_config")  # no font yet: yolo-lightning must provide it
    script = SCRIPT.format(events=NETWORK_EVENTS, data=str(tiny_data_yaml), root=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    attempts = json.loads(result.stdout.split("AUDIT", 1)[1])
    assert attempts == []
