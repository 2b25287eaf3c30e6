"""Lightning checkpoints for resuming, plus Ultralytics-format best.pt/last.pt, chosen by any logged metric."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from yolo_lightning.callbacks.ema import UltralyticsEMA
from yolo_lightning.errors import ConfigurationError, TrainingError
from yolo_lightning.export import (
    save_atomically,
    stage_checkpoint,
    ultralytics_checkpoint,
)
from yolo_lightning.files import commit, stage_copy
from yolo_lightning.finite import finite_flag
from yolo_lightning.preemption import stop_all_ranks_on_sigterm, stop_at_validation_end_if_any_rank_got_sigterm
from yolo_lightning.run_folder import WEIGHTS, claim_run_folder, move_run_folder, run_folder_of, run_root

PREEMPTED_EXIT_STATUS = 128 + signal.SIGTERM  # 143: the shell's status for a process stopped by SIGTERM


class StagedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing each ``.ckpt`` to a temporary file in its own folder and renaming it.

    Lightning's own IO writes to a temporary file in the system's temp folder and copies it across filesystems, so a
    full disk leaves a truncated checkpoint. Inside ``deferred()`` the rename waits for ``commit`` (so a ``.ckpt`` and
    its ``.pt`` twin replace the previous pair together) and a failed write is recorded in ``failure`` instead of raised
    (so every DDP rank can stop together instead of waiting for rank 0 at Lightning's barrier).
    """

    def __init__(self) -> None:
        super().__init__()
        self._deferred = False
        self.staged: dict[str, Path] = {}
        self.failure: str | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` atomically (or stage it, inside ``deferred()``)."""
        if not self._deferred:
            save_atomically(checkpoint, path)
            return
        try:
            self.staged[str(path)] = stage_checkpoint(checkpoint, path)
        except (TrainingError, ConfigurationError) as error:  # a failed write, or a temporary file not created
            self.failure = str(error)

    @contextmanager
    def deferred(self) -> Iterator[StagedCheckpointIO]:
        """Stage instead of writing, until ``commit`` or ``discard``."""
        self._deferred, self.failure = True, None
        try:
            yield self
        finally:
            self._deferred = False

    def commit(self, path: str) -> None:
        """Move the staged checkpoint for ``path`` into place."""
        commit(self.staged.pop(path), path)

    def discard(self) -> None:
        """Remove every staged, uncommitted checkpoint."""
        for staged in self.staged.values():
            staged.unlink(missing_ok=True)
        self.staged.clear()


class UltralyticsCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes ``weights/best.ckpt``/``last.ckpt`` and, beside them, ``best.pt``/``last.pt``.

    The ``.pt`` files are in Ultralytics' checkpoint format (EMA weights, fp16, ``train_args``, ``train_metrics``
    with the monitored value, ``train_results``, ``epoch``, ``date``, ``version``): ``YOLO("best.pt")`` loads them in
    a fresh process with no yolo-lightning installed. The ``.ckpt`` files resume a run: ``fit(ckpt_path="last")``.

    Nothing is ever half-written or silently overwritten:

    - each ``.ckpt``/``.pt`` pair is written to temporary files in its folder and renamed into place together, so a
      full disk stops the run with one error and leaves the previous pair intact (``best.pt`` and ``best.ckpt`` always
      hold the same epoch); files get the ordinary mode (0644 under the usual umask);
    - an epoch whose weights or validation metrics (``fitness``, the monitored value) are NaN/infinite is not saved;
    - a new run never writes into another run's folder: without ``dirpath``, the run folder is the Trainer's
      ``default_root_dir`` (``runs/<task>/train`` when that was left at the current folder), and when another run
      already uses it this run goes to ``train2``, ``train3``... as Ultralytics does (``exist_ok=True`` reuses it);
      resuming (``ckpt_path``) continues in the checkpoint's own run folder; an explicit ``dirpath`` that holds another
      run's checkpoints is an error unless ``exist_ok`` or resuming;
    - SIGTERM (preemption) saves ``last.ckpt``/``last.pt`` at the interrupted step and makes the process exit with
      status 143 (128 + SIGTERM) instead of 0, so a scheduler sees an unfinished run; ``fit(ckpt_path=...last.ckpt)``
      continues it. Under DDP a SIGTERM that reaches any one rank stops every rank after the same batch, and every
      rank exits with 143.

    Everything is written by rank 0 only.

    Args:
        monitor: Any logged metric: ``fitness`` (mAP50-95, Ultralytics' default), ``metrics/mAP50(B)``, a val loss...
        mode: ``"max"`` or ``"min"`` (use ``"min"`` for a loss).
        save_period: Also keep ``epoch{E}.pt`` after epochs E = 0, save_period, 2 x save_period... (Ultralytics' rule);
            -1: never.
        dirpath: Folder of the files; default ``<run folder>/weights``.
        exist_ok: Reuse the run folder (or ``dirpath``) even if another run wrote into it (Ultralytics' ``exist_ok``).
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(
        self,
        monitor: str = "fitness",
        mode: str = "max",
        save_period: int = -1,
        dirpath: str | Path | None = None,
        exist_ok: bool = False,
    ) -> None:
        super().__init__(
            dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_last=True,
            auto_insert_metric_name=False, enable_version_counter=False, save_on_train_epoch_end=False,
        )  # fmt: skip
        self.save_period = save_period
        self.exist_ok = exist_ok
        self.history: dict[str, list[float]] = {}
        self._default_layout = dirpath is None  # the run folder is the Trainer's (and may move to a free one)
        self._io: StagedCheckpointIO | None = None
        # While on_validation_end saves: "" until it writes best.ckpt, then that path (last is then copied from it)
        self._best_saved_now: str | None = None
        self._preempted = False  # while SIGTERM saves last mid-epoch

    # ------------------------------------------------------------------------------------------ where files go
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Default the folder to ``<run folder>/weights`` and write ``.ckpt`` files atomically.

        ModelCheckpoint's own ``setup`` is not called: it only resolves ``dirpath`` (done here) and warns about a
        non-empty folder, which cannot happen here once ``on_fit_start`` has picked this run's folder.
        """
        self._default_dirpath(trainer)
        self._fs = get_filesystem(self.dirpath)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # the default: replace it (a custom one stays)
            trainer.strategy.checkpoint_io = StagedCheckpointIO()
        io = trainer.strategy.checkpoint_io
        self._io = io if isinstance(io, StagedCheckpointIO) else None

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        """Let ``fit(ckpt_path="last")`` find ``weights/last.ckpt`` before ``setup`` has run."""
        self._default_dirpath(trainer)
        return super()._find_last_checkpoints(trainer)

    def _default_dirpath(self, trainer: L.Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / WEIGHTS)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Pick this run's folder: the resumed checkpoint's, the Trainer's if free (or ``exist_ok``), else the next."""
        resuming = trainer.ckpt_path is not None
        if not self._default_layout:
            self._check_explicit_dirpath(trainer, resuming)
            return
        root = Path(trainer.default_root_dir)
        if resuming:
            root = run_folder_of(trainer.ckpt_path) or root
        elif trainer.is_global_zero:
            root = claim_run_folder(run_root(trainer, pl_module.task.name) if not self.exist_ok else root, self.exist_ok)
        root = Path(trainer.strategy.broadcast(str(root)))
        move_run_folder(trainer, root)
        self.dirpath = str(root / WEIGHTS)

    def _check_explicit_dirpath(self, trainer: L.Trainer, resuming: bool) -> None:
        """A given ``dirpath`` holding another run's checkpoints is an error (unless resuming or ``exist_ok``)."""
        taken = [p.name for p in Path(self.dirpath).glob("*") if p.suffix in {".ckpt", ".pt"}]
        if taken and not (resuming or self.exist_ok):
            raise ConfigurationError(
                f"UltralyticsCheckpoint(dirpath={self.dirpath!r}) already holds another run's checkpoints "
                f"({', '.join(sorted(taken)[:4])}): choose another dirpath, resume with ckpt_path, or pass "
                f"exist_ok=True to overwrite them."
            )

    # ----------------------------------------------------------------------------------------------- saving
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record this validation in the results history, save as ModelCheckpoint does, and always save ``last``.

        Lightning 2.6 writes ``last`` only when the monitored value improved; Ultralytics writes last.pt every epoch.
        An epoch with NaN/infinite weights or metrics is not saved (the previous files stay).
        """
        if trainer.sanity_checking or self._should_skip_saving_checkpoint(trainer):
            return
        stop_at_validation_end_if_any_rank_got_sigterm(trainer)  # DDP: then on_exception saves last, here
        if not self._finite(trainer, pl_module, metrics=True):
            rank_zero_warn(
                f"Epoch {trainer.current_epoch}: NaN or infinite weights or metrics; not saved "
                f"(last/best stay as they were)."
            )
            return
        for key, value in {"epoch": float(trainer.current_epoch), **pl_module.last_metrics()}.items():
            self.history.setdefault(key, []).append(value)
        self._best_saved_now = ""
        try:
            super().on_validation_end(trainer, pl_module)
            if not self._should_skip_saving_checkpoint(trainer):  # nothing saved this step: the value did not improve
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        finally:
            self._best_saved_now = None

    def _finite(self, trainer: L.Trainer, pl_module: L.LightningModule, metrics: bool) -> bool:
        """Weights (live and EMA) and, with ``metrics``, ``fitness`` and the monitored value finite, on every rank."""
        ema = next((c for c in trainer.callbacks if isinstance(c, UltralyticsEMA)), None)
        averaged = ema.averaged_module() if ema is not None else None
        modules = [pl_module] + ([averaged] if averaged is not None else [])
        finite = bool(finite_flag(t for m in modules for t in m.state_dict().values()))
        if metrics:
            logged = trainer.callback_metrics
            finite &= all(math.isfinite(float(logged[k])) for k in {"fitness", self.monitor} if k in logged)
        return trainer.strategy.reduce_boolean_decision(finite, all=True)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Save the Lightning checkpoint and its Ultralytics ``.pt`` twin (rank 0), replacing the previous pair together.

        Both (and save_period's copy of the ``.pt``) are staged first; if any write fails (a full disk), none replaces
        its previous file and every rank stops with one TrainingError.
        """
        twin_path = Path(filepath).with_suffix(".pt")
        staged: list[tuple[Path, Path]] = []  # (staged file, target): the .pt twin, then save_period's copy of it
        failure = None
        if trainer.is_global_zero:
            try:
                twin = stage_checkpoint(self._ultralytics_checkpoint(trainer, trainer.lightning_module), twin_path)
                staged.append((twin, twin_path))
                if Path(filepath).stem == self.CHECKPOINT_NAME_LAST:
                    periodic = self._stage_periodic_copy(trainer, twin, twin_path)
                    staged += [periodic] if periodic else []
            except (TrainingError, ConfigurationError) as error:  # every rank must reach the broadcast below
                failure = str(error)
        if self._io is None:  # a custom CheckpointIO: it writes the .ckpt as it sees fit
            super()._save_checkpoint(trainer, filepath)
        else:
            # Lightning's _save_checkpoint less its logger notification, which would reach loggers (an uploader with
            # log_model="all") while the file is still staged: they hear of it below, once it is in place
            with self._io.deferred():
                trainer.save_checkpoint(filepath, self.save_weights_only)
            self._last_global_step_saved = trainer.global_step
            self._last_checkpoint_saved = filepath
            failure = failure or self._io.failure
        failure = trainer.strategy.broadcast(failure, src=0)
        if failure:
            if self._io is not None:
                self._io.discard()
            for file, _ in staged:
                file.unlink(missing_ok=True)
            raise TrainingError(f"{failure}; the previous {Path(filepath).stem} files are intact.")
        if self._best_saved_now is not None and Path(filepath).stem != self.CHECKPOINT_NAME_LAST:
            self._best_saved_now = filepath
        if not trainer.is_global_zero:
            return
        if self._io is not None:
            self._io.commit(filepath)
        for file, target in staged:
            commit(file, target)
        if self._io is not None:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        """Lightning's, except right after ``best`` was written by this validation: ``last`` is then a copy of it.

        Both hold the same state, so the files are copied instead of serialized a second time (the expensive part:
        building the fp16 ``.pt`` and pickling the ``.ckpt``), as Ultralytics writes the bytes it serialized once to
        both last.pt and best.pt. A copy, not a link: each file stays independent of the other.
        """
        best = self._best_saved_now
        if not best or self._io is None:  # nothing written by this validation, or a custom IO that may not be local
            super()._save_last_checkpoint(trainer, monitor_candidates)
            return
        filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        previous, self.last_model_path = self.last_model_path, filepath
        pairs = [(Path(best).with_suffix(suffix), Path(filepath).with_suffix(suffix)) for suffix in (".ckpt", ".pt")]
        staged, failure = [], None
        if trainer.is_global_zero:
            try:
                for source, target in pairs:
                    staged.append((stage_copy(source, target), target))
                periodic = self._stage_periodic_copy(trainer, *pairs[1])
                staged += [periodic] if periodic else []
            except (TrainingError, ConfigurationError) as error:  # every rank must reach the broadcast below
                failure = str(error)
        failure = trainer.strategy.broadcast(failure, src=0)
        if failure:
            for file, _ in staged:
                file.unlink(missing_ok=True)
            raise TrainingError(f"{failure}; the previous {self.CHECKPOINT_NAME_LAST} files are intact.")
        if trainer.is_global_zero:
            for file, target in staged:
                commit(file, target)
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _stage_periodic_copy(self, trainer: L.Trainer, source: Path, last_pt: Path) -> tuple[Path, Path] | None:
        """Stage ``epoch{N}.pt`` beside ``last.pt`` (a copy of ``source``, the bytes last.pt gets) after epochs 0,
        ``save_period``, 2 x ``save_period``... (Ultralytics' ``save_period``): (staged file, target), or None in other
        epochs and for a ``last`` saved mid-epoch (SIGTERM), which is no finished epoch N.

        Staged with last.pt, before the ranks' broadcast, so that a failed copy stops every rank with the same error;
        after the broadcast rank 0 only renames."""
        epoch = trainer.current_epoch
        if self.save_period <= 0 or epoch % self.save_period or self._preempted:
            return None
        periodic = last_pt.with_name(f"epoch{epoch}.pt")
        return stage_copy(source, periodic), periodic

    def _ultralytics_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """EMA weights (the live module holds the raw ones outside validation) in Ultralytics' format."""
        ema = next((c for c in trainer.callbacks if isinstance(c, UltralyticsEMA)), None)
        averaged = ema.averaged_module() if ema is not None else None
        model = (averaged or pl_module).model
        best = float(self.best_model_score) if self.best_model_score is not None else None
        return ultralytics_checkpoint(
            model, pl_module.ultralytics_train_args(), trainer.current_epoch, pl_module.last_metrics(), self.history, best
        )

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Remove a superseded checkpoint and its ``.pt`` twin."""
        super()._remove_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            Path(filepath).with_suffix(".pt").unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------ preemption
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """ModelCheckpoint's, and under DDP a SIGTERM to any rank stops all ranks together (see ``on_exception``)."""
        super().on_train_start(trainer, pl_module)
        stop_all_ranks_on_sigterm(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """SIGTERM while fitting: save ``last`` at this step (if its weights are finite) and exit with status 143."""
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        saved = ""
        if self.dirpath is not None and self._finite(trainer, pl_module, metrics=False):
            self._preempted = True
            try:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            finally:
                self._preempted = False
            saved = f"; saved {Path(self.dirpath) / 'last.ckpt'} (resume with ckpt_path pointing to it)"
        exception.code = PREEMPTED_EXIT_STATUS
        rank_zero_warn(f"SIGTERM at epoch {trainer.current_epoch}{saved}. Exiting with status {PREEMPTED_EXIT_STATUS}.")

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """ModelCheckpoint's state plus the results history (so a resumed run keeps it)."""
        return {**super().state_dict(), "history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ModelCheckpoint's state and the results history."""
        self.history = state_dict.get("history", {})
        super().load_state_dict(state_dict)
