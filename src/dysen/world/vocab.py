"""The Dynamic Shapes vocabulary: the contract between the clip generator and the dynamics scorer.

Everything a caption can name and a pixel can show is declared here once: shapes, colours (with the
exact RGB the renderer paints), sizes, actions (with the canonical event predicate of the gold DSG)
and spatial relations. ``dysen.data.shapes`` renders from it; ``dysen.eval.dynamics`` recognises it.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    # shape: the nouns a prompt (and so a plan) may use for it, the shape's own name first ("the ball" is a circle)
    "circle": ("circle", "ball", "dot", "disc", "disk", "orb", "sphere", "ring"),
    "square": ("square", "box", "block", "rectangle", "tile", "cube"),
    "triangle": ("triangle", "wedge", "pyramid"),
    "star": ("star",),
}
SHAPE_OF_NOUN: dict[str, str] = {noun: shape for shape, nouns in SHAPE_SYNONYMS.items() for noun in nouns}
"""Noun -> the shape it names in this world (the scorer finds a plan's 'ball' among the circles)."""

COLOURS: dict[str, tuple[int, int, int]] = {
    # name: RGB painted by the renderer; hues are >= 25 degrees apart so H.264 chroma keeps them apart
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 215, 30),
    "green": (40, 175, 60),
    "blue": (40, 90, 235),
    "purple": (150, 60, 210),
}

EXTRA_COLOURS: dict[str, tuple[int, int, int]] = {
    # name: RGB of the opt-in colours (``ShapesConfig.colours``); measured by benchmarks/colour_separation.py as the
    # only candidates whose hue stays distinct from the six after H.264 (white/grey have none, brown is dark orange)
    "pink": (255, 130, 190),
    "cyan": (30, 210, 220),
}

PAINTS: dict[str, tuple[int, int, int]] = {**COLOURS, **EXTRA_COLOURS}
"""Every colour the renderer can paint and the scorer can read: the default palette (``COLOURS``, what the default
world draws and the default scorer reads) and the opt-in ones."""

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

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    # size name: the adjectives a caption may use for it (the first is the size name itself)
    "small": ("small", "little"),
    "large": ("large", "big"),
}

ACTION_PHRASES: dict[str, tuple[str, ...]] = {
    # action name: the verb phrases a caption may use for it; '{colour}' is the new colour of 'turns'.
    # No phrase of one action is a prefix of a phrase of another, so a longest-match parser is exact.
    "move_left": ("moves left", "moves to the left", "slides left", "travels left", "goes left"),
    "move_right": ("moves right", "moves to the right", "slides right", "travels right", "goes right"),
    "move_up": ("moves up", "moves upward", "slides up", "rises", "floats up"),
    "move_down": ("moves down", "moves downward", "slides down", "sinks", "drops down"),
    "jump": ("jumps", "hops", "leaps", "bounces"),
    "grow": ("grows", "gets bigger", "expands", "swells"),
    "shrink": ("shrinks", "gets smaller", "contracts", "dwindles"),
    "rotate": ("rotates", "spins", "twirls", "spins around"),
    "appear": ("appears", "shows up", "fades in", "comes into view"),
    "disappear": ("disappears", "vanishes", "fades out", "fades away"),
    "change_colour": ("turns {colour}", "becomes {colour}", "changes colour to {colour}", "changes to {colour}"),
}

EVERYDAY_PHRASES: dict[str, tuple[str, ...]] = {
    # action name: extra everyday verb phrases, drawn beside ACTION_PHRASES only with ShapesConfig.phrasing
    # 'everyday' (so default captions keep their random stream). Each one is read exactly by the rules planner
    # (tests/test_world_options.py; a phrase it read as another predicate was dropped), and none is taken from the
    # 'hidden' split of tests/data/paraphrases.jsonl.
    "move_left": ("slides left across the screen", "moves to the left side", "travels left across the frame",
                  "goes left a little", "moves left a bit"),
    "move_right": ("slides right across the screen", "moves to the right side", "travels right across the frame",
                   "goes right a little", "moves right a bit"),
    "move_up": ("rises to the top", "floats up toward the top", "moves up the screen", "rises upward",
                "moves up a bit", "rises slowly"),
    "move_down": ("sinks to the bottom", "drops down to the bottom", "moves down the screen", "sinks slowly",
                  "sinks downward", "moves down a bit"),
    "jump": ("does a little jump", "hops up and down", "jumps into the air", "bounces up and down", "does a jump",
             "leaps up"),
    "grow": ("gets bigger and bigger", "grows bigger", "swells up", "expands in size"),
    "shrink": ("gets smaller and smaller", "shrinks down", "shrinks in size"),
    "rotate": ("spins in place", "spins around once", "rotates on the spot", "twirls in place", "does a spin",
               "spins in a circle"),
    "appear": ("pops into view", "fades into view", "comes into sight", "appears out of nowhere",
               "shows up in the frame"),
    "disappear": ("vanishes from view", "fades from view", "disappears from view", "fades out of view",
                  "vanishes from sight"),
    "change_colour": ("changes its colour to {colour}", "turns {colour} all over", "turns completely {colour}",
                      "becomes {colour} in colour", "turns a bright {colour}"),
}  # fmt: skip

HELD_OUT_TRIPLES: frozenset[tuple[str, str, str]] = frozenset(
    # (colour, shape, action) triples that no train/val/test clip ever shows and every 'compositional' clip
    # shows at least once; the colour is the agent's colour when the event starts. Chosen once by the rule
    # (colour index + 3 * shape index + 7 * action index) % 10 == 0 over the orders above, minus invisible
    # actions: 26 of 258 valid triples, every action 2-3 times, and every (colour, shape), (colour, action)
    # and (shape, action) pair still occurs in train. The opt-in colours (EXTRA_COLOURS) have no held-out
    # triple: an extended palette adds train/test clips with pink and cyan, the compositional split stays the same.
    {
        ("red", "circle", "move_left"),
        ("red", "circle", "change_colour"),
        ("red", "square", "move_right"),
        ("red", "triangle", "move_up"),
        ("red", "star", "move_down"),
        ("orange", "square", "appear"),
        ("orange", "triangle", "disappear"),
        ("orange", "star", "move_left"),
        ("orange", "star", "change_colour"),
        ("yellow", "circle", "jump"),
        ("yellow", "square", "grow"),
        ("yellow", "triangle", "shrink"),
        ("yellow", "star", "rotate"),
        ("green", "circle", "move_right"),
        ("green", "square", "move_up"),
        ("green", "triangle", "move_down"),
        ("green", "star", "jump"),
        ("blue", "circle", "appear"),
        ("blue", "square", "disappear"),
        ("blue", "triangle", "move_left"),
        ("blue", "triangle", "change_colour"),
        ("blue", "star", "move_right"),
        ("purple", "circle", "grow"),
        ("purple", "square", "shrink"),
        ("purple", "triangle", "rotate"),
        ("purple", "star", "appear"),
    }
)
