"""Dynamic Shapes: procedural text-video clips with exact gold dynamic scene graphs.

Coloured shapes move, jump, grow, shrink, rotate, appear, disappear and change colour, one to three
events per clip, in sequence or at the same time; each clip has a paraphrased caption and its gold
DSG. It is dysen's offline training set, benchmark and demo domain. ``vocab`` is the contract with
the pixel scorer (``dysen.eval.dynamics``). Modules: ``story`` (what happens), ``motion`` (how it
moves and where it stands), ``captions`` (how it is said), ``gold`` (the DSG), ``geometry`` and
``render`` (how it looks), ``clip`` (one clip from its seed), ``writer`` (mp4 + manifest on disk),
``dataset`` (the torch ``Dataset``; the only module that imports torch, loaded on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dysen.data.shapes.clip import ShapesClip, render_clip, sample_clip
from dysen.data.shapes.config import SPLITS, ShapesConfig
from dysen.data.shapes.writer import write_dataset

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
