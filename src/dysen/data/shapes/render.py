"""How a Dynamic Shapes clip looks: flat shapes on a flat canvas, anti-aliased, in pure numpy.

Each shape is sampled ``supersample``² times per pixel inside its own bounding square only, the samples
are averaged (a box filter) into a coverage in [0, 1], and the shape's ``vocab.PAINTS`` RGB is blended
over the ``vocab.BACKGROUND`` canvas with weight coverage · opacity. Shapes never overlap (see
``motion``), so every non-background pixel belongs to exactly one shape. A shape whose state has not
changed since the previous frame reuses that frame's coverage.
"""

from __future__ import annotations

import math

import numpy as np

from dysen.errors import DysenError
from dysen.world import vocab
from dysen.world.clip import ShapesClip
from dysen.world.config import DEFAULT_CONFIG, ShapesConfig
from dysen.world.geometry import inside
from dysen.world.motion import Track


def render_clip(clip: ShapesClip, config: ShapesConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The frames of ``clip``, uint8 ``[T, H, W, 3]``; ``config`` must have the clip's frame count."""
    frames = len(clip.frame_boxes)
    if frames != config.num_frames:
        raise DysenError(f"clip {clip.id} has {frames} frames but the config asks for {config.num_frames}")
    return render_tracks(clip.tracks, config)


def render_tracks(tracks: tuple[Track, ...], config: ShapesConfig) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames of the given tracks (all of length ``config.num_frames``)."""
    size = config.size
    frames = np.empty((config.num_frames, size, size, 3), dtype=np.float32)  # [T, H, W, 3]
    frames[:] = np.asarray(vocab.BACKGROUND, dtype=np.float32)
    for track in tracks:
        last_state, coverage = None, None
        for t in range(config.num_frames):
            if track.alpha[t] <= 0:
                continue
            state = (track.x[t] * size, track.y[t] * size, track.radius[t] * size, track.angle[t])
            if state != last_state:
                coverage = _coverage(track.name, *state, config.supersample)
                last_state = state
            (top, left), weights = coverage
            patch = frames[t, top : top + weights.shape[0], left : left + weights.shape[1]]  # [h, w, 3] view
            weights = weights[: patch.shape[0], : patch.shape[1]]  # a shape touching the far edge is cut there
            colour = np.asarray(vocab.PAINTS[track.colour[t]], dtype=np.float32)  # [3]
            patch += (track.alpha[t] * weights)[..., None] * (colour - patch)
    return np.rint(frames).astype(np.uint8)


def _coverage(
    shape: str, x: float, y: float, r: float, angle: float, supersample: int
) -> tuple[tuple[int, int], np.ndarray]:
    """``((top, left), coverage [h, w] float32)``: the shape's pixel coverage over its bounding square (pixels)."""
    left, top = max(math.floor(x - r), 0), max(math.floor(y - r), 0)
    right, bottom = math.ceil(x + r), math.ceil(y + r)
    width, height = right - left, bottom - top
    step = 1.0 / supersample
    xs = left + (np.arange(width * supersample, dtype=np.float32) + 0.5) * step - x  # [w*s] sample offsets
    ys = top + (np.arange(height * supersample, dtype=np.float32) + 0.5) * step - y  # [h*s]
    hits = inside(shape, xs[None, :], ys[:, None], r, angle)  # [h*s, w*s] bool
    coverage = hits.reshape(height, supersample, width, supersample).mean(axis=(1, 3), dtype=np.float32)  # [h, w]
    return (top, left), coverage
