"""What one training step costs at each batch size: forward, Ultralytics' loss, backward and an AdamW step.

    python bench/step_cost.py --threads 2 --imgsz 64 --batches 8 16 32 64

Prints the median wall time of a step and its cost per image. At the quick start's 64 px most of a step is a fixed
cost per layer, not per image, which is why its recipe trains at batch 32 (BENCHMARKS.md, "Quick start").
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

CLASSES = 4  # the embedded dataset's shapes


def step_seconds(model: torch.nn.Module, batch_size: int, imgsz: int, repeats: int) -> float:
    """Median seconds of a training step of ``model`` on random images with two random boxes each."""
    criterion = model.init_criterion()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    boxes = 2 * batch_size
    batch = {
        "img": torch.rand(batch_size, 3, imgsz, imgsz),
        "batch_idx": torch.arange(batch_size).repeat_interleave(2).float(),
        "cls": torch.randint(0, CLASSES, (boxes, 1)).float(),
        "bboxes": torch.rand(boxes, 4) * 0.3 + torch.tensor([0.3, 0.3, 0.1, 0.1]),
    }
    times = []
    for _ in range(repeats + 2):  # the first two warm the allocator up
        start = time.perf_counter()
        loss, _ = criterion(model(batch["img"]), batch)
        loss.sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    """Time a step at each batch size and print one line each."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = DetectionModel(args.model, nc=CLASSES, verbose=False)
    model.args = get_cfg()  # the loss reads its gains (box, cls, dfl) from here
    model.train()
    for batch_size in args.batches:
        seconds = step_seconds(model, batch_size, args.imgsz, args.repeats)
        print(f"{args.model} {args.imgsz} px, {args.threads} threads, batch {batch_size}: {seconds * 1000:.1f} ms per "
              f"step, {seconds / batch_size * 1000:.2f} ms per image", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
