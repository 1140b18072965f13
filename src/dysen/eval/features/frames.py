"""Video batches for the metric networks: one input convention, one resize.

Videos arrive as at dysen's I/O edges (DESIGN.md §5): ``[N, T, H, W, C]`` with C = 3 (RGB) or 1 / absent
(grayscale, repeated to RGB, eval_data.md §1.4), either uint8 in 0..255 or float in [-1, 1], as numpy
arrays or torch tensors. ``video_tensor`` maps both to float [N, 3, T, H, W] in [-1, 1] (x / 127.5 − 1,
the TATS ``2x/255 − 1``). Bilinear resizing is linear, so resizing after that scaling equals TATS's
resize-then-scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dysen.errors import DysenError


class VideoInputError(DysenError, ValueError):
    """A video batch given to a metric network has the wrong shape, type or value range."""


def video_tensor(videos: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, T, H, W, (C)] or float in [-1, 1] → float32 [N, 3, T, H, W] in [-1, 1]."""
    x = torch.as_tensor(videos)
    if x.ndim == 4:
        x = x.unsqueeze(-1)  # [N, T, H, W, 1]
    if x.ndim != 5 or x.shape[-1] not in (1, 3):
        raise VideoInputError(f"videos must be [N, T, H, W, 3] (or grayscale [N, T, H, W]), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    elif x.is_floating_point():
        x = x.float()
        if x.numel() and (x.min() < -1.0 - 1e-3 or x.max() > 1.0 + 1e-3):
            raise VideoInputError("float videos must lie in [-1, 1]; pass uint8 for 0..255 frames")
    else:
        raise VideoInputError(f"videos must be uint8 or float, got {x.dtype}")
    return x.expand(*x.shape[:-1], 3).permute(0, 4, 1, 2, 3)  # [N, 3, T, H, W]


def video_uint8(videos: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, T, H, W, (C)] or float in [-1, 1] → uint8 [N, T, H, W, 3] (rounded, for image processors)."""
    x = video_tensor(videos)  # [N, 3, T, H, W]
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1)


def resize_frames(video: torch.Tensor, size: int, *, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize (no antialiasing) of every frame of [N, C, T, H, W] to [N, C, T, size, size].

    ``align_corners=False`` is ``F.interpolate``'s TATS/pytorch-fid setting; ``True`` is chainer's
    ``resize_images`` (TGANv2's C3D).
    """
    n, c, t, h, w = video.shape
    if (h, w) == (size, size):
        return video
    frames = video.transpose(1, 2).reshape(n * t, c, h, w)  # [N·T, C, H, W]
    frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=align_corners)
    return frames.reshape(n, t, c, size, size).transpose(1, 2)  # [N, C, T, size, size]


def run_batches(
    model: torch.nn.Module,
    items: np.ndarray | torch.Tensor,
    prepare: Callable[[np.ndarray | torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
    desc: str,
) -> torch.Tensor:
    """``model(prepare(batch))`` over ``items`` in eval mode and without gradients, concatenated on the CPU."""
    if len(items) == 0:
        raise VideoInputError("no videos or frames were given")
    model.eval()
    target = torch.device(device) if device is not None else next(model.parameters(), torch.empty(0)).device
    outputs = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(items), batch_size), desc=desc, disable=not progress, unit="batch"):
            outputs.append(model(prepare(items[start : start + batch_size]).to(target)).float().cpu())
    return torch.cat(outputs)
