"""The prepared check of yolo-lightning on one GPU (H100/H200), offline, under 8 minutes: one verdict line per check.

    python bench/gpu_check.py                                   # every check, on CUDA device 0
    python bench/gpu_check.py --checks resume,amp-fused-clip    # a subset (--list: the checks and what they assert)
    python bench/gpu_check.py --quick                           # smaller sizes and fewer epochs everywhere
    python bench/gpu_check.py --accelerator cpu --quick --workers 0 --checks resume   # CPU dry run: NOT a GPU result

Each check prints ONE line, ``PASS <check>: <numbers> (<seconds> s)``, ``FAIL <check>: <why> (<seconds> s)`` or
``SKIP <check>: <why>``, as soon as it is done; the exit status is 0 only when every check that ran passed (1
otherwise, 2 for bad options or no CUDA device). Everything starts from model YAMLs, or from weights a check trains
itself, on the embedded synthetic data (``yolo_lightning.synthetic``): no network is needed (``YOLO_OFFLINE=1``,
Ultralytics' fonts placed locally, its AMP check, which downloads yolo26n.pt, replaced by "AMP works").

Every run is a fresh Python process (``--runner NAME``, see bench/gpu_check_runs.py) with its own CUDA context, memory
peak and log (``<out>/logs/<run>.out|.err``), killed with its loader workers when the ``--budget-s`` runs out. The
checks train yolo26n through the public API only (YOLOModule, YOLODataModule, yolo_lightning.callbacks, the CLI), in
``16-mixed`` (Ultralytics' ``amp=True``) unless said otherwise, with bench/benchmark.py's recipe (AdamW lr0 0.003,
warmup 1 epoch, nbs = batch, close_mosaic 0) and ``deterministic="warn"`` (Ultralytics' ``deterministic=True``).
``--list`` prints what each check asserts. The speed checks (``fits``, ``best-pt``, ``speed``) use ``--imgsz``,
``--batch``, ``--images``, ``--val-images`` and ``--epochs``; the others a small dataset (``SMALL``, 64-128 px).
In a CPU dry run (``--accelerator cpu``) Lightning runs ``16-mixed`` as ``bf16-mixed`` (no GradScaler), the trajectory
compares ``32-true`` with native's float32, the CLI's default is ``32-true`` and ``ddp-syncbn`` is skipped: every code
path but CUDA's runs, and none of it is a GPU result.

``fits``, ``best-pt`` and ``speed`` also print a markdown table for BENCHMARKS.md: rates exclude the first epoch and
the first validation; a native epoch is timed from ``on_train_epoch_start`` to ``on_train_epoch_end``, a Lightning
epoch from ``on_train_epoch_start`` to ``on_validation_start`` (its batches); a validation from start to end; each
boundary waits for the GPU's queued work; peak memory is ``torch.cuda.max_memory_allocated()`` over the fit. Speed
goals (throughput >= 1.0x native, memory <= 1.1x) are reported, not pass/fail conditions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the working tree's yolo_lightning, installed or not (a GPU machine gets a bare copy)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_check_runs, beside this file

import gpu_check_runs as runs  # noqa: E402  (imports nothing heavy)
from gpu_check_runs import KEYS, MODEL  # noqa: E402

CHECKED = ("mAP50", "mAP50-95")  # compared with the logged values; P and R move with the max-F1 confidence: reported
LOGGED_TOLERANCE = 0.01  # |mAP of the fp16 file - mAP logged for the fp32 EMA| (fp16 storage, fp16 autocast)
SAME_FILE_TOLERANCE = 1e-4  # Trainer.validate vs YOLO(best.pt).val() on the same file, every key
WEAK_MAP50 = 0.005  # below this logged mAP50 the comparisons are nearly zeros against zeros
PRECISIONS = ("32-true", "16-mixed")  # fit order: the 16-mixed speed run then sits next to native's
MIN_START_S = 10.0  # do not start a run with less of the budget left
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}  # read by Ultralytics at import: no network probes
DEFAULT_BUDGET_S = 470.0  # the whole invocation, checks and start-up: under 8 minutes
# resume: the resumed run's final weights / losses may differ from the uninterrupted run's by this many times the
# difference between two uninterrupted runs (CUDA's non-deterministic kernels), or by the floor when both are smaller
RESUME_NOISE_FACTOR = 4.0
RESUME_WEIGHTS_FLOOR = 1e-3  # relative L2 distance of the final (EMA) weights
RESUME_LOSS_FLOOR = 1e-3  # relative difference of a resumed epoch's mean loss
GRAD_NORM_LIMIT = 1e4  # a logged pre-clip grad norm above this is in GradScaler units (x 2^k), not the gradient's
GRAD_NORM_RATIO = 5.0  # median 16-mixed / 32-true grad norm within [1/x, x]; GradScaler's scale would be >= 2^7
MAX_OBJECTS = 3  # the synthetic data puts at most 3 objects in an image: more in a training image means mosaic
CLASS_WEIGHT_TOLERANCE = 1e-3  # relative, logged inverse_frequency weight vs max(count) / count of the label files
MAP_TOLERANCE = 0.03  # |torchmetrics' COCO mAP - Ultralytics' mAP| (tests/test_validation_parity.py's)
TRAJECTORY_MARGIN = 0.05  # ours within [min - m, max + m] of native's two seeds, m = 5% of native's mean that epoch
SYNC_TOLERANCE = 1e-5  # largest difference between the ranks' BatchNorm statistics / weights under SyncBatchNorm
SPEED_GOALS = (("train_ips", "train images/s", 1.0, True), ("val_ips", "validation images/s", 1.0, True),
               ("peak_mib", "peak GPU memory, MiB (`max_memory_allocated`)", 1.1, False))  # fmt: skip
CLI_PLOTS = ("results.png", "labels.jpg", "train_batch0.jpg", "val_batch0_labels.jpg", "val_batch0_pred.jpg",
             "confusion_matrix.png", "BoxPR_curve.png")  # fmt: skip  (the run folder of a default `fit`)
SPEED_SIZES = {"imgsz": (640, 320), "batch": (32, 32), "images": (256, 128), "val_images": (64, 32), "epochs": (5, 3)}
# The small dataset of every other check, and each check's epochs: (normal, --quick).
SMALL = {"imgsz": (128, 64), "n_train": (128, 64), "n_val": (32, 16), "batch": 16, "workers": 4}
EPOCHS = {
    "resume": ((4, 2), (2, 1)),  # (epochs, stop after)
    "amp-fused-clip": (2, 2), "bf16": (3, 2), "close-mosaic": (3, 2), "class-weights": (2, 1),
    "freeze-backbone": (3, 2), "map-cross-check": (15, 3), "trajectory": (8, 3), "cli": (2, 1), "ddp-syncbn": (2, 1),
}  # fmt: skip
NATIVE_SEEDS = (0, 1)


# ------------------------------------------------------------------------------------------------------ verdicts
@dataclass
class Outcome:
    """What a check found: ``PASS``, ``FAIL`` or ``SKIP``, and the numbers (or why)."""

    status: str
    detail: str


def passed(detail: str) -> Outcome:
    """A PASS."""
    return Outcome("PASS", detail)


def failed(detail: str) -> Outcome:
    """A FAIL."""
    return Outcome("FAIL", detail)


def judged(failures: list[str], numbers: str) -> Outcome:
    """PASS with the numbers, or FAIL with the failures then the numbers."""
    return failed("; ".join(failures) + f" [{numbers}]") if failures else passed(numbers)


def verdict_line(check: str, outcome: Outcome, seconds: float | None) -> str:
    """``PASS <check>: <numbers> (12 s)``, on one line."""
    detail = " ".join(outcome.detail.split())
    timing = f" ({seconds:.0f} s)" if seconds is not None and outcome.status != "SKIP" else ""
    return f"{outcome.status} {check}: {detail}{timing}"


def run_error(run: dict[str, Any]) -> Outcome | None:
    """A FAIL for a run that did not finish (crashed, killed at the budget, not started), else None."""
    return failed(run["error"]) if "error" in run else None


def _g(value: float | None, spec: str = ".3g") -> str:
    """A number for a verdict line."""
    return "n/a" if value is None else format(value, spec)


def fits_verdict(fits: dict[str, dict[str, Any]]) -> Outcome:
    """Both speed fits finished and wrote best.pt."""
    failures = [f"{p}: {fit['error']}" for p, fit in fits.items() if "error" in fit]
    numbers = ", ".join(
        f"{p} (ran as {fit['precision']}) train {fit['train_ips']:.1f} img/s, best.pt written"
        for p, fit in fits.items() if "error" not in fit
    )  # fmt: skip
    return judged(failures, numbers or "no fit finished")


def best_pt_verdict(fits: dict[str, dict[str, Any]], check: dict[str, Any]) -> Outcome:
    """For each speed fit's best.pt: YOLO(best.pt).val() vs the logged metrics and vs Trainer.validate."""
    if (error := run_error(check)) is not None:
        return error
    failures, numbers = [], []
    for precision, fit in fits.items():
        if "error" in fit or fit["best_pt"] not in check["checks"]:
            failures.append(f"{precision}: no best.pt to check")
            continue
        _, new_failures = check_rows(precision, check["checks"][fit["best_pt"]])
        failures += new_failures
        result = check["checks"][fit["best_pt"]]
        logged, theirs, ours = result["logged"], result["ultralytics"], result["lightning"]
        weak = " (weak)" if logged["mAP50"] < WEAK_MAP50 else ""
        numbers.append(
            f"{precision} epoch {result['epoch']}: YOLO.val mAP50 {theirs['mAP50']:.4f} / logged {logged['mAP50']:.4f}, "
            f"mAP50-95 {theirs['mAP50-95']:.4f} / {logged['mAP50-95']:.4f}{weak}; Trainer.validate max diff "
            f"{max(abs(theirs[k] - ours[k]) for k in KEYS):.1e}"
        )
    return judged(failures, "; ".join(numbers))


def speed_verdict(native: dict[str, Any], fits: dict[str, dict[str, Any]]) -> Outcome:
    """Throughput and memory of the 16-mixed fit against native AMP: reported (PASS when both were measured)."""
    lightning = fits["16-mixed"]
    for name, run in (("native", native), ("16-mixed fit", lightning)):
        if "error" in run:
            return failed(f"{name}: {run['error']}")
    parts = []
    for key, label, goal, higher_is_better in SPEED_GOALS:
        if native[key] is None or lightning[key] is None:
            parts.append(f"{label.split(',')[0]} n/a")
            continue
        ratio = lightning[key] / native[key]
        met = ratio >= goal if higher_is_better else ratio <= goal
        parts.append(
            f"{label.split(',')[0]} {lightning[key]:.1f} vs native {native[key]:.1f} = {ratio:.2f}x "
            f"(goal {'>=' if higher_is_better else '<='} {goal}x {'met' if met else 'MISSED'})"
        )
    return passed("; ".join(parts) + " (speed goals are reported, not checked)")


def resume_verdict(r: dict[str, Any]) -> Outcome:
    """The resumed fit ran on the GPU with the EMA beside the weights, from the checkpoint's epoch and best score,
    kept results.csv's rows, and ended where the uninterrupted run ended (within run-to-run noise)."""
    failures = []
    if r["ema_devices"] != [r["module_device"]]:
        devices = ", ".join(r["ema_devices"])
        failures.append(f"after resume UltralyticsEMA's average is on {devices}, the module on {r['module_device']}")
    if r["ema_dtypes"] != ["torch.float32"]:
        failures.append(f"the resumed EMA holds {', '.join(r['ema_dtypes'])}, not float32 only")
    if r["first_epoch"] != r["saved_epoch"] + 1:
        failures.append(f"resumed at epoch {r['first_epoch']}, last.ckpt holds epoch {r['saved_epoch']}")
    if r["best_saved"] is None or r["best_restored"] is None or abs(r["best_restored"] - r["best_saved"]) > 1e-9:
        failures.append(f"best score restored {r['best_restored']}, saved {r['best_saved']}")
    if r["changed_rows"]:
        failures.append(f"results.csv rows from before the resume changed: {'; '.join(r['changed_rows'])}")
    if r["resumed_rows"] != r["epochs"]:
        failures.append(f"results.csv has {r['resumed_rows']} rows after {r['epochs']} epochs")
    weights_limit = max(RESUME_NOISE_FACTOR * r["weights_noise"], RESUME_WEIGHTS_FLOOR)
    if not r["weights_resumed"] <= weights_limit:
        failures.append(
            f"final weights differ from the uninterrupted run's by {r['weights_resumed']:.2e} > {weights_limit:.1e}"
        )
    loss_limit = max(RESUME_NOISE_FACTOR * r["loss_noise"], RESUME_LOSS_FLOOR)
    if not r["loss_resumed"] <= loss_limit:
        failures.append(f"resumed epochs' losses differ by {r['loss_resumed']:.2e} > {loss_limit:.1e}")
    numbers = (
        f"{r['precision']}, stopped after epoch {r['saved_epoch']} of {r['epochs']}, resumed at epoch "
        f"{r['first_epoch']} with best fitness {_g(r['best_restored'], '.4f')}; EMA on {', '.join(r['ema_devices'])}; "
        f"final weights vs uninterrupted {r['weights_resumed']:.1e} (run-to-run noise {r['weights_noise']:.1e}, "
        f"limit {weights_limit:.1e}; training moved them {r['weights_moved']:.1e}); resumed epochs' losses "
        f"{r['loss_resumed']:.1e} (noise {r['loss_noise']:.1e}, limit {loss_limit:.1e})"
    )
    return judged(failures, numbers)


def amp_verdict(r: dict[str, Any], on_cuda: bool) -> Outcome:
    """GradientClipping's logged ``train/grad_norm`` under AMP (fused AdamW on CUDA) is in the gradient's units: finite
    steps below ``GRAD_NORM_LIMIT`` and a median within ``GRAD_NORM_RATIO`` of the same fit's in 32-true."""
    mixed, reference = r["mixed"], r["reference"]
    mixed_norms, reference_norms = runs.finite(mixed["norms"]), runs.finite(reference["norms"])
    failures = []
    if not mixed_norms or not reference_norms:
        return failed(f"no finite train/grad_norm_step logged ({mixed['precision']}: {len(mixed['norms'])} values, "
                      f"32-true: {len(reference['norms'])})")  # fmt: skip
    ratio = statistics.median(mixed_norms) / max(statistics.median(reference_norms), 1e-12)
    if max(mixed_norms) >= GRAD_NORM_LIMIT:
        failures.append(f"{mixed['precision']} logged grad_norm up to {max(mixed_norms):.3g} >= {GRAD_NORM_LIMIT:g}: "
                        f"GradScaler's scale leaks into the norm (clipped in scaled units)")  # fmt: skip
    if not 1 / GRAD_NORM_RATIO <= ratio <= GRAD_NORM_RATIO:
        failures.append(
            f"median grad_norm {mixed['precision']} / 32-true = {ratio:.3g}, "
            f"outside [1/{GRAD_NORM_RATIO:g}, {GRAD_NORM_RATIO:g}]"
        )
    if on_cuda and mixed["precision"] == "16-mixed" and not mixed["fused"]:
        note = " (optimizer NOT fused: Ultralytics' fused AdamW path not exercised)"
    else:
        note = "" if on_cuda else " (CPU dry run: no GradScaler)"
    scales = sorted(set(mixed["scales"]))
    numbers = (
        f"{mixed['precision']} {mixed['optimizer']}(fused={mixed['fused']}): grad_norm median "
        f"{statistics.median(mixed_norms):.3g}, max {max(mixed_norms):.3g} over {len(mixed_norms)} finite of "
        f"{len(mixed['norms'])} steps; 32-true median {statistics.median(reference_norms):.3g}; ratio {ratio:.3g}; "
        f"loss scale {_g(scales[0] if scales else None, 'g')}..{_g(scales[-1] if scales else None, 'g')}{note}"
    )
    return judged(failures, numbers)


def _total(losses: dict[str, float]) -> float:
    """The sum of an epoch's training losses (box + cls + dfl, or YOLO26's box + cls + l1); NaN when none."""
    return sum(losses.values()) if losses else float("nan")


def bf16_verdict(r: dict[str, Any]) -> Outcome:
    """A bf16-mixed fit with float32 weights and EMA, finite falling losses, and a best.pt that validates as logged."""
    failures = []
    if r["precision"] != "bf16-mixed":
        failures.append(f"ran as {r['precision']}")
    if r["weight_dtypes"] != ["torch.float32"] or r["ema_dtypes"] != ["torch.float32"]:
        failures.append(f"weights {r['weight_dtypes']}, EMA {r['ema_dtypes']}: not float32")
    totals = [_total(epoch) for epoch in r["losses"]]
    if not totals or not all(math.isfinite(t) for t in totals):
        failures.append(f"non-finite epoch losses {totals}")
    elif len(totals) > 1 and not totals[-1] < totals[0]:
        failures.append(f"the loss did not fall: {totals[0]:.3f} -> {totals[-1]:.3f}")
    best = r["best"]
    diffs = {k: abs(best["ultralytics"][k] - best["logged"][k]) for k in CHECKED}
    if any(d > LOGGED_TOLERANCE for d in diffs.values()):
        failures.append(f"YOLO(best.pt).val() differs from the logged metrics by more than {LOGGED_TOLERANCE}")
    weak = " (weak)" if best["logged"]["mAP50"] < WEAK_MAP50 else ""
    numbers = (
        f"{r['precision']}, float32 weights/EMA; loss {' -> '.join(f'{t:.3f}' for t in totals)}; best.pt (epoch "
        f"{best['epoch']}) YOLO.val mAP50 {best['ultralytics']['mAP50']:.4f} vs logged {best['logged']['mAP50']:.4f}, "
        f"mAP50-95 diff {diffs['mAP50-95']:.1e}{weak}"
    )
    return judged(failures, numbers)


def close_mosaic_verdict(r: dict[str, Any]) -> Outcome:
    """Mosaic closes at epoch ``epochs - close_mosaic`` (flag and the images the workers produce), not before."""
    epochs, close = r["epochs"], r["close_mosaic"]
    expected = [e >= epochs - close for e in range(epochs)]
    failures = []
    if r["closed"] != expected:
        failures.append(f"mosaic_closed per epoch {r['closed']}, expected {expected}")
    open_most = [m for m, c in zip(r["most_objects"], expected) if not c]
    closed_most = [m for m, c in zip(r["most_objects"], expected) if c]
    if closed_most and max(closed_most) > MAX_OBJECTS:
        failures.append(f"after closing, a training image held {max(closed_most)} objects (> {MAX_OBJECTS}: still mosaics)")
    if open_most and max(open_most) <= MAX_OBJECTS:
        failures.append(f"before closing, no training image held more than {MAX_OBJECTS} objects: mosaic was not on")
    numbers = (
        f"{epochs} epochs, close_mosaic={close}: closed at epoch {expected.index(True) if True in expected else None}; "
        f"most objects per training image, per epoch: {r['most_objects']} (a synthetic image has <= {MAX_OBJECTS})"
    )
    return judged(failures, numbers)


def class_weights_verdict(r: dict[str, Any]) -> Outcome:
    """The logged inverse-frequency weights are ``max(count) / count`` of the training labels; losses finite."""
    counts, logged = r["counts"], r["logged"]
    failures = []
    if not logged:
        failures.append("no class_weights/<name> hyper-parameters logged")
    expected = {name: max(counts.values()) / count for name, count in counts.items() if count}
    for name, weight in expected.items():
        got = logged.get(name)
        if got is None or abs(got - weight) > CLASS_WEIGHT_TOLERANCE * weight:
            failures.append(f"{name}: logged {got}, expected {weight:.4f}")
    totals = [_total(epoch) for epoch in r["losses"]]
    if not totals or not all(math.isfinite(t) for t in totals):
        failures.append(f"non-finite epoch losses {totals}")
    numbers = (
        f"{r['precision']}; weights " + ", ".join(f"{n} {logged.get(n, float('nan')):.3f}" for n in counts)
        + " for label counts " + ", ".join(f"{n} {c}" for n, c in counts.items())
        + f"; loss {' -> '.join(f'{t:.3f}' for t in totals)}"
    )  # fmt: skip
    return judged(failures, numbers)


def freeze_verdict(r: dict[str, Any]) -> Outcome:
    """Frozen layers (weights and BatchNorm statistics) do not move while frozen, the head does; they move once
    unfrozen; ``frozen_parameter_names`` empties at ``unfreeze_at_epoch``."""
    unfreeze_at, per_epoch = r["unfreeze_at_epoch"], r["frozen_names_per_epoch"]
    failures = []
    if not per_epoch or per_epoch[0] == 0 or any(per_epoch[unfreeze_at:]):
        failures.append(f"frozen parameter tensors per epoch {per_epoch}, expected > 0 before epoch {unfreeze_at}, 0 after")
    moved, compared = r["backbone_moved_while_frozen"]
    if moved or not compared:
        failures.append(f"{moved} of {compared} frozen tensors changed while frozen")
    stats_moved, stats = r["backbone_stats_moved_while_frozen"]
    if stats_moved or not stats:
        failures.append(f"{stats_moved} of {stats} frozen BatchNorm statistics changed while frozen")
    head_moved, head = r["head_moved_while_frozen"]
    if not head_moved:
        failures.append(f"the head did not train while the backbone was frozen (0 of {head} tensors changed)")
    after, total = r["backbone_moved_after_unfreeze"]
    if not after:
        failures.append(f"the unfrozen layers did not train after epoch {unfreeze_at} (0 of {total} tensors changed)")
    numbers = (
        f"{r['precision']}, layers 0..{r['layers'] - 1} frozen until epoch {unfreeze_at} of {r['epochs']}: "
        f"frozen tensors per epoch {per_epoch}; while frozen {moved}/{compared} backbone tensors and {stats_moved}/{stats} "
        f"BatchNorm statistics changed, {head_moved}/{head} head tensors; after unfreezing {after}/{total} backbone tensors"
    )
    return judged(failures, numbers)


def map_verdict(r: dict[str, Any]) -> Outcome:
    """torchmetrics' COCO mAP (faster-coco-eval) matches Ultralytics' mAP at the last validation."""
    if not r["coco"]:
        return failed("no metrics/coco/* values logged")
    last_ours, last_coco = r["ultralytics"][-1], r["coco"][-1]
    diffs = {k: abs(last_ours[k] - last_coco[k]) for k in last_coco}
    failures = [f"|COCO - Ultralytics| {k} {d:.4f} > {MAP_TOLERANCE}" for k, d in diffs.items() if d > MAP_TOLERANCE]
    weak = " (weak: mAP50 < %g)" % WEAK_MAP50 if last_ours["mAP50"] < WEAK_MAP50 else ""
    numbers = (
        f"{r['precision']}, {len(r['coco'])} validations; last: Ultralytics mAP50 {last_ours['mAP50']:.4f}, mAP50-95 "
        f"{last_ours['mAP50-95']:.4f}; COCO mAP50 {last_coco['mAP50']:.4f}, mAP50-95 {last_coco['mAP50-95']:.4f}"
        f"{weak}; largest difference over all validations "
        f"{max(abs(o[k] - c[k]) for o, c in zip(r['ultralytics'], r['coco']) for k in c):.4f}"
    )
    return judged(failures, numbers)


def trajectory_verdict(ours: dict[str, Any], native: dict[str, Any]) -> Outcome:
    """Each of our per-epoch training losses (box, cls, and YOLO26's l1 or dfl) lies within native's two seeds'
    spread, widened on each side by ``TRAJECTORY_MARGIN`` of native's mean for that epoch and loss."""
    seeds = sorted(native["runs"])
    curves = [native["runs"][s]["losses"] for s in seeds]
    epochs = min(len(ours["losses"]), *(len(c) for c in curves))
    failures = []
    if epochs == 0 or len(ours["losses"]) != len(curves[0]):
        failures.append(f"epochs logged: ours {len(ours['losses'])}, native {[len(c) for c in curves]}")
    keys = sorted(set(ours["losses"][0]).intersection(*(c[0] for c in curves))) if epochs else []
    if epochs and not keys:
        failures.append(f"no loss column in common: ours {sorted(ours['losses'][0])}, native {sorted(curves[0][0])}")
    outside = []
    for epoch in range(epochs):
        for key in keys:
            values = [c[epoch].get(key, float("nan")) for c in curves]
            mine = ours["losses"][epoch].get(key, float("nan"))
            margin = TRAJECTORY_MARGIN * statistics.mean(values)
            if not min(values) - margin <= mine <= max(values) + margin:
                outside.append(
                    f"epoch {epoch} {key.split('/')[1]} {mine:.4f} outside native "
                    f"{min(values):.4f}..{max(values):.4f} +-{margin:.4f}"
                )
    if outside:
        failures.append(
            f"{len(outside)} of {epochs * len(keys)} epoch losses outside native's spread: " + "; ".join(outside[:4])
        )

    def curve(losses: list[dict[str, float]]) -> str:
        return " ".join(f"{sum(e.get(k, float('nan')) for k in keys):.3f}" for e in losses[:epochs])

    losses = "+".join(k.split("/")[1].removesuffix("_loss") for k in keys)
    numbers = (
        f"{losses} per epoch: ours ({ours['precision']}) {curve(ours['losses'])}; "
        + "; ".join(f"native ({native['precision']}) seed {s} {curve(c)}" for s, c in zip(seeds, curves))
        + f"; margin {TRAJECTORY_MARGIN:.0%} of native's mean, per epoch and loss"
    )  # fmt: skip
    return judged(failures, numbers)


def ddp_verdict(r: dict[str, Any]) -> Outcome:
    """Two NCCL ranks, every BatchNorm converted to SyncBatchNorm, identical statistics and weights on both ranks, and
    a best.pt of plain BatchNorm2d."""
    failures = []
    if r["world_size"] != 2 or r["backend"] != "nccl":
        failures.append(f"world size {r['world_size']}, backend {r['backend']} (expected 2, nccl)")
    if not r["converted"] or r["sync_layers"] != r["converted"]:
        failures.append(f"{r['converted']} BatchNorm layers converted, {r['sync_layers']} SyncBatchNorm in the DDP model")
    if not r["stats_spread"] <= SYNC_TOLERANCE:
        failures.append(f"BatchNorm statistics differ between ranks by {r['stats_spread']:.2e}")
    if not r["weights_spread"] <= SYNC_TOLERANCE:
        failures.append(f"weights differ between ranks by {r['weights_spread']:.2e}")
    if not r["best_pt"] or r["best_pt_sync_layers"]:
        failures.append("best.pt missing" if not r["best_pt"] else "best.pt holds SyncBatchNorm layers")
    numbers = (
        f"{r['precision']}, {r['world_size']} ranks over {r['backend']}: {r['converted']} BatchNorm -> SyncBatchNorm; "
        f"ranks differ by {r['stats_spread']:.1e} (BN statistics), {r['weights_spread']:.1e} (weights); "
        f"best.pt BatchNorm2d only: {r['best_pt'] and not r['best_pt_sync_layers']}"
    )
    return judged(failures, numbers)


def cli_verdict(r: dict[str, Any]) -> Outcome:
    """``yolo-lightning fit``'s default path: exit 0, the expected precision, the sanity check and progress bar ran,
    best.pt and the plots in the run folder."""
    if "error" in r:
        return failed(r["error"])
    failures = []
    if r["returncode"] != 0:
        failures.append(f"exit {r['returncode']}: {r['last_error']}")
    if r["precision"] != r["expected_precision"]:
        failures.append(f"precision {r['precision']}, expected {r['expected_precision']} (no --trainer.precision given)")
    if not r["best_pt"]:
        failures.append("no weights/best.pt")
    if r["missing_plots"]:
        failures.append(f"missing in the run folder: {', '.join(r['missing_plots'])}")
    if not r["sanity_check"]:
        failures.append("no sanity check in the output")
    if not r["progress_bar"]:
        failures.append("no progress bar in the output")
    numbers = (
        f"exit {r['returncode']}, precision {r['precision']} (config.yaml), optimizer auto -> {r['optimizer']}, "
        f"sanity check {'ran' if r['sanity_check'] else 'missing'}, "
        f"progress bar {'shown' if r['progress_bar'] else 'missing'}, "
        f"best.pt {'written' if r['best_pt'] else 'missing'}, {r['plots']} plots in {r['run']}"
    )
    return judged(failures, numbers)


# -------------------------------------------------------------------------------------------------- orchestration
class Budget:
    """The hard wall-clock limit of the whole invocation."""

    def __init__(self, seconds: float) -> None:
        """Start counting ``seconds`` from now."""
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left."""
        return self.deadline - time.monotonic()


class Context:
    """What the checks share: the options, the output folder, the datasets (made on first use) and the runs (each
    launched once, in its own process, and remembered: ``best-pt`` and ``speed`` reuse ``fits``' runs)."""

    def __init__(self, args: argparse.Namespace, out: Path, budget: Budget) -> None:
        self.args = args
        self.out = out
        self.budget = budget
        self.runs: dict[str, dict[str, Any]] = {}
        self._data: dict[str, Path] = {}
        self._pending: dict[str, threading.Thread] = {}

    @property
    def on_cuda(self) -> bool:
        """Whether the checks run on CUDA (not a CPU dry run)."""
        return self.args.accelerator == "gpu"

    def size(self, key: str) -> Any:
        """A SMALL size for this invocation (normal or ``--quick``)."""
        value = SMALL[key]
        return value[1 if self.args.quick else 0] if isinstance(value, tuple) else value

    def epochs(self, check: str) -> Any:
        """A check's epochs for this invocation."""
        return EPOCHS[check][1 if self.args.quick else 0]

    def prefetch(self, kind: str) -> None:
        """Start writing a dataset in the background (the checks before its first use only wait on processes)."""
        if kind not in self._data and kind not in self._pending:
            self._pending[kind] = threading.Thread(target=self._write, args=(kind,), daemon=True)
            self._pending[kind].start()

    def data(self, kind: str) -> Path:
        """The synthetic dataset ``speed`` (the speed options' sizes) or ``small``, written on first use."""
        if kind in self._pending:
            self._pending.pop(kind).join()
        if kind not in self._data:  # not prefetched, or the prefetch failed: write it here (and raise here)
            self._write(kind)
        return self._data[kind]

    def _write(self, kind: str) -> None:
        """Write the dataset ``kind`` (once: synthetic_data_yaml reuses a complete folder)."""
        from yolo_lightning.synthetic import synthetic_data_yaml

        a = self.args
        if kind == "speed":
            n_train, n_val, imgsz = a.images, a.val_images, a.imgsz
        else:
            n_train, n_val, imgsz = self.size("n_train"), self.size("n_val"), self.size("imgsz")
        folder = self.out / f"data-{kind}"
        self._data[kind] = synthetic_data_yaml(folder, n_train=n_train, n_val=n_val, imgsz=imgsz, seed=0)

    def small_spec(self, check: str, **extra: Any) -> dict[str, Any]:
        """The spec of a small-data run: data, sizes, workers, precision (16-mixed; in a CPU dry run, Lightning's
        16-mixed on CPU is bf16)."""
        return {
            "data": str(self.data("small")), "imgsz": self.size("imgsz"), "batch": self.size("batch"),
            "workers": min(self.args.workers, self.size("workers")), "precision": "16-mixed", "check": check, **extra,
        }  # fmt: skip

    def launch(
        self, name: str, runner: str, spec: dict[str, Any] | None = None, extra: list[str] | None = None
    ) -> dict[str, Any]:
        """Run one runner in a fresh process (once per name); its JSON result, or ``{"error": why}``."""
        if name not in self.runs:
            a = self.args
            command = [
                sys.executable, __file__, "--runner", runner, "--root", str(self.out / name), "--accelerator", a.accelerator,
                "--imgsz", str(a.imgsz), "--batch", str(a.batch), "--epochs", str(a.epochs), "--images", str(a.images),
                "--val-images", str(a.val_images), "--workers", str(a.workers), "--spec", json.dumps(spec or {}),
                *(extra or []),
            ]  # fmt: skip
            self.runs[name] = self._result(name, command)
        return self.runs[name]

    def _result(self, name: str, command: list[str]) -> dict[str, Any]:
        """The last JSON line a runner printed, or why there is none."""
        returncode, stdout, stderr, seconds = self.execute(name, command)
        if returncode is None:
            return {"error": stdout}
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if lines else None
        if returncode != 0 or result is None or "error" in result:
            last = [line for line in stderr.splitlines() if line.strip()] or ["(no output)"]
            why = result["error"] if result and "error" in result else last[-1].strip()[:300]
            return {"error": f"{name} exit {returncode} after {seconds:.0f} s ({self.out / 'logs' / name}.err): {why}"}
        return {**result, "run_seconds": seconds}

    def execute(self, name: str, command: list[str], cwd: Path = REPO) -> tuple[int | None, str, str, float]:
        """Run a command in its own process group, logs in ``<out>/logs``, killed (with its loader workers) at the
        budget's end: (exit status or None, stdout, stderr, seconds); None: not started or killed, stdout says why."""
        if self.budget.left() < MIN_START_S:
            why = f"{name} not started: under {MIN_START_S:.0f} s left of the {self.budget.seconds:.0f} s budget"
            return None, why, "", 0.0
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stdout_path, stderr_path = logs / f"{name}.out", logs / f"{name}.err"
        env = {**os.environ, **OFFLINE_ENV}
        start = time.monotonic()
        print(f"gpu_check: {name} ({self.budget.left():.0f} s of budget left)", file=sys.stderr, flush=True)
        with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
            process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=cwd, start_new_session=True)
            try:
                process.wait(timeout=max(self.budget.left(), 1.0))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own process group: the runner and its loader workers
                process.wait()
                seconds = time.monotonic() - start
                return None, f"{name} killed after {seconds:.0f} s: the {self.budget.seconds:.0f} s budget ran out", "", seconds
        seconds = time.monotonic() - start
        print(f"gpu_check: {name} done in {seconds:.0f} s, exit {process.returncode}", file=sys.stderr, flush=True)
        return process.returncode, stdout_path.read_text(errors="replace"), stderr_path.read_text(errors="replace"), seconds

    # --------------------------------------------------------------------------------------- the speed runs
    def speed_fits(self) -> dict[str, dict[str, Any]]:
        """The 32-true and 16-mixed fits at the speed sizes."""
        data = ["--data", str(self.data("speed"))]
        return {p: self.launch(f"lightning-{p}", "fit", extra=["--precision", p, *data]) for p in PRECISIONS}

    def best_pt_check(self) -> dict[str, Any]:
        """The validations of the speed fits' best.pt files."""
        weights = [run["best_pt"] for run in self.speed_fits().values() if "error" not in run]
        if not weights:
            return {"error": "no fit wrote a best.pt"}
        return self.launch("check", "check", extra=["--weights", *weights, "--data", str(self.data("speed"))])

    def native(self) -> dict[str, Any]:
        """Native Ultralytics at the speed sizes (AMP on CUDA)."""
        return self.launch("native", "native", extra=["--data", str(self.data("speed"))])


# ------------------------------------------------------------------------------------------------------ the checks
def check_fits(ctx: Context) -> Outcome:
    return fits_verdict(ctx.speed_fits())


def check_best_pt(ctx: Context) -> Outcome:
    return best_pt_verdict(ctx.speed_fits(), ctx.best_pt_check())


def check_speed(ctx: Context) -> Outcome:
    return speed_verdict(ctx.native(), ctx.speed_fits())


def _small(ctx: Context, check: str, runner: str, verdict: Callable[[dict[str, Any]], Outcome], **spec: Any) -> Outcome:
    """Launch a small-data runner and judge its result."""
    result = ctx.launch(check, runner, ctx.small_spec(check, **spec))
    return run_error(result) or verdict(result)


def check_resume(ctx: Context) -> Outcome:
    epochs, stop_after = ctx.epochs("resume")
    return _small(ctx, "resume", "resume", resume_verdict, epochs=epochs, stop_after=stop_after)


def check_amp(ctx: Context) -> Outcome:
    return _small(ctx, "amp-fused-clip", "amp-clip", lambda r: amp_verdict(r, ctx.on_cuda), epochs=ctx.epochs("amp-fused-clip"))


def check_bf16(ctx: Context) -> Outcome:
    return _small(ctx, "bf16", "bf16", bf16_verdict, epochs=ctx.epochs("bf16"))


def check_close_mosaic(ctx: Context) -> Outcome:
    return _small(ctx, "close-mosaic", "close-mosaic", close_mosaic_verdict, epochs=ctx.epochs("close-mosaic"), close_mosaic=1)


def check_class_weights(ctx: Context) -> Outcome:
    return _small(ctx, "class-weights", "class-weights", class_weights_verdict, epochs=ctx.epochs("class-weights"))


def check_freeze(ctx: Context) -> Outcome:
    return _small(ctx, "freeze-backbone", "freeze-backbone", freeze_verdict, epochs=ctx.epochs("freeze-backbone"),
                  layers=10, unfreeze_at_epoch=1)  # fmt: skip


def check_map(ctx: Context) -> Outcome:
    return _small(ctx, "map-cross-check", "map-cross-check", map_verdict, epochs=ctx.epochs("map-cross-check"), cls=2.0)


def check_trajectory(ctx: Context) -> Outcome:
    spec = ctx.small_spec("trajectory", epochs=ctx.epochs("trajectory"), weights=str(ctx.out / "trajectory" / "init.pt"))
    if not ctx.on_cuda:  # native trains in float32 on the CPU (no AMP there): like for like
        spec["precision"] = "32-true"
    ours = ctx.launch("trajectory-ours", "trajectory-ours", spec)
    if "error" in ours and not Path(spec["weights"]).is_file():
        return failed(ours["error"])
    native = ctx.launch("trajectory-native", "trajectory-native", {**spec, "seeds": list(NATIVE_SEEDS)})
    return run_error(ours) or run_error(native) or trajectory_verdict(ours, native)


def gpu_count() -> int:
    """CUDA devices this machine has."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_ddp(ctx: Context) -> Outcome:
    if not ctx.on_cuda:
        return Outcome("SKIP", "CPU dry run: SyncBatchNorm and NCCL need 2 GPUs")
    count = gpu_count()
    if count < 2:
        return Outcome("SKIP", f"{count} GPU")
    return _small(ctx, "ddp-syncbn", "ddp-syncbn", ddp_verdict, epochs=ctx.epochs("ddp-syncbn"))


def check_cli(ctx: Context) -> Outcome:
    return cli_verdict(run_cli(ctx))


def run_cli(ctx: Context) -> dict[str, Any]:
    """``python -m yolo_lightning.cli fit`` as a user runs it: no precision, ``--model.optimizer auto``, the sanity
    check, plots and the progress bar left on (Lightning's and yolo-lightning's defaults)."""
    run = ctx.out / "cli" / "run"
    run.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "yolo_lightning.cli", "fit", "--data.data", str(ctx.data("small")),
        "--data.imgsz", str(ctx.size("imgsz")), "--data.batch", str(ctx.size("batch")),
        "--data.workers", str(min(ctx.args.workers, ctx.size("workers"))), "--trainer.max_epochs", str(ctx.epochs("cli")),
        "--model.optimizer", "auto", "--trainer.default_root_dir", str(run),
    ]  # fmt: skip
    if not ctx.on_cuda:
        command += ["--trainer.accelerator", "cpu"]
    elif gpu_count() > 1:  # devices="auto" would train with DDP: that path is ddp-syncbn's
        command += ["--trainer.devices", "1"]
    returncode, stdout, stderr, seconds = ctx.execute("cli", command, cwd=REPO)
    if returncode is None:
        return {"error": stdout}
    output = stdout + stderr
    configs = sorted(run.glob("**/config.yaml"))
    precision = "(no config.yaml)"
    for line in configs[0].read_text().splitlines() if configs else []:
        if line.strip().startswith("precision:"):
            precision = line.split(":", 1)[1].strip()
    optimizer = next((line.split("optimizer:", 1)[1].strip().split(" with ")[0] for line in _plain(output).splitlines()
                      if "optimizer:" in line and "(lr=" in line), "(not printed)")  # fmt: skip
    last_error = ([line for line in stderr.splitlines() if line.strip()] or ["(no output)"])[-1].strip()[:300]
    return {
        "returncode": returncode, "last_error": last_error, "precision": precision,
        "expected_precision": "16-mixed" if ctx.on_cuda else "32-true", "optimizer": optimizer,
        "best_pt": (run / "weights" / "best.pt").is_file(), "missing_plots": [p for p in CLI_PLOTS if not (run / p).is_file()],
        "plots": len([p for p in run.glob("*") if p.suffix in {".png", ".jpg"}]), "run": str(run),
        "sanity_check": "Sanity Checking" in output, "progress_bar": "Epoch 0" in output and "box_loss" in output,
        "seconds": seconds,
    }  # fmt: skip


def _plain(text: str) -> str:
    """Text without ANSI colour codes."""
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


@dataclass(frozen=True)
class Check:
    """A named check: what it asserts (for ``--list``) and the function that runs and judges it."""

    name: str
    asserts: str
    function: Callable[[Context], Outcome]
    budget_s: int  # estimated seconds on one H100 (normal sizes), process start-up included


# In run order: the checks of the bugs being fixed first, the speed runs last (the budget cuts the end).
CHECKS = {
    check.name: check
    for check in (
        Check("resume", "16-mixed fit stopped after N epochs, resumed by a fresh Trainer with fit(ckpt_path=last.ckpt): "
              "no crash, UltralyticsEMA's average on the module's device (float32) in every resumed batch, resumed at "
              "the checkpoint's epoch + 1 with its best score and results.csv rows, final EMA weights and resumed "
              "epochs' losses within 4x the run-to-run noise of two uninterrupted runs (floor 1e-3)", check_resume, 45),
        Check("amp-fused-clip", "16-mixed with AdamW (fused=True on CUDA, as Ultralytics builds it) and "
              "GradientClipping(): logged train/grad_norm_step finite values < 1e4 and their median within 5x of the "
              "same fit's in 32-true (GradScaler's scale leaking in would make it ~2^7..2^16 times larger)", check_amp, 30),
        Check("bf16", "bf16-mixed fit: runs as bf16-mixed, float32 weights and EMA, finite falling losses, "
              "YOLO(best.pt).val(device=0) mAP50 and mAP50-95 within 0.01 of the logged ones", check_bf16, 25),
        Check("cli", "python -m yolo_lightning.cli fit with no precision (16-mixed on CUDA), --model.optimizer auto, "
              "sanity check, plots and progress bar on: exit 0, precision 16-mixed in config.yaml, best.pt and the plots "
              "in the run folder", check_cli, 35),
        Check("close-mosaic", "close_mosaic=1: YOLODataModule.mosaic_closed turns on at the last epoch, not before; "
              "the last epoch's training images hold <= 3 objects (no mosaic), earlier ones more", check_close_mosaic, 20),
        Check("class-weights", "class_weights='inverse_frequency': logged class_weights/<name> = max(count)/count of "
              "the training label files (within 1e-3), finite losses", check_class_weights, 20),
        Check("freeze-backbone", "FreezeBackbone(layers=10, unfreeze_at_epoch=1): backbone weights and BatchNorm "
              "statistics bit-identical through epoch 0 while the head trains; they train from epoch 1", check_freeze, 20),
        Check("map-cross-check", "map_cross_check=True (faster-coco-eval): torchmetrics' COCO mAP50 and mAP50-95 "
              "within 0.03 of Ultralytics' at the last validation", check_map, 30),
        Check("ddp-syncbn", "2 GPUs: DDP over NCCL with SyncBatchNorm(): every BatchNorm converted, BatchNorm "
              "statistics and weights identical on both ranks, best.pt of BatchNorm2d; 1 GPU: SKIP (0 s)", check_ddp, 45),
        Check("trajectory", "16-mixed per-epoch training losses (box, cls, l1) from the same initial weights and seed "
              "as native YOLO(init.pt).train(device=0, amp=True), run with seeds 0 and 1: each of ours within native's "
              "two-seed spread +- 5% of native's mean", check_trajectory, 75),
        Check("fits", "32-true and 16-mixed fits at the speed sizes (--imgsz ...) finish and write best.pt", check_fits, 60),
        Check("best-pt", "each fit's YOLO(best.pt).val(device=0): mAP50, mAP50-95 within 0.01 of the logged metrics of "
              "best.pt's epoch; Trainer(precision='32-true').validate of the same file within 1e-4", check_best_pt, 20),
        Check("speed", "train and validation images/s and peak GPU memory of the 16-mixed fit vs native "
              "YOLO(yaml).train(amp=True) (goals >= 1.0x, >= 1.0x, <= 1.1x reported, not pass/fail)", check_speed, 30),
    )
}


def select_checks(text: str) -> list[str]:
    """``all`` or a comma-separated list of check names, in run order; ValueError names the unknown ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or names == ["all"]:
        return list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; choose from all, {', '.join(CHECKS)}")
    return [n for n in CHECKS if n in names]


def run_checks(ctx: Context, names: list[str]) -> list[tuple[str, Outcome, float]]:
    """Run the checks in order, printing each verdict line as it comes; a check that raises is a FAIL."""
    verdicts = []
    for name in names:
        start = time.monotonic()
        try:
            outcome = CHECKS[name].function(ctx)
        except Exception as error:  # a bug in a check must not hide the others' verdicts
            trace = traceback.format_exception_only(type(error), error)[-1].strip()
            outcome = failed(f"the check itself raised {trace[:300]}")
        seconds = time.monotonic() - start
        print(verdict_line(name, outcome, seconds), flush=True)
        verdicts.append((name, outcome, seconds))
    return verdicts


# ------------------------------------------------------------------------------------------ the BENCHMARKS.md table
def check_rows(label: str, check: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Table rows for one best.pt (logged vs YOLO.val, Trainer.validate vs YOLO.val) and the failures among them."""
    logged, theirs, ours = check["logged"], check["ultralytics"], check["lightning"]
    failures = []
    logged_diff = {name: abs(theirs[name] - logged[name]) for name in KEYS}
    logged_ok = all(logged_diff[name] <= LOGGED_TOLERANCE for name in CHECKED)
    weak = f" (weak: logged mAP50 < {WEAK_MAP50})" if logged["mAP50"] < WEAK_MAP50 else ""
    if not logged_ok:
        failures.append(f"{label}: YOLO(best.pt).val() differs from the logged metrics by more than {LOGGED_TOLERANCE}")
    same_diff = max(abs(theirs[name] - ours[name]) for name in KEYS)
    same_ok = same_diff <= SAME_FILE_TOLERANCE
    if not same_ok:
        failures.append(f"{label}: Trainer.validate and YOLO(best.pt).val() differ by {same_diff:.1e} on one file")
    rows = [
        f"| {label} best.pt (epoch {check['epoch']}): `YOLO(best.pt).val()` vs logged | {_metrics(theirs)} | "
        f"logged: {_metrics(logged)} | {_metrics(logged_diff, '.1e')} | mAP50, mAP50-95 within {LOGGED_TOLERANCE} "
        f"(P, R reported) | {'PASS' if logged_ok else '**FAIL**'}{weak} |",
        f"| {label} best.pt: `Trainer(precision='32-true').validate` vs `YOLO(best.pt).val()` | {_metrics(theirs)} | "
        f"{_metrics(ours)} | max {same_diff:.1e} | within {SAME_FILE_TOLERANCE:g} | "
        f"{'PASS' if same_ok else '**FAIL**'} |",
    ]  # fmt: skip
    return rows, failures


def _metrics(values: dict[str, float], spec: str = ".4f") -> str:
    """``mAP50 0.1234, mAP50-95 0.0567, P ..., R ...``."""
    return ", ".join(f"{name} {values[name]:{spec}}" for name in KEYS)


def speed_rows(native: dict[str, Any], lightning: dict[str, Any], fp32: dict[str, Any]) -> list[str]:
    """Throughput and memory rows, yolo-lightning (16-mixed) / native, against the goals."""
    rows = []
    for key, label, goal, higher_is_better in SPEED_GOALS:
        if "error" in native or "error" in lightning or native[key] is None or lightning[key] is None:
            rows.append(f"| {label} | {_value(native, key)} | {_value(lightning, key)} | | | n/a |")
            continue
        ratio = lightning[key] / native[key]
        met = ratio >= goal if higher_is_better else ratio <= goal
        rows.append(
            f"| {label} | {native[key]:.1f} | {lightning[key]:.1f} | **{ratio:.2f}x** | "
            f"{'>=' if higher_is_better else '<='} {goal}x | {'meets goal' if met else 'misses goal'} |"
        )
    fp32_ips = _value(fp32, "train_ips")
    rows.append(f"| train images/s, yolo-lightning 32-true (no AMP, for reference) | | {fp32_ips} | | | |")
    return rows


def _value(run: dict[str, Any], key: str) -> str:
    """A run's number for the table, or what stood in its way."""
    if "error" in run:
        return "(no result)"
    return "n/a (no CUDA)" if run[key] is None else f"{run[key]:.1f}"


def print_table(ctx: Context, names: list[str]) -> None:
    """The markdown table of the speed checks (for BENCHMARKS.md), when any of them ran."""
    fits = {p: ctx.runs[f"lightning-{p}"] for p in PRECISIONS if f"lightning-{p}" in ctx.runs}
    if len(fits) < len(PRECISIONS):
        return
    rows = []
    named = {f"yolo-lightning {p}": fits[p] for p in PRECISIONS}
    named.update({k: ctx.runs[k] for k in ("native", "check") if k in ctx.runs})
    for name, run in named.items():
        if "error" in run:
            rows.append(f"| run: {name} | | | | completes | **FAIL**: {run['error'].replace('|', '/')} |")
    check = ctx.runs.get("check", {})
    for precision, fit in fits.items():
        if "error" not in fit and fit["best_pt"] in check.get("checks", {}):
            used = fit["precision"] if fit["precision"] == precision else f"{precision} (ran as {fit['precision']})"
            rows += check_rows(used, check["checks"][fit["best_pt"]])[0]
    if "native" in ctx.runs:
        rows += speed_rows(ctx.runs["native"], fits["16-mixed"], fits["32-true"])
    import lightning
    import torch
    import ultralytics

    a = ctx.args
    device = next((run["device"] for run in ctx.runs.values() if "device" in run), "(no run finished)")
    print(
        f"\n{datetime.date.today()}, {device}: torch {torch.__version__}, lightning {lightning.__version__}, "
        f"ultralytics {ultralytics.__version__}. {MODEL}, {a.imgsz} px, batch {a.batch}, {a.images} train / "
        f"{a.val_images} val images, {a.epochs} epochs, workers {a.workers}; yolo-lightning 16-mixed "
        f"(deterministic='warn') vs native amp={ctx.on_cuda}; rates without the first epoch and the first validation.\n"
    )  # fmt: skip
    print("| check or measure | Ultralytics | yolo-lightning | difference or ratio | target | result |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


# ------------------------------------------------------------------------------------------------------------ main
def parser() -> argparse.ArgumentParser:
    """The options (``--help`` lists the checks too)."""
    epilog = "checks (in run order; --list says what each asserts): " + ", ".join(CHECKS)
    p = argparse.ArgumentParser(description=__doc__, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checks", default="all", help="comma-separated check names, or all (default)")
    p.add_argument("--list", action="store_true", help="print the checks, what each asserts and its time budget; exit")
    p.add_argument("--quick", action="store_true", help="smaller data and fewer epochs for every check")
    p.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu",
                   help="cpu: a dry run of every code path but CUDA's, NOT a GPU result (default gpu: CUDA device 0)")  # fmt: skip
    p.add_argument("--imgsz", type=int, help="speed checks: image size (default 640, --quick 320)")
    p.add_argument("--batch", type=int, help="speed checks: batch (default 32)")
    p.add_argument("--epochs", type=int, help="speed checks: epochs per run, >= 2 (default 5, --quick 3)")
    p.add_argument("--images", type=int, help="speed checks: training images (default 256, --quick 128)")
    p.add_argument("--val-images", type=int, help="speed checks: validation images (default 64, --quick 32)")
    p.add_argument("--workers", type=int, default=8, help="loader workers (small-data checks: at most 4)")
    p.add_argument("--out", type=Path, help="folder for the datasets, runs and logs (default: a new temporary one)")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="hard limit for the whole invocation, seconds")
    p.add_argument("--runner", choices=tuple(runs.RUNNERS), help="(internal: run one runner in this process)")
    p.add_argument("--spec", default="{}", help="(internal: the runner's sizes, JSON)")
    p.add_argument("--precision", choices=PRECISIONS, help="(internal: the speed fit's precision)")
    p.add_argument("--weights", nargs="+", help="(internal: the best.pt files to check)")
    p.add_argument("--data", help="(internal)")
    p.add_argument("--root", help="(internal)")
    return p


def resolve_sizes(args: argparse.Namespace) -> None:
    """Fill the speed sizes left out, from ``SPEED_SIZES`` (normal or ``--quick``)."""
    for key, values in SPEED_SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, values[1 if args.quick else 0])


def fail_line(message: str, status: int = 2) -> None:
    """Exit with one line on stderr."""
    print(f"gpu_check: error: {message}", file=sys.stderr)
    sys.exit(status)


def run_runner(args: argparse.Namespace) -> None:
    """``--runner``: run it here, print its JSON result (or ``{"error": ...}`` naming the stage that raised)."""
    spec = json.loads(args.spec)
    try:
        result = runs.RUNNERS[args.runner](args, spec)
    except Exception as error:
        traceback.print_exc()
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        print(json.dumps({"error": f"{runs.STAGE['name']}: {last[:400]}"}), flush=True)
        sys.exit(1)
    if result is not None:  # None: a DDP rank other than 0
        print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the options; run one runner (``--runner``) or the checks; the exit status."""
    args = parser().parse_args(argv)
    resolve_sizes(args)
    if args.epochs < 2:
        fail_line("--epochs must be >= 2: the first epoch and validation are not timed")
    if args.runner:
        run_runner(args)
        return 0
    try:
        names = select_checks(args.checks)
    except ValueError as error:
        fail_line(str(error))
    if args.list:
        for name, check in CHECKS.items():
            print(f"{name} (~{check.budget_s} s on one H100): {check.asserts}")
        return 0

    out = (args.out or Path(tempfile.mkdtemp(prefix="yolo_lightning_gpu_check_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(OFFLINE_ENV)  # before anything imports ultralytics
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics_config"))
    import torch

    if args.accelerator == "gpu" and not torch.cuda.is_available():
        fail_line(
            f"no CUDA device here (torch {torch.__version__}, CUDA available: False): run it on a GPU machine, or pass "
            f"--accelerator cpu for a dry run that is not a GPU result"
        )
    budget = Budget(args.budget_s)
    ctx = Context(args, out, budget)
    if ctx.on_cuda:
        where = f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    else:
        where = f"CPU DRY RUN ({os.cpu_count()} cores): NOT a GPU result"
    print(f"gpu_check: {where}; torch {torch.__version__}; checks: {', '.join(names)}; "
          f"{'--quick; ' if args.quick else ''}budget {args.budget_s:.0f} s; out {out}", flush=True)  # fmt: skip
    start = time.monotonic()
    if any(name in names for name in ("fits", "best-pt", "speed")) and names[0] not in {"fits", "best-pt", "speed"}:
        ctx.prefetch("speed")  # 640 px images take a while to draw: while the small checks run
    verdicts = run_checks(ctx, names)
    if any(name in names for name in ("fits", "best-pt", "speed")):
        print_table(ctx, names)
    failures = [name for name, outcome, _ in verdicts if outcome.status == "FAIL"]
    counts = {s: sum(o.status == s for _, o, _ in verdicts) for s in ("PASS", "FAIL", "SKIP")}
    print(f"\nruns and logs: {out}", file=sys.stderr)
    print(f"gpu_check: {counts['PASS']} passed, {counts['FAIL']} failed{' (' + ', '.join(failures) + ')' if failures else ''}, "
          f"{counts['SKIP']} skipped in {time.monotonic() - start:.0f} s{' (CPU dry run)' if not ctx.on_cuda else ''}",
          flush=True)  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
