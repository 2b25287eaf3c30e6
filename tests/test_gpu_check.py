"""bench/gpu_check.py on CPU: option handling, the check selection, each check's verdict on made-up numbers, the run
loop with stubbed checks, the one-line exit without CUDA, and CPU dry runs of real checks (every code path but the
CUDA calls; not GPU results)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
ROWS = (
    "| 32-true best.pt (epoch ",
    "| 32-true best.pt: `Trainer(precision='32-true').validate` vs `YOLO(best.pt).val()` |",
    "| 16-mixed (ran as bf16-mixed) best.pt (epoch ",
    "| 16-mixed (ran as bf16-mixed) best.pt: `Trainer(precision='32-true').validate` vs `YOLO(best.pt).val()` |",
    "| train images/s | ",
    "| validation images/s | ",
    "| peak GPU memory, MiB (`max_memory_allocated`) | n/a (no CUDA) |",
    "| train images/s, yolo-lightning 32-true (no AMP, for reference) |",
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # conftest's YOLO_CONFIG_DIR and YOLO_OFFLINE pass on


@pytest.fixture(scope="module")
def gc():
    """bench/gpu_check.py imported as a module (its runners module beside it)."""
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def _verdicts(stdout: str) -> dict[str, str]:
    """check name -> its verdict line."""
    lines = [line for line in stdout.splitlines() if line.startswith(("PASS ", "FAIL ", "SKIP "))]
    return {line.split(" ", 1)[1].split(":", 1)[0]: line for line in lines}


# ------------------------------------------------------------------------------------------- options, no CUDA
def test_help_and_list_name_every_check(gc):
    result = _script("--help")
    assert result.returncode == 0, result.stderr
    listed = _script("--list")
    assert listed.returncode == 0, listed.stderr
    for name in gc.CHECKS:
        assert name in result.stdout
        assert sum(line.startswith(f"{name} (~") for line in listed.stdout.splitlines()) == 1


def test_unknown_check_is_one_line():
    result = _script("--accelerator", "cpu", "--checks", "resume,nope")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()
    ] and "gpu_check: error: unknown check(s) nope" in result.stderr


def test_without_cuda_the_script_exits_with_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = _script("--checks", "resume")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: no CUDA device here"), result.stderr
    assert "--accelerator cpu" in lines[0] and not _verdicts(result.stdout)


def test_select_checks_keeps_run_order(gc):
    assert gc.select_checks("all") == list(gc.CHECKS)
    assert gc.select_checks("trajectory, resume,bf16") == ["resume", "bf16", "trajectory"]
    with pytest.raises(ValueError, match="unknown check"):
        gc.select_checks("resume,bogus")


def test_quick_and_sizes(gc):
    args = gc.parser().parse_args(["--quick"])
    gc.resolve_sizes(args)
    assert (args.imgsz, args.epochs, args.images) == (320, 3, 128)
    args = gc.parser().parse_args(["--imgsz", "160"])
    gc.resolve_sizes(args)
    assert (args.imgsz, args.epochs, args.batch) == (160, 5, 32)
    ctx = gc.Context(SimpleNamespace(quick=True, workers=8), Path("."), gc.Budget(10))
    assert ctx.size("imgsz") == 64 and ctx.epochs("resume") == (2, 1)


def test_datasets_are_written_once_also_in_the_background(gc, tmp_path):
    ctx = gc.Context(SimpleNamespace(quick=True, images=8, val_images=4, imgsz=64), tmp_path, gc.Budget(60))
    ctx.prefetch("speed")  # what main does while the small checks run
    speed, small = ctx.data("speed"), ctx.data("small")
    assert speed.is_file() and small.is_file() and speed != small
    assert "n8-v4-s64" in str(speed) and "n64-v16-s64" in str(small)  # --imgsz/--images vs SMALL's quick sizes
    assert ctx.data("speed") == speed and not ctx._pending


# ------------------------------------------------------------------------------------ the run loop, stubbed checks
def _stub(gc, name: str, outcome):
    def function(ctx):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return gc.Check(name, "stub", function, 1)


def test_every_check_prints_one_verdict_line_and_the_exit_status_follows(gc, monkeypatch, tmp_path, capsys):
    checks = {
        "resume": _stub(gc, "resume", gc.passed("weights 1.0e-05")),
        "bf16": _stub(gc, "bf16", gc.Outcome("SKIP", "not today")),
        "trajectory": _stub(gc, "trajectory", RuntimeError("boom")),
    }
    monkeypatch.setattr(gc, "CHECKS", checks)
    assert gc.main(["--accelerator", "cpu", "--checks", "resume,bf16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.split(" ", 1)[0] in {"PASS", "FAIL", "SKIP"}]
    assert lines[0].startswith("PASS resume: weights 1.0e-05 (") and lines[0].endswith(" s)")
    assert lines[1] == "SKIP bf16: not today"
    assert "CPU DRY RUN" in out.out and "1 passed, 0 failed, 1 skipped" in out.out

    assert gc.main(["--accelerator", "cpu", "--out", str(tmp_path)]) == 1  # all three: the raising one FAILs
    verdicts = _verdicts(capsys.readouterr().out)
    assert list(verdicts) == ["resume", "bf16", "trajectory"]
    assert verdicts["trajectory"].startswith("FAIL trajectory: the check itself raised RuntimeError: boom")


def test_a_failed_check_makes_exit_status_1(gc, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gc, "CHECKS", {"resume": _stub(gc, "resume", gc.failed("EMA on cpu")),
                                       "bf16": _stub(gc, "bf16", gc.passed("ok"))})  # fmt: skip
    assert gc.main(["--accelerator", "cpu", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL resume: EMA on cpu (" in out and "PASS bf16: ok (" in out and "1 failed (resume)" in out


def test_verdict_lines_are_one_line(gc):
    assert gc.verdict_line("x", gc.failed("a\nb  c"), 3.4) == "FAIL x: a b c (3 s)"
    assert gc.verdict_line("ddp-syncbn", gc.Outcome("SKIP", "1 GPU"), 0.0) == "SKIP ddp-syncbn: 1 GPU"


def test_ddp_syncbn_skips_with_one_gpu(gc, monkeypatch, tmp_path):
    monkeypatch.setattr(gc, "gpu_count", lambda: 1)
    ctx = gc.Context(SimpleNamespace(accelerator="gpu", quick=False), tmp_path, gc.Budget(10))
    assert gc.verdict_line("ddp-syncbn", gc.check_ddp(ctx), 0.1) == "SKIP ddp-syncbn: 1 GPU"
    dry = gc.Context(SimpleNamespace(accelerator="cpu", quick=False), tmp_path, gc.Budget(10))
    assert gc.check_ddp(dry).status == "SKIP"
    launched = []
    monkeypatch.setattr(gc, "gpu_count", lambda: 2)
    monkeypatch.setattr(gc.Context, "launch", lambda self, *a, **k: launched.append(a) or {"error": "stubbed"})
    monkeypatch.setattr(gc.Context, "data", lambda self, kind: tmp_path / "data.yaml")
    ctx.args.workers = 8
    assert gc.check_ddp(ctx).status == "FAIL" and launched[0][1] == "ddp-syncbn"


def test_a_run_that_crashed_or_ran_out_of_budget_is_a_fail(gc, tmp_path):
    ctx = gc.Context(SimpleNamespace(), tmp_path, gc.Budget(0))
    result = ctx._result("resume", [sys.executable, "-c", "pass"])
    assert "not started" in result["error"]
    assert gc.run_error(result).status == "FAIL"
    ctx = gc.Context(SimpleNamespace(), tmp_path, gc.Budget(60))
    gc.MIN_START_S, saved = 0.0, gc.MIN_START_S
    try:
        code = "import json; print(json.dumps({'error': 'resumed fit: boom'})); raise SystemExit(1)"
        crashed = ctx._result("x", [sys.executable, "-c", code])
        printed = ctx._result("y", [sys.executable, "-c", "import json; print(json.dumps({'a': 1}))"])
    finally:
        gc.MIN_START_S = saved
    assert "resumed fit: boom" in crashed["error"] and printed["a"] == 1 and "run_seconds" in printed


# ------------------------------------------------------------------------------------- verdicts on made-up numbers
def _resume(**changes):
    result = {
        "epochs": 4, "stop_after": 2, "precision": "16-mixed", "saved_epoch": 1, "first_epoch": 2, "best_saved": 0.01,
        "best_restored": 0.01, "changed_rows": [], "resumed_rows": 4, "module_device": "cuda:0",
        "ema_devices": ["cuda:0"], "ema_dtypes": ["torch.float32"], "uninterrupted_ema_devices": ["cuda:0"],
        "weights_noise": 2e-4, "weights_resumed": 5e-4, "weights_moved": 0.1, "loss_noise": 1e-4, "loss_resumed": 3e-4,
        "seconds": {},
    }  # fmt: skip
    return {**result, **changes}


def test_resume_verdict(gc):
    assert gc.resume_verdict(_resume()).status == "PASS"
    ema = gc.resume_verdict(_resume(ema_devices=["cpu"]))
    assert ema.status == "FAIL" and "UltralyticsEMA's average is on cpu, the module on cuda:0" in ema.detail
    assert gc.resume_verdict(_resume(weights_resumed=2e-3)).status == "FAIL"  # > 4 x 2e-4 and > the 1e-3 floor
    assert gc.resume_verdict(_resume(weights_noise=0.0, weights_resumed=9e-4)).status == "PASS"  # the floor
    assert gc.resume_verdict(_resume(weights_resumed=float("nan"))).status == "FAIL"
    assert "resumed at epoch 0" in gc.resume_verdict(_resume(first_epoch=0)).detail
    assert gc.resume_verdict(_resume(best_restored=None)).status == "FAIL"
    assert "epoch 2: 13 values lost" in gc.resume_verdict(_resume(changed_rows=["epoch 2: 13 values lost"])).detail
    assert gc.resume_verdict(_resume(loss_resumed=1e-2)).status == "FAIL"


def _amp(mixed_norms, scales, fused=True, precision="16-mixed"):
    return {
        "reference": {"precision": "32-true", "norms": [500.0, 400.0, 300.0], "scales": [1.0] * 3, "optimizer": "AdamW",
                      "fused": True},
        "mixed": {"precision": precision, "norms": mixed_norms, "scales": scales, "optimizer": "AdamW", "fused": fused},
    }  # fmt: skip


def test_amp_verdict_catches_the_gradscaler_scale_in_the_logged_norm(gc):
    good = gc.amp_verdict(_amp([float("inf"), 480.0, 390.0, 310.0], [65536.0, 32768.0, 32768.0, 32768.0]), on_cuda=True)
    assert good.status == "PASS" and "1 non" not in good.detail and "3 finite of 4 steps" in good.detail
    leaked = gc.amp_verdict(_amp([480.0 * 32768, 390.0 * 32768], [32768.0, 32768.0]), on_cuda=True)
    assert leaked.status == "FAIL" and "GradScaler's scale leaks" in leaked.detail
    small_scale = gc.amp_verdict(_amp([480.0 * 16, 390.0 * 16], [16.0, 16.0]), on_cuda=True)  # under 1e4, ratio 16
    assert small_scale.status == "FAIL" and "outside [1/5, 5]" in small_scale.detail
    assert gc.amp_verdict(_amp([float("nan")], [65536.0]), on_cuda=True).status == "FAIL"
    assert "NOT fused" in gc.amp_verdict(_amp([450.0], [1024.0], fused=False), on_cuda=True).detail


def test_trajectory_verdict_within_native_spread_plus_margin(gc):
    def run(*totals):
        return [{"train/box_loss": t, "train/cls_loss": 2 * t} for t in totals]

    native = {"precision": "amp", "runs": {"0": {"losses": run(3.0, 2.0)}, "1": {"losses": run(3.2, 2.1)}}}
    inside = gc.trajectory_verdict({"precision": "16-mixed", "losses": run(3.1, 2.18)}, native)  # 2.18 <= 2.1 + 5%
    assert inside.status == "PASS" and "seed 0" in inside.detail and "seed 1" in inside.detail
    outside = gc.trajectory_verdict({"precision": "16-mixed", "losses": run(3.1, 2.4)}, native)
    assert outside.status == "FAIL" and "epoch 1 box_loss" in outside.detail
    short = gc.trajectory_verdict({"precision": "16-mixed", "losses": run(3.1)}, native)
    assert short.status == "FAIL"


def test_close_mosaic_verdict(gc):
    def verdict(closed, most):
        return gc.close_mosaic_verdict({"epochs": 3, "close_mosaic": 1, "closed": closed, "most_objects": most})

    assert verdict([False, False, True], [8, 7, 3]).status == "PASS"
    late = verdict([False, False, False], [8, 7, 3])
    assert late.status == "FAIL" and "mosaic_closed per epoch" in late.detail
    stale = verdict([False, False, True], [8, 7, 6])
    assert stale.status == "FAIL" and "still mosaics" in stale.detail
    never = verdict([False, False, True], [3, 2, 3])
    assert never.status == "FAIL" and "mosaic was not on" in never.detail


def test_class_weights_verdict(gc):
    counts = {"square": 40, "circle": 40, "triangle": 39, "star": 10}
    good = {"square": 1.0, "circle": 1.0, "triangle": 40 / 39, "star": 4.0}
    losses = [{"train/cls_loss": 4.0}]
    def verdict(logged):
        return gc.class_weights_verdict({"precision": "16-mixed", "counts": counts, "logged": logged, "losses": losses})

    assert verdict(good).status == "PASS"
    wrong = verdict({**good, "star": 1.0})
    assert wrong.status == "FAIL" and "star: logged 1.0, expected 4.0000" in wrong.detail
    assert verdict({}).status == "FAIL"


def _freeze(**changes):
    result = {
        "layers": 10, "unfreeze_at_epoch": 1, "epochs": 3, "precision": "16-mixed", "frozen_names_per_epoch": [99, 0, 0],
        "backbone_moved_while_frozen": [0, 165], "backbone_stats_moved_while_frozen": [0, 66],
        "head_moved_while_frozen": [199, 204], "backbone_moved_after_unfreeze": [165, 165],
    }  # fmt: skip
    return {**result, **changes}


def test_freeze_verdict(gc):
    assert gc.freeze_verdict(_freeze()).status == "PASS"
    assert "3 of 165 frozen tensors changed" in gc.freeze_verdict(_freeze(backbone_moved_while_frozen=[3, 165])).detail
    assert gc.freeze_verdict(_freeze(backbone_stats_moved_while_frozen=[2, 66])).status == "FAIL"
    assert gc.freeze_verdict(_freeze(frozen_names_per_epoch=[99, 99, 0])).status == "FAIL"
    assert gc.freeze_verdict(_freeze(backbone_moved_after_unfreeze=[0, 165])).status == "FAIL"


def test_map_cross_check_verdict(gc):
    ours = [{"mAP50": 0.30, "mAP50-95": 0.12}, {"mAP50": 0.50, "mAP50-95": 0.25}]
    close = [{"mAP50": 0.31, "mAP50-95": 0.125}, {"mAP50": 0.51, "mAP50-95": 0.26}]
    assert gc.map_verdict({"precision": "16-mixed", "ultralytics": ours, "coco": close}).status == "PASS"
    far = [{"mAP50": 0.31, "mAP50-95": 0.125}, {"mAP50": 0.45, "mAP50-95": 0.26}]
    assert gc.map_verdict({"precision": "16-mixed", "ultralytics": ours, "coco": far}).status == "FAIL"
    assert gc.map_verdict({"precision": "16-mixed", "ultralytics": [], "coco": []}).status == "FAIL"


def test_bf16_verdict(gc):
    best = {"epoch": 2, "logged": {"mAP50": 0.2, "mAP50-95": 0.1}, "ultralytics": {"mAP50": 0.205, "mAP50-95": 0.1}}
    base = {"precision": "bf16-mixed", "weight_dtypes": ["torch.float32"], "ema_dtypes": ["torch.float32"],
            "losses": [{"train/box_loss": 3.0}, {"train/box_loss": 2.5}], "best": best}  # fmt: skip
    assert gc.bf16_verdict(base).status == "PASS"
    assert gc.bf16_verdict({**base, "precision": "32-true"}).status == "FAIL"
    assert gc.bf16_verdict({**base, "ema_dtypes": ["torch.bfloat16"]}).status == "FAIL"
    assert gc.bf16_verdict({**base, "losses": [{"train/box_loss": float("nan")}]}).status == "FAIL"
    assert gc.bf16_verdict({**base, "best": {**best, "ultralytics": {"mAP50": 0.25, "mAP50-95": 0.1}}}).status == "FAIL"


def test_ddp_verdict(gc):
    good = {"world_size": 2, "backend": "nccl", "converted": 70, "sync_layers": 70, "stats_spread": 0.0,
            "weights_spread": 0.0, "best_pt": True, "best_pt_sync_layers": False, "precision": "16-mixed"}  # fmt: skip
    assert gc.ddp_verdict(good).status == "PASS"
    assert gc.ddp_verdict({**good, "stats_spread": 0.3}).status == "FAIL"
    assert gc.ddp_verdict({**good, "backend": "gloo"}).status == "FAIL"
    assert gc.ddp_verdict({**good, "best_pt_sync_layers": True}).status == "FAIL"


def test_cli_verdict(gc):
    good = {"returncode": 0, "last_error": "", "precision": "16-mixed", "expected_precision": "16-mixed",
            "optimizer": "AdamW(lr=0.00125, momentum=0.9)", "best_pt": True, "missing_plots": [], "plots": 13,
            "run": "run", "sanity_check": True, "progress_bar": True}  # fmt: skip
    assert gc.cli_verdict(good).status == "PASS"
    assert "precision 32-true, expected 16-mixed" in gc.cli_verdict({**good, "precision": "32-true"}).detail
    assert "results.png" in gc.cli_verdict({**good, "missing_plots": ["results.png"]}).detail
    assert gc.cli_verdict({**good, "returncode": 1, "last_error": "RuntimeError: x"}).status == "FAIL"
    assert gc.cli_verdict({"error": "cli killed after 300 s"}).status == "FAIL"


def test_speed_and_best_pt_verdicts(gc):
    metrics = {"mAP50": 0.1, "mAP50-95": 0.05, "P": 0.2, "R": 0.3}
    fit = {"train_ips": 100.0, "val_ips": 200.0, "peak_mib": 1000.0, "precision": "16-mixed", "best_pt": "b16"}
    fits = {"32-true": {**fit, "precision": "32-true", "best_pt": "b32"}, "16-mixed": fit}
    same = {"epoch": 4, "logged": metrics, "ultralytics": metrics, "lightning": metrics}
    check = {"checks": {"b16": same, "b32": same}}
    assert gc.fits_verdict(fits).status == "PASS"
    assert gc.best_pt_verdict(fits, check).status == "PASS"
    off = {**check, "checks": {**check["checks"], "b16": {**check["checks"]["b16"], "ultralytics": {**metrics, "mAP50": 0.2}}}}
    assert gc.best_pt_verdict(fits, off).status == "FAIL"
    slower = gc.speed_verdict({**fit, "train_ips": 120.0}, fits)
    assert slower.status == "PASS" and "MISSED" in slower.detail  # speed goals are reported
    assert gc.speed_verdict({"error": "native exit 1"}, fits).status == "FAIL"
    assert gc.fits_verdict({**fits, "16-mixed": {"error": "exit 1"}}).status == "FAIL"


# ------------------------------------------------------------------------------------------------ CPU dry runs
@pytest.mark.slow
def test_speed_checks_run_end_to_end_on_cpu(tmp_path: Path) -> None:
    result = _script(
        "--accelerator", "cpu", "--imgsz", "64", "--images", "16", "--val-images", "8", "--batch", "8", "--epochs", "2",
        "--workers", "0", "--out", str(tmp_path), "--checks", "fits,best-pt,speed", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdicts = _verdicts(result.stdout)
    assert list(verdicts) == ["fits", "best-pt", "speed"] and all(v.startswith("PASS") for v in verdicts.values())
    table = result.stdout[result.stdout.index("| check or measure |") :].splitlines()
    for row in ROWS:
        assert sum(line.startswith(row) for line in table) == 1, (row, table)
    assert all(line.endswith("| PASS |") or "| PASS (weak" in line for line in table if "best.pt" in line)
    assert "torch " in result.stdout and "lightning " in result.stdout and "CPU (" in result.stdout
    assert "CPU DRY RUN" in result.stdout
    assert (tmp_path / "lightning-16-mixed" / "weights" / "best.pt").is_file()
    assert "3 passed, 0 failed, 0 skipped" in result.stdout


@pytest.mark.slow
def test_small_checks_dry_run_on_cpu(tmp_path: Path) -> None:
    """Real runs of three checks in --quick sizes (16-mixed runs as bf16 on the CPU), and ddp-syncbn's skip."""
    result = _script(
        "--accelerator", "cpu", "--quick", "--workers", "0", "--out", str(tmp_path), "--budget-s", "400",
        "--checks", "close-mosaic,class-weights,freeze-backbone,ddp-syncbn", timeout=420,
    )  # fmt: skip
    verdicts = _verdicts(result.stdout)
    expected = ["close-mosaic", "class-weights", "freeze-backbone", "ddp-syncbn"]
    assert list(verdicts) == expected, result.stdout + result.stderr[-3000:]
    for name in ("close-mosaic", "class-weights", "freeze-backbone"):
        assert verdicts[name].startswith(f"PASS {name}: "), verdicts[name]
    assert verdicts["ddp-syncbn"] == "SKIP ddp-syncbn: CPU dry run: SyncBatchNorm and NCCL need 2 GPUs"
    assert result.returncode == 0
