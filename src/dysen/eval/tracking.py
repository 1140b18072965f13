"""From pixels to shape tracks on Dynamic Shapes: segmentation, blobs, shape classes, one track per shape.

The first half of the dynamics scorer (``dysen.eval.dynamics`` turns these tracks into action verdicts).
Numpy only (no OpenCV/scipy); about 10 ms per 16-frame 64x64 clip.

Tracker, all frames at once (``track_shapes``):

1. Foreground = luma above the background's by ``FOREGROUND_LUMA``. Luma, not RGB: H.264 keeps luma at
   full resolution but averages chroma over 2x2 blocks, which smears colour across every edge.
2. 8-connected components of the foreground (union-find: vectorised hooking of roots, path halving).
3. Colour of a component = the palette colour nearest in chroma hue to its summed chroma (hue survives
   the desaturation chroma smearing causes); a component that splits between colours with at least
   ``SPLIT_SHARE`` each (shapes touching in a generated video) becomes one blob per colour. Pixel opacity
   a = luma offset / the colour's luma offset, so anti-aliased edges and fading shapes weigh what they cover.
4. Shape from rotation-invariant angular moments: an n-fold symmetric shape has a non-zero moment
   ``sum a z^k`` (z = offset from the centroid) only for k a multiple of n, so its size relative to
   ``sum a |z|^k`` is large at k = 3 for the triangle, 4 for the square, 5 for the star, about 0 for the
   circle; its phase / k is the orientation. The circumradius comes from ``sum a |z|^2 / sum a``, which
   does not depend on opacity.
5. One track per shape noun (shapes are unique in a clip; colours may change): the largest blob of that
   shape in each frame gives visibility, centre, circumradius, orientation, opacity and colour.

Thresholds are calibrated constants (below), measured on rendered clips before and after H.264.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from dysen.world import vocab

if TYPE_CHECKING:
    import torch

# -- calibrated constants -----------------------------------------------------------------------------------
# Measured on rendered Dynamic Shapes clips (64x64, 16 frames), raw and after write_video/read_video (H.264,
# crf 18, yuv420p); tests/test_dynamics.py checks the result on 500 + 50 fresh clips. Lengths are fractions
# of the frame side.

FOREGROUND_LUMA = 6.0
"""Luma levels above the background that make a pixel foreground. After H.264, 0.06% of background pixels
exceed it (isolated specks, dropped by ``MIN_BLOB_FRACTION``); the darkest colours reach it at 9% opacity."""

MIN_BLOB_FRACTION = 0.002
"""Least blob mass (opacity-weighted area), as a fraction of the frame area: 8 px at 64x64, a fifth of the
smallest shape (a small star, ~37 px)."""

HUE_TOLERANCE_DEG = 20.0
"""Largest chroma-hue distance from a palette colour for a blob to take it; the closest palette hues
(orange and yellow) are 24 degrees apart; 99% of the components of rendered clips lie within 5."""

SPLIT_SHARE = 0.3
"""Share of a component's luma a second colour needs to become a blob of its own (edge smear: < 0.1)."""

SHAPE_MOMENT_MIN = 0.45
"""A blob is the polygon whose k-fold moment, relative to the ideal polygon's, is largest if it reaches this,
else a circle. Rendered polygons score >= 0.82 at their own k; every shape < 0.3 at any other k."""

FAINT = 0.35
"""Opacity at or below which a shape counts as gone: its radius is not measured (a faint blob's spread misses
its cut-off edges), and ``dysen.eval.dynamics`` reads it as not yet appeared / disappeared. The renderer fades
through 1/(n+1) .. n/(n+1) (n: frames of the event window); the opacity estimate is 0.86-1.0 of the truth."""

# -- derived tables -----------------------------------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601, as in libx264's yuv420p
_CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32)  # Cb, Cr rows
_BACKGROUND = np.array(vocab.BACKGROUND, dtype=np.float32)
DEFAULT_PALETTE: tuple[str, ...] = tuple(vocab.COLOURS)
"""The colours the scorer reads unless told the world's palette (``ShapesConfig.colours``): the default world's."""


def scoring_palette(*palettes: tuple[str, ...] | None) -> tuple[str, ...]:
    """The colours to score a model's videos in: the default world's, then each new one of ``palettes`` (a world's
    ``ShapesConfig.colours``, the model's ``PlannerOptions.colours``; None adds nothing), in order."""
    return tuple(dict.fromkeys((*DEFAULT_PALETTE, *(c for colours in palettes for c in colours or ()))))


@dataclass(frozen=True)
class Palette:
    """The colours a clip may show, as the tracker compares them: names, luma and unit chroma hue per colour."""

    names: tuple[str, ...]
    luma: np.ndarray  # [C] luma offset from the background
    direction: np.ndarray  # [C, 2] unit chroma hue


@lru_cache(maxsize=8)
def palette(colours: tuple[str, ...] = DEFAULT_PALETTE) -> Palette:
    """The ``Palette`` of colour names of ``vocab.PAINTS`` (default: the default world's six)."""
    offsets = np.array([vocab.PAINTS[c] for c in colours], dtype=np.float32) - _BACKGROUND  # [C, 3]
    chroma = offsets @ _CHROMA.T  # [C, 2]
    return Palette(tuple(colours), offsets @ _LUMA, chroma / np.linalg.norm(chroma, axis=1, keepdims=True))


_POLYGONS = ("triangle", "square", "star")
SYMMETRY = {"triangle": 3, "square": 4, "star": 5}  # k of the first non-zero angular moment
_IDEAL_MOMENT = np.array([0.6590, 0.4286, 0.8840])  # |moment k| of the exact polygons (2048^2 grid)
_UNIT_SPREAD = {"circle": 0.5, "square": 1 / 3, "triangle": 0.25, "star": 0.2424}  # mean |z|^2 at radius 1
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))  # half the 8-neighbourhood: each pair is linked once


# -- pixels -> blobs ----------------------------------------------------------------------------------------


def _components(t: np.ndarray, y: np.ndarray, x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Root of the 8-connected component (within its frame) of each listed pixel ``[N]``."""
    index = np.full(shape, -1, dtype=np.int64)  # [T, H, W] position of each pixel in the list
    index[t, y, x] = np.arange(len(t))
    first, second = [], []
    for dy, dx in _NEIGHBOURS:
        inside = np.flatnonzero((y + dy < shape[1]) & (x + dx >= 0) & (x + dx < shape[2]))
        neighbour = index[t[inside], y[inside] + dy, x[inside] + dx]
        first.append(inside[neighbour >= 0])
        second.append(neighbour[neighbour >= 0])
    first, second = np.concatenate(first), np.concatenate(second)  # [E] linked pixel pairs
    parent = np.arange(len(t))
    while True:
        a, b = parent[first], parent[second]  # roots: every parent points at a root here
        apart = a != b
        if not apart.any():
            return parent
        parent[np.maximum(a[apart], b[apart])] = np.minimum(a[apart], b[apart])  # hook the larger root below
        while not np.array_equal(parent[parent], parent):  # compress paths to the roots
            parent = parent[parent]


def label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of each frame of a bool ``[T, H, W]`` mask: unique ids, -1 outside the mask."""
    t, y, x = np.nonzero(mask)
    labels = np.full(mask.shape, -1, dtype=np.int64)  # [T, H, W]
    labels[t, y, x] = _components(t, y, x, mask.shape)
    return labels


@dataclass(frozen=True)
class Blobs:
    """Measurements of every blob of a clip, one entry per blob. Lengths in pixels."""

    frame: np.ndarray  # [B] int
    colour: np.ndarray  # [B] int, index into the palette's names
    mass: np.ndarray  # [B] opacity-weighted area
    x: np.ndarray  # [B] centroid, pixel centres at +0.5
    y: np.ndarray  # [B]
    opacity: np.ndarray  # [B] sum a^3 / sum a^2: interior-weighted mean opacity
    spread: np.ndarray  # [B] sum a |z|^2 / sum a: mean squared distance from the centroid
    moments: np.ndarray  # [B, 3] complex: sum a z^k / sum a |z|^k for k = 3, 4, 5


def _nearest_colour(chroma: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Index of the palette colour (unit hues ``direction`` ``[C, 2]``) nearest in hue to each chroma ``[N, 2]``."""
    return (chroma @ direction.T).argmax(axis=1)  # [N]: largest cosine, as |chroma| is common


def _colour_blobs(
    component: np.ndarray, luma: np.ndarray, chroma: np.ndarray, paints: Palette
) -> tuple[np.ndarray, np.ndarray]:
    """Blob of each foreground pixel ``[N]`` (-1: no palette colour) and the colour of each blob ``[B]``."""
    num_colours = len(paints.names)
    _, component = np.unique(component, return_inverse=True)  # [N] compact ids
    pixel_colour = _nearest_colour(chroma, paints.direction)  # [N]
    count = int(component.max(initial=-1)) + 1
    mass = np.bincount(component * num_colours + pixel_colour, weights=luma, minlength=count * num_colours)
    mass = mass.reshape(count, num_colours)  # [K, C] luma of each colour in each component
    dominant = mass.argmax(axis=1)  # [K]
    major = mass >= SPLIT_SHARE * mass.sum(axis=1, keepdims=True)  # [K, C]
    own = np.where(major[component, pixel_colour], pixel_colour, dominant[component])  # [N] minor colours fold in
    _, blob = np.unique(component * num_colours + own, return_inverse=True)  # [N]
    summed = np.stack([np.bincount(blob, weights=chroma[:, i]) for i in range(2)], axis=1)  # [B, 2]
    colour = _nearest_colour(summed, paints.direction)  # [B]
    cosine = np.sum(summed * paints.direction[colour], axis=1) / np.maximum(np.linalg.norm(summed, axis=1), 1e-9)
    colour = np.where(cosine >= math.cos(math.radians(HUE_TOLERANCE_DEG)), colour, -1)
    return np.where(colour[blob] >= 0, blob, -1), colour


def find_blobs(frames: np.ndarray, colours: tuple[str, ...] = DEFAULT_PALETTE) -> Blobs:
    """Segment uint8 ``[T, H, W, 3]`` frames into blobs of the ``colours`` palette (module docstring, steps 1-4)."""
    paints = palette(tuple(colours))
    offsets = frames.astype(np.float32) - _BACKGROUND  # [T, H, W, 3]
    luma = offsets @ _LUMA  # [T, H, W]
    t, y, x = np.nonzero(luma > FOREGROUND_LUMA)  # [N] each
    component = _components(t, y, x, luma.shape)  # [N]
    blob, colour = _colour_blobs(component, luma[t, y, x], offsets[t, y, x] @ _CHROMA.T, paints)
    keep = blob >= 0
    t, y, x, blob = t[keep], y[keep], x[keep], blob[keep]
    opacity = luma[t, y, x] / paints.luma[colour[blob]]  # [N]
    return _measure(blob, t, y + 0.5, x + 0.5, opacity, colour, frames.shape[1] * frames.shape[2])


def _measure(
    blob: np.ndarray, t: np.ndarray, y: np.ndarray, x: np.ndarray, a: np.ndarray, colour: np.ndarray, area: int
) -> Blobs:
    """Per-blob sums over the pixels ``[N]`` of each blob (opacity ``a``); blobs below the least mass dropped."""

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(blob, weights=weights, minlength=len(colour))  # [B]

    mass = total(a)
    safe = np.maximum(mass, 1e-9)
    cx, cy = total(a * x) / safe, total(a * y) / safe  # [B]
    z = (x - cx[blob]) + 1j * (y - cy[blob])  # [N] offset from the centroid, screen axes (y down)
    powers = [z**k for k in (3, 4, 5)]
    moments = [(total(a * p.real) + 1j * total(a * p.imag)) / np.maximum(total(a * np.abs(p)), 1e-9) for p in powers]
    frame = np.zeros(len(colour), dtype=np.int64)
    frame[blob] = t
    big = mass >= MIN_BLOB_FRACTION * area
    return Blobs(
        frame=frame[big],
        colour=colour[big],
        mass=mass[big],
        x=cx[big],
        y=cy[big],
        opacity=(total(a**3) / np.maximum(total(a**2), 1e-9))[big],
        spread=(total(a * np.abs(z) ** 2) / safe)[big],
        moments=np.stack(moments, axis=1)[big],
    )


# -- blobs -> tracks ----------------------------------------------------------------------------------------


def classify_shapes(moments: np.ndarray) -> np.ndarray:
    """Shape noun of each blob from its ``[B, 3]`` angular moments (see ``SHAPE_MOMENT_MIN``)."""
    ratio = np.abs(moments) / _IDEAL_MOMENT  # [B, 3]
    names = np.array(_POLYGONS, dtype=object)[ratio.argmax(axis=1)]  # [B]
    return np.where(ratio.max(axis=1, initial=0.0) >= SHAPE_MOMENT_MIN, names, "circle")


@dataclass(frozen=True)
class ShapeTrack:
    """One shape followed over a clip. Positions are fractions of the frame width (x) and height (y)."""

    shape: str
    visible: np.ndarray  # [T] bool
    x: np.ndarray  # [T] centre; NaN where not visible
    y: np.ndarray  # [T]
    radius: np.ndarray  # [T] circumradius, fraction of the frame width; NaN where not visible or FAINT
    angle: np.ndarray  # [T] orientation, radians clockwise, unwrapped; NaN where not visible and for circles
    opacity: np.ndarray  # [T] 0 where not visible
    colour: tuple[str | None, ...]  # [T] colour name; None where not visible


def track_shapes(
    frames: np.ndarray | torch.Tensor, colours: tuple[str, ...] = DEFAULT_PALETTE
) -> dict[str, ShapeTrack]:
    """The track of every shape seen in uint8 ``[T, H, W, 3]`` frames (numpy or torch), by shape noun; colours are
    read among ``colours`` (the world's palette, ``ShapesConfig.colours``)."""
    video = as_frames(frames)
    num_frames, height, width, _ = video.shape
    blobs = find_blobs(video, colours)
    shapes = classify_shapes(blobs.moments)  # [B]
    tracks = {}
    for shape in vocab.SHAPES:
        chosen = np.full(num_frames, -1)  # [T] blob shown per frame
        mine = np.flatnonzero(shapes == shape)
        for b in mine[np.argsort(blobs.mass[mine])]:
            chosen[blobs.frame[b]] = b  # by ascending mass: the largest blob of a frame is written last
        if (chosen >= 0).any():
            tracks[shape] = _track(shape, blobs, chosen, width, height, tuple(colours))
    return tracks


def _track(
    shape: str, blobs: Blobs, chosen: np.ndarray, width: int, height: int, colours: tuple[str, ...]
) -> ShapeTrack:
    """The signals of one shape from the blob chosen at each frame ``[T]`` (-1: not visible)."""
    visible = chosen >= 0  # [T]
    pick = np.where(visible, chosen, 0)

    def per_frame(values: np.ndarray, where: np.ndarray = visible) -> np.ndarray:
        return np.where(where, values[pick], np.nan)  # [T]

    angle = np.full(len(chosen), np.nan)  # [T]
    if shape in SYMMETRY:
        k, shown = SYMMETRY[shape], np.flatnonzero(visible)
        turned = np.angle(blobs.moments[chosen[shown], k - 3])  # [V] k x orientation, wrapped
        steps = np.angle(np.exp(1j * np.diff(turned)))  # [V - 1] each step wrapped to (-pi, pi]
        angle[shown] = (turned[0] + np.concatenate([[0.0], np.cumsum(steps)])) / k
    opaque = visible & (blobs.opacity[pick] >= FAINT)  # a faint blob's spread misses its cut-off edges
    return ShapeTrack(
        shape=shape,
        visible=visible,
        x=per_frame(blobs.x) / width,
        y=per_frame(blobs.y) / height,
        radius=np.sqrt(per_frame(blobs.spread, opaque) / _UNIT_SPREAD[shape]) / width,
        angle=angle,
        opacity=np.where(visible, blobs.opacity[pick], 0.0),
        colour=tuple(colours[c] if v else None for c, v in zip(blobs.colour[pick], visible, strict=True)),
    )


def as_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Check the scorer's input: uint8 ``[T, H, W, 3]``, numpy or torch (numpy-only otherwise: no torch import)."""
    if hasattr(frames, "detach"):  # a torch tensor
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(
            f"the dynamics scorer needs uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}; "
            "convert model output [3, T, H, W] in [-1, 1] with dysen.data.video.model_to_frames"
        )
    return frames
