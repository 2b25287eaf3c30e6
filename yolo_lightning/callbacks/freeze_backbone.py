"""Freeze the first layers (the backbone) for the first epochs, then train everything, on Lightning's BaseFinetuning."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from yolo_lightning.errors import ConfigurationError
from yolo_lightning.freezing import freeze_layer_fragments


class FreezeBackbone(BaseFinetuning):
    """Freeze ``layers`` of a ``YOLOModule`` until epoch ``unfreeze_at_epoch``, with Ultralytics' ``freeze`` semantics.

    Freezing only sets ``requires_grad=False`` and keeps the layers' BatchNorm in eval mode (through the module's
    ``freeze_layer_names``), as Ultralytics' ``freeze`` does; every parameter stays in the optimizer's groups, so the LR
    scheduler keeps working and unfreezing adds no param group. At the first training epoch ``>= unfreeze_at_epoch``
    the parameters this callback froze train again and their BatchNorm returns to train mode; what the module itself
    freezes (its ``freeze=`` and ``.dfl``) stays frozen. Resuming a run (``ckpt_path``) freezes again and unfreezes at
    the first epoch that is ``>= unfreeze_at_epoch``. The freeze lasts for one ``fit``: its end restores the module.

    Under DDP the frozen parameters keep ``requires_grad=True``: DDP's reducer synchronises exactly the parameters that
    required gradients when it wrapped the model, so switching them off would make every rank wait for gradients that
    never come (or, frozen before wrapping, leave them unsynchronised once unfrozen). Their gradients are discarded
    after each backward pass instead, so the optimizer, weight decay and clipping skip them exactly as if frozen; the
    cost is the backward pass through the frozen layers, and no ``find_unused_parameters`` is needed.

    Args:
        layers: The first N layers, or a list of layer indices / parameter-name fragments (``[0, 1, "23.cv2"]``).
        unfreeze_at_epoch: The (0-based) epoch from which the frozen layers train.
    """

    def __init__(self, layers: int | list[int | str] = 10, unfreeze_at_epoch: int = 5) -> None:
        super().__init__()
        if isinstance(layers, bool) or not isinstance(layers, (int, list)) or (isinstance(layers, int) and layers < 1):
            raise ConfigurationError(
                f"FreezeBackbone(layers={layers!r}): give a layer count >= 1 or a list of layer indices / name fragments."
            )
        if isinstance(layers, list) and (not layers or any(isinstance(x, bool) or not isinstance(x, (int, str)) for x in layers)):
            raise ConfigurationError(
                f"FreezeBackbone(layers={layers!r}): the list must hold layer indices (int) or name fragments (str)."
            )
        if isinstance(unfreeze_at_epoch, bool) or not isinstance(unfreeze_at_epoch, int) or unfreeze_at_epoch < 1:
            raise ConfigurationError(
                f"FreezeBackbone(unfreeze_at_epoch={unfreeze_at_epoch!r}) must be an epoch >= 1 "
                f"(at 0 nothing would ever be frozen; use YOLOModule(freeze=...) to freeze for the whole run)."
            )
        self.layers = layers
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self._fragments: list[str] = []  # the fragments this callback added to the module's freeze_layer_names
        self._frozen: list[str] = []  # the parameters this callback switched off
        self._discarded: list[nn.Parameter] = []  # under DDP: the frozen parameters whose gradients are dropped
        self._under_ddp = False

    @property
    def frozen_parameter_names(self) -> list[str]:
        """Names of the parameters this callback currently holds frozen (empty before fitting and once unfrozen)."""
        return list(self._frozen)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Warn when training ends before ``unfreeze_at_epoch``; freezing waits for ``on_fit_start``.

        A ``YOLOModule`` builds its network (and applies its own ``freeze``) in its ``setup``, which runs after this.
        """
        if stage == "fit" and trainer.max_epochs is not None and 0 < trainer.max_epochs <= self.unfreeze_at_epoch:
            rank_zero_warn(
                f"FreezeBackbone(unfreeze_at_epoch={self.unfreeze_at_epoch}) >= Trainer(max_epochs={trainer.max_epochs}): "
                f"the frozen layers never train in this run. Lower unfreeze_at_epoch or raise max_epochs."
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Freeze the layers (the network exists now); let ``BaseFinetuning`` restore its state on resume."""
        self._under_ddp = isinstance(trainer.model, DistributedDataParallel)
        self.freeze_before_training(pl_module)
        super().on_fit_start(trainer, pl_module)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        """Switch off the layers' parameters and register their fragments so the module keeps their BatchNorm in eval."""
        if not isinstance(getattr(pl_module, "freeze_layer_names", None), list):
            raise ConfigurationError(f"FreezeBackbone needs a YOLOModule, got {type(pl_module).__name__}.")
        fragments = freeze_layer_fragments(self.layers, pl_module.model, f"FreezeBackbone(layers={self.layers!r})")
        matching = [name for name, _ in pl_module.model.named_parameters() if any(f in name for f in fragments)]
        trainable = [name for name, p in pl_module.model.named_parameters() if p.requires_grad and name not in matching]
        if not trainable:
            raise ConfigurationError(
                f"FreezeBackbone(layers={self.layers!r}) freezes every trainable parameter: nothing would train until "
                f"epoch {self.unfreeze_at_epoch}. Freeze fewer layers."
            )
        parameters = dict(pl_module.model.named_parameters())
        self._frozen = [name for name in matching if parameters[name].requires_grad]
        if self._under_ddp:
            self._discarded = [parameters[name] for name in self._frozen]
        else:
            for name in self._frozen:
                parameters[name].requires_grad = False
        self._fragments = [f for f in fragments if f not in pl_module.freeze_layer_names]
        pl_module.freeze_layer_names.extend(self._fragments)
        rank_zero_info(
            f"FreezeBackbone: froze layers {self._layer_summary()} ({self._describe(pl_module, self._frozen)}) "
            f"until epoch {self.unfreeze_at_epoch}."
        )

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Under DDP: drop the frozen parameters' (all-reduced) gradients, so nothing updates them."""
        for parameter in self._discarded:
            parameter.grad = None

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """From ``unfreeze_at_epoch`` on, train the frozen parameters again, in the optimizer groups they never left."""
        if epoch >= self.unfreeze_at_epoch and self._frozen:
            description = self._describe(pl_module, self._frozen)
            self._unfreeze(pl_module)
            rank_zero_info(f"FreezeBackbone: epoch {epoch}: unfroze {description}.")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Leave the module as it was before ``fit`` if training ended while still frozen."""
        if stage == "fit":
            self._unfreeze(pl_module)

    def _unfreeze(self, pl_module: L.LightningModule) -> None:
        """Undo this callback's freeze: ``requires_grad``, the module's fragments and BatchNorm's training mode."""
        for fragment in self._fragments:
            pl_module.freeze_layer_names.remove(fragment)
        parameters = dict(pl_module.model.named_parameters())
        for name in self._frozen:
            parameters[name].requires_grad = True
        for name, module in pl_module.model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(f in name for f in self._fragments):
                if not any(f in name for f in pl_module.freeze_layer_names):
                    module.train(pl_module.training)
        self._fragments, self._frozen, self._discarded = [], [], []

    def _layer_summary(self) -> str:
        """``0..9`` for a layer count, else the list as given."""
        return f"0..{self.layers - 1}" if isinstance(self.layers, int) else repr(self.layers)

    @staticmethod
    def _describe(pl_module: L.LightningModule, names: list[str]) -> str:
        """``N parameter tensors, M weights`` for the named parameters."""
        parameters = dict(pl_module.model.named_parameters())
        return f"{len(names)} parameter tensors, {sum(parameters[n].numel() for n in names):,} weights"
