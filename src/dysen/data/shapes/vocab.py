"""The Dynamic Shapes vocabulary: the contract between the clip generator and the dynamics scorer.

Everything a caption can name and a pixel can show is declared here once: shapes, colours (with the
exact RGB the renderer paints), sizes, actions (with the canonical event predicate of the gold DSG)
and spatial relations. ``dysen.data.shapes`` renders from it; ``dysen.eval.dynamics`` recognises it.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

COLOURS: dict[str, tuple[int, int, int]] = {
    # name: RGB painted by the renderer; hues are >= 25 degrees apart so H.264 chroma keeps them apart
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 215, 30),
    "green": (40, 175, 60),
    "blue": (40, 90, 235),
    "purple": (150, 60, 210),
}

BACKGROUND: tuple[int, int, int] = (24, 24, 24)
"""A flat near-black canvas: every non-background pixel belongs to a shape."""

SIZES: dict[str, float] = {
    # name: radius of the shape's circumscribed circle as a fraction of the frame side
    "small": 0.09,
    "large": 0.15,
}


@dataclass(frozen=True)
class Action:
    """An action of the vocabulary and how the gold DSG names it."""

    name: str
    """Identifier used in code and in per-action reports, e.g. 'move_left'."""
    predicate: str
    """The canonical event predicate in gold DSGs, e.g. 'moves left'."""
    transitive: bool = False
    """Whether the event has a target: only 'turns' does (target = the new colour name)."""


ACTIONS: tuple[Action, ...] = (
    Action("move_left", "moves left"),
    Action("move_right", "moves right"),
    Action("move_up", "moves up"),
    Action("move_down", "moves down"),
    Action("jump", "jumps"),
    Action("grow", "grows"),
    Action("shrink", "shrinks"),
    Action("rotate", "rotates"),
    Action("appear", "appears"),
    Action("disappear", "disappears"),
    Action("change_colour", "turns", transitive=True),
)
ACTIONS_BY_NAME: dict[str, Action] = {a.name: a for a in ACTIONS}
ACTIONS_BY_PREDICATE: dict[str, Action] = {a.predicate: a for a in ACTIONS}

INVISIBLE_ACTIONS: dict[str, tuple[str, ...]] = {
    # shape: actions that no pixel could show on it (a rotating circle looks still), never sampled
    "circle": ("rotate",),
}

SPATIAL_RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""Predicates of the gold relations between two visible objects at a time step."""
