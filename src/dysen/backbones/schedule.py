"""The control schedule of a plan on a backbone: DSG step -> video frame -> latent frame, boxes -> token masks.

Training-free layout control (TrailBlazer, Ma et al. 2024; Direct-a-Video, Yang et al. 2024; research notes
``backbones2026.md`` §6.2 step 1) needs to know, for every latent frame the denoiser sees, which of its video tokens
each planned object covers and which events are under way. This module works that out from the plan and the
backbone's geometry alone (pure functions, no weights):

* time: the DSG's steps spread over the video's T frames (``DynamicSceneGraph.align``); a causal VAE with temporal
  factor k (Wan: 4) makes latent frame 0 of frame 0 and latent frame i >= 1 of frames k(i − 1) + 1 … k·i; a
  per-frame VAE (k = 1) keeps frame i as latent frame i;
* space: an object's box at a frame (``dysen.dsg.layout.frame_layout``) covers the token cells (latent pixels per
  token: the VAE's factor times the patch) it overlaps by at least half a cell, and always the cell of its centre;
  a latent frame's mask is the union over its video frames (rotations are ignored: the box is axis-aligned);
* events: a latent frame is in an event's window when any of its video frames is; the event's region there is
  the union of its agent's and target's masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dysen.backbones.base import BackboneError, BackboneGeometry
from dysen.dsg.layout import BoxTuple, frame_layout
from dysen.dsg.types import DynamicSceneGraph, Event


class ControlError(BackboneError):
    """A plan that cannot steer a backbone: no boxes, or phrases the text encoder cannot read."""


@dataclass(frozen=True, eq=False)
class ObjectControl:
    """One planned object: where it is in every latent frame."""

    name: str
    masks: torch.Tensor  # bool [F, gh, gw]: the token cells it covers (all False where it is absent)


@dataclass(frozen=True, eq=False)
class EventControl:
    """One planned event: its latent-frame window and its agent's (and target's) region in it."""

    index: int  # position in ``dsg.events``
    event: Event
    window: tuple[int, int]  # half-open latent-frame span (first, stop)
    masks: torch.Tensor  # bool [F, gh, gw]: agent ∪ target cells inside the window, False outside it


@dataclass(frozen=True, eq=False)
class ControlSchedule:
    """Per latent frame, each object's and event's token mask on the backbone's token grid."""

    num_frames: int  # video frames T
    latent_frames: int  # F
    grid: tuple[int, int]  # (gh, gw) tokens per latent frame
    frames_of_latent: tuple[tuple[int, int], ...]  # [F] half-open video-frame span of each latent frame
    objects: tuple[ObjectControl, ...]
    events: tuple[EventControl, ...]


def latent_frame_spans(num_frames: int, temporal_factor: int) -> tuple[tuple[int, int], ...]:
    """The half-open video-frame span of each latent frame: (0, 1), (1, k + 1), (k + 1, 2k + 1), … for a causal
    VAE with temporal factor k; (i, i + 1) for a per-frame VAE (k = 1). ``num_frames`` must be 1 + k·m."""
    k = temporal_factor
    if num_frames < 1 or (num_frames - 1) % k:
        raise ControlError(f"a causal VAE with temporal factor {k} encodes 1 + {k}·m frames, not {num_frames}")
    return ((0, 1), *(((i - 1) * k + 1, i * k + 1) for i in range(1, (num_frames - 1) // k + 1)))


def box_mask(box: BoxTuple, grid: tuple[int, int]) -> torch.Tensor:
    """bool [gh, gw]: the cells a box (x0, y0, x1, y1 in [0, 1]) overlaps by at least half a cell, and the cell of
    its centre (so a box smaller than a cell still has one)."""
    gh, gw = grid
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in box)
    over_x = _overlaps(gw, x0, x1)  # [gw] length of each column inside the box
    over_y = _overlaps(gh, y0, y1)  # [gh]
    mask = (over_y[:, None] * over_x[None, :]) * (gh * gw) >= 0.5  # [gh, gw] share of each cell covered
    row = min(int((y0 + y1) / 2 * gh), gh - 1)
    col = min(int((x0 + x1) / 2 * gw), gw - 1)
    mask[row, col] = True
    return mask


def _overlaps(cells: int, low: float, high: float) -> torch.Tensor:
    """[cells]: the length of [low, high] inside each of ``cells`` equal cells of [0, 1]."""
    edges = torch.arange(cells + 1, dtype=torch.float64) / cells  # [cells + 1]
    return (edges[1:].clamp(max=high) - edges[:-1].clamp(min=low)).clamp(min=0)


def build_schedule(
    dsg: DynamicSceneGraph, geometry: BackboneGeometry, num_frames: int, height: int, width: int
) -> ControlSchedule:
    """The schedule of ``dsg`` on a ``num_frames`` x ``height`` x ``width`` video of a backbone of ``geometry``;
    ``dsg`` must have boxes (``dysen.planner.layout.imagine_layout`` imagines them)."""
    grid = geometry.token_grid(height, width)
    geometry.latent_frames(num_frames)  # refuses frame counts the VAE cannot encode
    spans = latent_frame_spans(num_frames, geometry.temporal_factor)
    layout = frame_layout(dsg, num_frames)
    if layout is None:
        raise ControlError("the plan has no boxes: imagine them first (dysen.planner.layout.imagine_layout)")
    names = list(dict.fromkeys(item.object for frame in layout for item in frame))
    per_frame = torch.zeros(len(names), num_frames, *grid, dtype=torch.bool)  # [K, T, gh, gw]
    for frame, items in enumerate(layout):
        for item in items:
            per_frame[names.index(item.object), frame] = box_mask(item.box, grid)
    per_latent = torch.stack([per_frame[:, a:b].any(dim=1) for a, b in spans], dim=1)  # [K, F, gh, gw]
    objects = tuple(ObjectControl(name, per_latent[k]) for k, name in enumerate(names))

    alignment = dsg.align(num_frames)
    events = []
    for index, event in enumerate(dsg.events):
        first, stop = alignment.event_frames(event)  # video frames [first, stop)
        inside = [i for i, (a, b) in enumerate(spans) if a < stop and first < b]  # latent frames that meet it
        window = (inside[0], inside[-1] + 1)
        region = torch.zeros(len(spans), *grid, dtype=torch.bool)  # [F, gh, gw]
        for name in (event.agent, event.target):
            if name in names:
                region |= per_latent[names.index(name)]
        region[: window[0]] = False
        region[window[1] :] = False
        events.append(EventControl(index, event, window, region))
    return ControlSchedule(num_frames, len(spans), grid, spans, objects, tuple(events))
