"""The networks' video layout: float ``[3, T, H, W]`` in [-1, 1], to and from uint8 frames ``[T, H, W, 3]``.

Below the pipeline (which turns decoded latents into frames) and the video files (``dysen.data.video``,
which reads and writes the uint8 side and re-exports both functions).
"""

from __future__ import annotations

import torch

__all__ = ["frames_to_model", "model_to_frames"]


def frames_to_model(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[3, T, H, W]`` in [-1, 1] (the model layout)."""
    return frames.permute(3, 0, 1, 2).float() / 127.5 - 1.0


def model_to_frames(video: torch.Tensor) -> torch.Tensor:
    """Float ``[3, T, H, W]`` in [-1, 1] -> uint8 ``[T, H, W, 3]`` (clamped, rounded)."""
    scaled = ((video.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()  # [3, T, H, W]
    return scaled.to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu()
