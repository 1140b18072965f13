"""What a training run logs: per-step scalars in ``RUN/metrics.jsonl`` (always) and TensorBoard (when installed),
and the sample videos in TensorBoard.

Each line of ``metrics.jsonl`` is one logged step: ``loss``, ``lr``, the task's logs, the gradient norms, the
non-finite-loss counters, the bad-item tally (``dysen.train.bad_items``), the step's wall time ``step_s`` with
the part of it spent waiting for the data loader ``data_s``, and ``processes``, the world size (the step's global
batch is ``batch_size × grad_accum × processes``). Every line is strict JSON: a NaN or infinite value is written
as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (``float()`` reads them back).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dysen.atomic import write_text_atomic

METRICS_NAME = "metrics.jsonl"
SAMPLE_FPS = 8  # frame rate of the sample videos written every ``sample_every`` steps


class MetricsLog:
    """Per-step scalars: ``metrics.jsonl`` in the run folder (always), and TensorBoard when it is installed.

    On resume from step ``start`` the lines of later steps (written before a crash) and any unreadable line (one
    cut short by a crash) are dropped, so the file reads as one uninterrupted run; the file is replaced atomically.
    """

    def __init__(self, run_dir: Path, start: int, enabled: bool = True) -> None:
        self.enabled, self.writer, self.file = enabled, None, None
        if not enabled:
            return
        if start < 0:
            raise ValueError(f"a run starts at step >= 0, not {start}")
        path = run_dir / METRICS_NAME
        lines = _read_lines(path)
        kept = [line for line in lines if _step(line) <= start]
        if len(kept) != len(lines):
            write_text_atomic(path, "".join(kept))
        self.file = path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional: pip install tensorboard
            self.writer = None

    def write(self, step: int, values: dict[str, float]) -> None:
        if self.file is None:
            return
        line = json.dumps({"step": step, **{k: _strict(v) for k, v in values.items()}}, allow_nan=False)
        self.file.write(line + "\n")
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


def _strict(value: Any) -> Any:
    """A non-finite float as its JSON-safe name (``"NaN"``, ``"Infinity"``, ``"-Infinity"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _step(line: str) -> float:
    """The step of a metrics line; infinity for a line that does not parse (it is dropped)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return math.inf
    return step if isinstance(step, int) else math.inf


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []
