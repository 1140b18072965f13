"""VBench-style dynamic degree from OpenCV Farneback optical flow (eval_data.md §7).

VBench (Huang et al. 2024, "VBench", dynamic degree) asks whether a video moves at all: it samples frames
at about 8 fps (every round(fps / 8)-th frame), measures the optical flow of each consecutive pair, scores
a pair by the mean of its top 5% flow magnitudes, and calls the video dynamic when at least
round(4 · T / 16) pairs exceed 6 · min(H, W) / 256 · max(1, 8 / fps) pixels. The score of a set is the share
of dynamic videos. VBench's flow is RAFT (raft-things), whose weights cannot be downloaded here; this
module uses OpenCV's Farneback flow with the parameters verified in eval_data.md §7 instead (it reads
4.0 px/frame on a square moving 4 px/frame and 0.0 on a static clip), so the numbers are VBench-style,
not VBench's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dysen.eval.tracking import as_frames

TOP_SHARE = 0.05
"""Share of the largest flow magnitudes of a pair that are averaged into its score (VBench)."""

FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}
"""``cv2.calcOpticalFlowFarneback`` parameters (eval_data.md §7)."""


@dataclass(frozen=True)
class DynamicDegree:
    """How much one video moves: per-pair flow scores and VBench's dynamic / static verdict."""

    pair_scores: tuple[float, ...]
    """Mean of the top 5% flow magnitudes of each sampled frame pair, in pixels per sampled frame."""
    threshold: float
    """A pair counts as moving above this many pixels: 6 · min(H, W) / 256 · max(1, 8 / fps)."""
    needed: int
    """Moving pairs a dynamic video needs: round(4 · T / 16) for T sampled frames (at least 1)."""
    dynamic: bool

    @property
    def flow(self) -> float:
        """Mean pair score (0 for a one-frame video): a continuous measure of motion."""
        return float(np.mean(self.pair_scores)) if self.pair_scores else 0.0


def top_flow(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean of the top ``TOP_SHARE`` Farneback flow magnitudes between two grayscale uint8 frames ``[H, W]``."""
    import cv2

    flow = cv2.calcOpticalFlowFarneback(previous, current, None, flags=0, **FARNEBACK)  # [H, W, 2]
    magnitude = np.hypot(flow[..., 0], flow[..., 1]).ravel()  # [H·W]
    count = max(int(magnitude.size * TOP_SHARE), 1)
    return float(np.partition(magnitude, magnitude.size - count)[-count:].mean())


def dynamic_degree(frames: np.ndarray, fps: float = 8.0) -> DynamicDegree:
    """The dynamic degree of uint8 ``[T, H, W, 3]`` frames (numpy or torch) shown at ``fps``."""
    import cv2

    video = as_frames(frames)  # [T, H, W, 3]
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    interval = max(round(fps / 8.0), 1)
    sampled = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in video[::interval]]
    scores = tuple(top_flow(a, b) for a, b in zip(sampled, sampled[1:], strict=False))
    height, width = video.shape[1:3]
    threshold = 6.0 * min(height, width) / 256.0 * max(1.0, 8.0 / fps)
    needed = max(round(4 * len(sampled) / 16), 1)
    return DynamicDegree(scores, threshold, needed, sum(s > threshold for s in scores) >= needed)


def dynamic_share(degrees: Sequence[DynamicDegree]) -> float | None:
    """The dynamic degree of a set of videos: the share that is dynamic (None for no videos)."""
    return float(np.mean([d.dynamic for d in degrees])) if degrees else None
