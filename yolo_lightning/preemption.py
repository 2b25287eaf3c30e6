"""Preemption under DDP: a SIGTERM that reaches any one rank stops every rank at the same training batch."""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.pytorch.trainer.connectors.signal_connector import _HandlersCompose
from lightning.pytorch.utilities.exceptions import SIGTERMException


def stop_all_ranks_on_sigterm(trainer: L.Trainer) -> None:
    """Under DDP, make a SIGTERM that reaches any rank stop every rank after the same training batch.

    Call it once training starts (``on_train_start``: Lightning registers its SIGTERM handler just before). All ranks
    then raise ``SIGTERMException`` together, so their ``on_exception`` hooks (saving last.ckpt) meet in the same
    collectives. One process keeps Lightning's own handling.
    """
    distributed = trainer.world_size > 1 and dist.is_available() and dist.is_initialized()
    if not distributed or threading.current_thread() is not threading.main_thread():
        return  # off the main thread no signal handler can be set (Lightning registers none either)
    _SigtermAgreement(trainer).install()


def stop_at_validation_end_if_any_rank_got_sigterm(trainer: L.Trainer) -> None:
    """The same agreement at the end of an in-training validation (every rank reaches it, whatever its number of
    validation batches): a long validation would otherwise hold a SIGTERM until the next training batch, past a
    scheduler's grace period (SLURM's and Kubernetes' 30 s)."""
    agree = getattr(trainer.fit_loop.epoch_loop, "_broadcast_sigterm_tensor", None)
    if isinstance(getattr(agree, "__self__", None), _SigtermAgreement):
        agree()


class _SigtermAgreement:
    """A SIGTERM handler that only records the signal, and the per-batch check where all ranks agree on it."""

    def __init__(self, trainer: L.Trainer) -> None:
        self.trainer = trainer
        self.received = False

    def install(self) -> None:
        connector = self.trainer._signal_connector
        current = signal.getsignal(signal.SIGTERM)
        chained = current.signal_handlers if isinstance(current, _HandlersCompose) else [current]
        # Lightning's notifier runs a broadcast inside the handler of the rank that got the signal, a collective the
        # other ranks are not in (a deadlock, or a gloo abort), and makes that rank alone raise at the end of its batch.
        # It also forwarded the signal to the ranks its launcher started: the agreement below reaches every rank anyway.
        # Other handlers (SLURM's, one set before fitting) still run. Lightning's teardown, when fitting ends, restores
        # the handler it found before fitting.
        others = [handler for handler in chained if callable(handler) and handler != connector._sigterm_notifier_fn]
        signal.signal(signal.SIGTERM, _HandlersCompose([self._record, *others]))
        # Lightning's epoch loop already makes every rank meet once per batch, in a broadcast of rank 0's flag (which
        # drops a signal that reached another rank): that same collective becomes an all-reduce of every rank's flag.
        self.trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = self._agree

    def _record(self, signum: int, frame: FrameType | None) -> None:
        # Nothing collective here: a handler runs between any two bytecodes of this rank, wherever the others are.
        self.received = True

    def _agree(self) -> None:
        """Raise ``SIGTERMException`` on every rank if any rank got SIGTERM (called by all ranks before each batch)."""
        flag = torch.tensor([int(self.received)], device=self.trainer.strategy.root_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if not flag.item():
            return
        with contextlib.suppress(Exception):  # as Lightning's own check: a last sync of the ranks before they stop
            dist.barrier()
        self.trainer._signal_connector.received_sigterm = True  # what Lightning's loops and callbacks read
        _release_child_observer()
        raise SIGTERMException


def _release_child_observer() -> None:
    """Stop the launching rank's watch over the ranks it started: they are about to exit with 143 on purpose.

    Lightning's launcher watches them from a thread that, once one has exited with a nonzero status, SIGKILLs every
    rank, itself included, so that a crashed rank leaves none waiting in a collective. Here each rank leaves after the
    same step, and whichever leaves first would get the launching rank killed within the watch's 5 s while it still
    finishes (its loggers, its teardown): exit status 137 instead of 143. A rank that crashes while the others save
    still breaks their next collective.
    """
    for thread in threading.enumerate():
        if isinstance(thread, _ChildProcessObserver):
            thread._child_processes = []  # its next check finds nothing left to watch, and it ends
