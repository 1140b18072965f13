"""Dynamic Shapes throughput: on-the-fly rendering vs writing and decoding mp4s, in one process.

Prints one JSON object: clips per second for each stage, the ratio of on-the-fly items to decoded
mp4 items (how much a training loop gains by rendering instead of reading), the wall time of
``write_dataset`` for 64 clips with all cores (the foundation issue's budget is 60 s on 2 cores),
and the machine it ran on.

    python benchmarks/shapes_throughput.py [--clips 200] [--out result.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from report import emit, machine  # benchmarks/report.py, beside this script

from dysen.data.shapes import ShapesConfig, ShapesDataset, render_clip, sample_clip, write_dataset
from dysen.data.video import read_video, write_video


def _rate(fn, count: int) -> float:
    """Calls of ``fn(i)`` per second over ``i = 0 .. count-1``."""
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def measure(clips: int) -> dict:
    config = ShapesConfig()
    dataset = ShapesDataset(clips, split="train", seed=0, config=config)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rendered = [render_clip(sample_clip(i, "train", 0, config), config) for i in range(clips)]
        result = {
            "sample_clips_per_s": _rate(lambda i: sample_clip(i, "train", 0, config), clips),
            "render_clips_per_s": _rate(lambda i: render_clip(sample_clip(i, "train", 0, config), config), clips),
            "dataset_items_per_s": _rate(lambda i: dataset[i], clips),
            "write_mp4_clips_per_s": _rate(lambda i: write_video(folder / f"{i}.mp4", rendered[i], fps=8), clips),
            "read_mp4_clips_per_s": _rate(lambda i: read_video(folder / f"{i}.mp4", output="float"), clips),
        }
        start = time.perf_counter()
        write_dataset(folder / "shapes64", num=64, split="train", seed=0, config=config, progress=False)
        result["write_dataset_64_clips_s"] = time.perf_counter() - start
    result["on_the_fly_vs_mp4_decode"] = result["dataset_items_per_s"] / result["read_mp4_clips_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="clips per measured stage (default: 200)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the measured loops are single-process, like one DataLoader worker
    report = {
        "benchmark": "shapes_throughput",
        "machine": machine(torch=torch.__version__),
        "config": {"size": 64, "num_frames": 16, "clips": args.clips},
        "result": {k: round(v, 3) for k, v in measure(args.clips).items()},
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
