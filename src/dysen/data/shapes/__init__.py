"""Dynamic Shapes: procedural text-video clips with exact gold dynamic scene graphs.

Coloured shapes move, jump, grow, shrink, rotate, appear, disappear and change colour, one to three
events per clip, in sequence or at the same time; each clip has a paraphrased caption and its gold
DSG. It is dysen's offline training set, benchmark and demo domain. What happens in a clip (stories,
motion, captions, gold DSGs) is the world model ``dysen.world``; this package makes the pixels and the
files: ``render`` (how it looks), ``writer`` (mp4 + manifest on disk), ``dataset`` (the torch
``Dataset``; the only module that imports torch, loaded on first use). ``ShapesConfig``, ``SPLITS``,
``ShapesClip`` and ``sample_clip`` are re-exported from ``dysen.world`` as the generator's public API
(draw a clip, render it, write a split).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dysen.data.shapes.render import render_clip
from dysen.data.shapes.writer import write_dataset
from dysen.world import SPLITS, ShapesClip, ShapesConfig, sample_clip

if TYPE_CHECKING:
    from dysen.data.shapes.dataset import ShapesDataset, collate

__all__ = [
    "SPLITS",
    "ShapesClip",
    "ShapesConfig",
    "ShapesDataset",
    "collate",
    "render_clip",
    "sample_clip",
    "write_dataset",
]


def __getattr__(name: str) -> Any:
    """Import the torch side (``ShapesDataset``, ``collate``) only when it is asked for."""
    if name in ("ShapesDataset", "collate"):
        from dysen.data.shapes import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
