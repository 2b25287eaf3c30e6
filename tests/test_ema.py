"""UltralyticsEMA follows Ultralytics' ModelEMA step for step, and only on real optimizer steps."""

from __future__ import annotations

from copy import deepcopy

import lightning as L
import pytest
import torch
from torch import nn
from ultralytics.utils.torch_utils import ModelEMA

from yolo_lightning.callbacks import UltralyticsEMA


class _Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_average_equals_model_ema_over_steps():
    torch.manual_seed(0)
    module = _Net()
    reference = ModelEMA(deepcopy(module.body), decay=0.9999, tau=3)  # short ramp: the decay changes each step
    ema = UltralyticsEMA(decay=0.9999, tau=3)
    ema._create_average(module)
    for _ in range(6):
        with torch.no_grad():
            for tensor in module.body.state_dict().values():
                if tensor.is_floating_point():
                    tensor.add_(torch.randn_like(tensor))
        reference.update(module.body)
        ema._stepped = True
        ema.on_train_batch_end(None, module)
    averaged = ema._average_model.module.body.state_dict()
    for name, value in reference.ema.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(averaged[name], value, rtol=1e-6, atol=1e-7, msg=name)
    assert ema.updates == reference.updates == 6


def test_batches_without_optimizer_step_do_not_update():
    module = _Net()
    ema = UltralyticsEMA()
    ema._create_average(module)
    before = ema.updates
    ema.on_train_batch_end(None, module)  # no on_before_optimizer_step: gradient-accumulation batch
    assert ema.updates == before == 0


@pytest.mark.parametrize("kwargs", [{"decay": 1.0}, {"decay": -0.1}, {"tau": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        UltralyticsEMA(**kwargs)
