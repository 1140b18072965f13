"""Sample videos during training: ``task.sample`` of a fixed batch (the dataset's first clips) every
``sample_every`` steps, into ``RUN/samples/step-<n>/<name>.mp4`` and TensorBoard, outside the training RNG
streams (a run with sampling repeats one without)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from dysen.train.errors import TrainError
from dysen.train.metrics import SAMPLE_FPS, MetricsLog

SAMPLES_DIR = "samples"


def sample_batch(dataset: Dataset, collate: Callable[[list[Any]], Any], count: int) -> Any:
    """The collated first ``count`` clips of the dataset (of a stream: its first ones), drawn once per run."""
    with torch.random.fork_rng(devices=[]):
        if isinstance(dataset, IterableDataset):
            items = list(itertools.islice(iter(dataset), count))
        else:
            items = [dataset[i] for i in range(min(count, len(dataset)))]  # type: ignore[arg-type]
    if not items or all(item is None for item in items):
        raise TrainError(f"cannot sample: the first {count} clips of the dataset failed to load (see --sample-count)")
    return collate(items)


@torch.no_grad()
def write_samples(
    task: Any, modules: dict[str, nn.Module], batch: Any, run_dir: Path, step: int, metrics: MetricsLog,
    write: bool = True,
) -> None:
    """``task.sample(batch)`` in eval mode, as ``RUN/samples/step-<n>/<name>.mp4`` and TensorBoard videos; the
    training mode and every RNG stream (CPU, CUDA) are left as they were, so a run with sampling repeats one
    without. ``write`` False: sample without writing (a sharded run's other processes, whose shards the main
    process's sampling needs)."""
    from dysen.data.video import write_video

    modes = {name: module.training for name, module in modules.items()}
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            for module in modules.values():
                module.eval()
            videos = task.sample(batch)
    finally:
        for name, module in modules.items():
            module.train(modes[name])
    if not write:
        return
    folder = run_dir / SAMPLES_DIR / f"step-{step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, frames in videos.items():
        write_video(folder / f"{name}.mp4", frames, fps=SAMPLE_FPS)
    metrics.videos(step, videos)
