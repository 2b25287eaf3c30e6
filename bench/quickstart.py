"""The README's quick start, side by side with native Ultralytics on the same configuration, over seeds.

    python bench/quickstart.py --seeds 0 1 2                 # examples/configs/quickstart.yaml as it is
    python bench/quickstart.py --seeds 0 --set multi_scale=0  # one Ultralytics argument changed on both sides
    python bench/quickstart.py --runners yolo-lightning --config my.yaml  # another config, one side only

yolo-lightning runs the README's first command (``yolo-lightning fit --config examples/configs/quickstart.yaml``)
with ``--seed_everything`` and a run folder per seed; native runs ``YOLO(model).train(...)`` with the config's
model and data arguments, ``epochs=max_epochs`` and ``seed``. Each run is a fresh process, one after the other.
Per run: the final validation of best.pt (``YOLO(best.pt).val()`` on the validation split, the same call for both),
the per-epoch mAP50 from results.csv (last epoch, best epoch, lowest of the last 10: a collapse near the end shows
there), and the wall time of the training command.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "configs" / "quickstart.yaml"
RUNNERS = ("native", "yolo-lightning")
KEY = "metrics/mAP50(B)"


def native_arguments(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The config's model and data arguments as one Ultralytics train call (``data: synthetic<N>`` -> its data.yaml)."""
    from yolo_lightning.synthetic import synthetic_source

    args = {**config["model"], **config["data"], **overrides, "epochs": config["trainer"]["max_epochs"]}
    return {**args, "data": synthetic_source(args["data"])}


def train_native(args: dict[str, Any], seed: int, run: Path) -> None:
    """``YOLO(model).train(...)`` in this process (called through ``_native``)."""
    from ultralytics import YOLO

    model = args.pop("model")
    YOLO(model).train(**args, seed=seed, device="cpu", project=str(run.parent), name=run.name, exist_ok=True)


def run_one(runner: str, config: Path, seed: int, run: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one seed with one runner in a fresh process; return its numbers."""
    if runner == "yolo-lightning":
        from yolo_lightning.hyperparameters import MODULE_ARGS

        sets = [f"--{'model' if k in MODULE_ARGS else 'data'}.{k}={v}" for k, v in overrides.items()]
        command = ["yolo-lightning", "fit", "--config", str(config), "--seed_everything", str(seed),
                   "--trainer.default_root_dir", str(run), *sets]  # fmt: skip
    else:
        command = [sys.executable, __file__, "_native", "--config", str(config), "--seed", str(seed),
                   "--run", str(run), "--set", *[f"{k}={v}" for k, v in overrides.items()]]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=run.parent)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{runner} seed {seed} failed:\n{result.stderr[-3000:]}")
    with open(run / "results.csv", encoding="utf-8") as file:
        curve = [float({k.strip(): v for k, v in row.items()}[KEY]) for row in csv.DictReader(file)]
    final = subprocess.run(
        [sys.executable, "-c", FINAL_VALIDATION, str(run / "weights" / "best.pt")], capture_output=True, text=True
    )
    if final.returncode != 0:
        raise RuntimeError(f"validating {run} failed:\n{final.stderr[-3000:]}")
    return {"runner": runner, "seed": seed, "best_pt_map50": float(final.stdout.split()[-1]), "last": curve[-1],
            "best_epoch": max(curve), "lowest_last_10": min(curve[-10:]), "seconds": seconds}  # fmt: skip


FINAL_VALIDATION = (
    "import sys; from ultralytics import YOLO; "
    "m = YOLO(sys.argv[1]).val(device='cpu', plots=False, verbose=False); print(m.box.map50)"
)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs with YAML-typed values."""
    return {k: yaml.safe_load(v) for k, v in (pair.split("=", 1) for pair in pairs)}


def main() -> None:
    """Run every seed with both runners (alternating which goes first) and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="compare", choices=("compare", "_native"))
    parser.add_argument("--config", type=Path, default=QUICKSTART, help="a yolo-lightning fit config")
    parser.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], help="Ultralytics arguments changed on both sides: key=value")
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a new temporary one)")
    parser.add_argument("--seed", type=int, help="(internal)")
    parser.add_argument("--run", type=Path, help="(internal)")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    if args.command == "_native":
        train_native(native_arguments(yaml.safe_load(args.config.read_text()), overrides), args.seed, args.run)
        return

    out = args.out or Path(tempfile.mkdtemp(prefix="yolo_lightning_quickstart_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    config = args.config.resolve()
    for i, seed in enumerate(args.seeds):
        for runner in args.runners if i % 2 == 0 else args.runners[::-1]:
            rows.append(run_one(runner, config, seed, out / f"{runner}-{seed}", overrides))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\n{config} {' '.join(args.set)}")
    print("| runner | seed | best.pt mAP50 (final validation) | last epoch | best epoch | lowest of last 10 | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["runner"], r["seed"])):
        print(f"| {r['runner']} | {r['seed']} | {r['best_pt_map50']:.3f} | {r['last']:.3f} | {r['best_epoch']:.3f} | "
              f"{r['lowest_last_10']:.3f} | {r['seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
