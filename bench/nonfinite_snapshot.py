"""What ``NonFiniteRecovery`` keeps per epoch: the bytes and the time of one host snapshot of a large model's state.

    python bench/nonfinite_snapshot.py [--model yolo11x.yaml] [--repeats 3]

The snapshot holds the module's weights, the EMA's and the AdamW state (two moments per parameter): about four
float32 copies of the parameters. Under DDP it is kept by rank 0 only (one copy per run, not one per rank).
"""

from __future__ import annotations

import argparse
import time

import torch

from yolo_lightning.callbacks.nonfinite_recovery import NonFiniteRecovery, _to_cpu


def state_bytes(value: object) -> int:
    """Bytes of every tensor in nested containers."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(state_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_bytes(v) for v in value)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolo11x.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(args.model, nc=80, verbose=False)
    ema = DetectionModel(args.model, nc=80, verbose=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates the moments
    state = {"modules": [model.state_dict(), ema.state_dict()], "optimizers": [optimizer.state_dict()], "scaler": None}
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        snapshot = _to_cpu(state)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {params / 1e6:.1f} M parameters; one snapshot {state_bytes(snapshot) / 2**30:.2f} GiB, "
          f"{min(times):.2f} s to copy (host to host, best of {args.repeats}); "
          f"per-rank copies before: {NonFiniteRecovery.__name__} kept one per rank, now rank 0's only")


if __name__ == "__main__":
    main()
