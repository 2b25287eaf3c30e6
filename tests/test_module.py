"""YOLOModule: Ultralytics' freeze semantics and weight transfer from a .pt checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from parity import save_initial_weights

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.synthetic import SYNTHETIC_NAMES

NAMES = {0: "a", 1: "b", 2: "c", 3: "d"}


def test_dfl_is_always_frozen_and_everything_else_trains():
    module = YOLOModule(model="yolov8n.yaml", names=NAMES)
    frozen = [name for name, p in module.model.named_parameters() if not p.requires_grad]
    assert frozen == ["model.22.dfl.conv.weight"]


def test_freeze_list_accepts_indices_and_name_fragments():
    module = YOLOModule(model="yolo26n.yaml", names=NAMES, freeze=[0, "23.cv2"])
    for name, param in module.model.named_parameters():
        expected_frozen = name.startswith("model.0.") or "23.cv2" in name
        assert param.requires_grad is not expected_frozen, name


@pytest.mark.parametrize("freeze, match", [([99], "layer 99 does not exist"), (24, "freezes every parameter")])
def test_bad_freeze(freeze, match):
    with pytest.raises(ConfigurationError, match=match):
        YOLOModule(model="yolo26n.yaml", names=NAMES, freeze=freeze)


def test_frozen_layers_and_their_batchnorm_stats_do_not_change_in_training(tiny_data_yaml, tmp_path):
    module = YOLOModule(model="yolo26n.yaml", names=SYNTHETIC_NAMES, freeze=3, nbs=4, warmup_epochs=0)
    before = {k: v.clone() for k, v in module.model.state_dict().items() if v.is_floating_point()}
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, limit_train_batches=3, limit_val_batches=1, default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4, workers=0))
    after = module.model.state_dict()  # the EMA average: exactly constant where the weights never moved
    frozen = [k for k in before if k.startswith(("model.0.", "model.1.", "model.2."))]
    assert any("running_mean" in k for k in frozen)
    assert all(torch.equal(after[k], before[k]) for k in frozen)
    assert not all(torch.equal(after[k], before[k]) for k in before if k.startswith("model.5."))


def test_pt_weights_transfer_when_nc_differs(tmp_path):
    two_classes = save_initial_weights("yolo26n.yaml", {0: "a", 1: "b"}, tmp_path / "two.pt")
    source = torch.load(two_classes, weights_only=False)["model"].state_dict()
    module = YOLOModule(model=str(two_classes), names=NAMES)
    target = module.model.state_dict()
    assert module.model.nc == 4
    assert torch.equal(target["model.0.conv.weight"], source["model.0.conv.weight"])  # backbone transferred
    assert target["model.23.cv3.0.2.weight"].shape[0] == 4 != source["model.23.cv3.0.2.weight"].shape[0]
