"""Training-loader throughput and memory: files (a data.yaml) vs the same data optimized into a local folder and into
an S3 bucket (moto's server on 127.0.0.1), with 0, 1 and 2 loader workers; peak RSS with ``cache="ram"`` vs streamed.

    python bench/streaming.py --images 512 --imgsz 320 --epochs 2 [--chunk_bytes 64MB]

Each measurement is a fresh process that builds ``YOLODataModule`` for detect (Ultralytics' default augmentation:
mosaic, HSV, affine, flips), iterates its training loader for ``--epochs`` epochs and reports images per second over
the epochs after the first (the first warms LitData's chunk cache and the workers) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = """
import json, sys, time
from yolo_lightning import YOLODataModule
from yolo_lightning.tasks import DETECT
data, workers, epochs, imgsz, cache, options = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], json.loads(sys.argv[6])
dm = YOLODataModule(data=data, imgsz=imgsz, batch=16, workers=workers, cache=cache == "ram" and "ram", storage_options=options or None)
dm.fixed_task = DETECT
dm.prepare_data(); dm.setup("fit")
loader = dm.train_dataloader()
rates = []
for epoch in range(epochs):
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["im_file"])
    rates.append(n / (time.perf_counter() - start))
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))  # kB; ru_maxrss survives exec
print("RESULT" + json.dumps({"images_per_s": sum(rates[1:]) / max(len(rates) - 1, 1), "peak_rss_mib": hwm / 1024}))
"""


def measure(data: str, workers: int, epochs: int, imgsz: int, cache: str, options: dict | None) -> dict[str, float]:
    """One loader run in a fresh process (one computing thread, as a DDP rank on CPU would have)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [data, str(workers), str(epochs), str(imgsz), cache, json.dumps(options or {})]
    result = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{data} (workers={workers}, cache={cache!r}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.split("RESULT", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--chunk_bytes", default="8MB", help="optimize_dataset's chunk size (LitData's default: 64MB)")
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from yolo_lightning.streaming import optimize_dataset
    from yolo_lightning.synthetic import synthetic_data

    root = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    data = synthetic_data("detect", root, n_train=args.images, n_val=args.images // 4, imgsz=args.imgsz)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "aws_access_key_id": "b", "aws_secret_access_key": "b",
               "region_name": "us-east-1"}  # fmt: skip
    boto3.client("s3", **options).create_bucket(Bucket="bench")
    local = optimize_dataset(data, str(root / "optimized"), chunk_bytes=args.chunk_bytes)
    bucket = optimize_dataset(data, "s3://bench/ds", storage_options=options, chunk_bytes=args.chunk_bytes)
    print(f"{args.images} images at {args.imgsz} px, batch 16, {args.epochs} epochs, {os.cpu_count()} cores")
    print(f"{'source':<18}{'workers':>8}{'images/s':>10}{'vs files':>10}{'peak RSS MiB (main)':>21}")
    for workers in (0, 1, 2):
        files = measure(str(data), workers, args.epochs, args.imgsz, "", None)
        for name, source, opts in (("files", str(data), None), ("optimized folder", local, None), ("moto bucket", bucket, options)):
            result = files if name == "files" else measure(source, workers, args.epochs, args.imgsz, "", opts)
            ratio = result["images_per_s"] / files["images_per_s"]
            print(f"{name:<18}{workers:>8}{result['images_per_s']:>10.1f}{ratio:>10.2f}{result['peak_rss_mib']:>21.0f}")
    for name, source, opts, cache in (("files cache=ram", str(data), None, "ram"), ("moto bucket", bucket, options, "")):
        result = measure(source, 0, 1, args.imgsz, cache, opts)
        print(f"peak RSS, {name:<20} {result['peak_rss_mib']:.0f} MiB")
    server.stop()


if __name__ == "__main__":
    main()
