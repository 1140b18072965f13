"""The Dynamic Shapes world model: what can happen in a clip, how it moves, how it is said, its gold DSG.

Numpy only (no torch, no pixels), shared by the generator that renders clips (``dysen.data.shapes``),
the planner's layout imagination (``dysen.planner.layout``, ``dysen.planner.lexicon``) and the pixel
scorer (``dysen.eval.dynamics``). Modules: ``vocab`` (colours, shapes, actions, relations: the contract
with the scorer), ``config`` (``ShapesConfig``, the splits), ``story`` (what happens), ``motion`` (how it
moves and where it stands), ``geometry`` (shape outlines), ``captions`` (how it is said), ``gold`` (the
DSG and per-frame boxes), ``clip`` (one clip drawn from its seed, without pixels).
"""

from dysen.world.clip import ShapesClip, sample_clip
from dysen.world.config import SPLITS, ShapesConfig

__all__ = ["SPLITS", "ShapesClip", "ShapesConfig", "sample_clip"]
