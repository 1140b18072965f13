"""What a training run logs: per-step scalars in ``RUN/metrics.jsonl`` (always) and TensorBoard (when installed),
and the sample videos in TensorBoard.

Each line of ``metrics.jsonl`` is one logged step: ``loss``, ``lr``, the task's logs, the gradient norms, the
non-finite-loss counters, the bad-item tally (``dysen.train.bad_items``) and the step's wall time ``step_s``
with the part of it spent waiting for the data loader ``data_s``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

METRICS_NAME = "metrics.jsonl"
SAMPLE_FPS = 8  # frame rate of the sample videos written every ``sample_every`` steps


class MetricsLog:
    """Per-step scalars: ``metrics.jsonl`` in the run folder (always), and TensorBoard when it is installed.

    On resume from step ``start`` the lines of later steps (written before a crash) are dropped, so the
    file reads as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, start: int, enabled: bool = True) -> None:
        self.enabled, self.writer, self.file = enabled, None, None
        if not enabled:
            return
        path = run_dir / METRICS_NAME
        kept = [line for line in _read_lines(path) if json.loads(line)["step"] <= start]
        path.write_text("".join(kept), encoding="utf-8")
        self.file = path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional: pip install tensorboard
            self.writer = None

    def write(self, step: int, values: dict[str, float]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        for name, value in values.items() if self.writer is not None else ():
            self.writer.add_scalar(f"train/{name}", value, step)

    def videos(self, step: int, videos: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        """uint8 ``[T, H, W, 3]`` videos as TensorBoard ``samples/<name>`` (which needs moviepy to encode them)."""
        for name, frames in videos.items() if self.writer is not None else ():
            clip = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2)[None]  # [1, T, 3, H, W]
            self.writer.add_video(f"samples/{name}", clip, step, fps=SAMPLE_FPS)

    def close(self) -> None:
        for handle in (self.file, self.writer):
            if handle is not None:
                handle.close()


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []
