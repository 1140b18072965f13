"""Colour words people write -> the nearest colour the Dynamic Shapes world paints (issue 23).

The world paints six colours (``vocab.COLOURS``); prompts name many more ("a white triangle", "the square turns
pink"). ``COLOUR_NAMES`` lists ~40 common colour words with an RGB each (CSS / X11 basic colours), and
``WORLD_COLOUR_OF`` maps each to the world colour nearest in CIELAB (CIE76 Delta E: Euclidean distance in
L*a*b*, sRGB with the D65 white), computed here, not assigned by hand. Lab rather than hue because white,
grey and black have no hue at all; the world's colours are all saturated, so an achromatic word goes to the
world colour of nearest lightness and chroma (white -> yellow, black -> red, grey -> green).

``dysen.planner.colours.with_world_colours`` applies the map to every plan (the same seam as the motion
normaliser), with a warning naming both words. Which candidate colours a retrain could add is measured in
``benchmarks/colour_separation.py`` (only pink and cyan keep their hue distinct after H.264).
"""

from __future__ import annotations

import math
from functools import cache

from dysen.world import vocab

__all__ = [
    "COLOUR_NAMES", "DEFAULT_PALETTE", "WORLD_COLOUR_OF", "colour_map", "delta_e", "lab", "nearest_world_colour",
]  # fmt: skip

DEFAULT_PALETTE: tuple[str, ...] = tuple(vocab.COLOURS)
"""The default world's six colours; a model trained on a wider palette (``ShapesConfig.colours``) names its own
(``PlannerOptions.colours``)."""

COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    # colour word: a typical RGB (CSS / X11 named colours; a few everyday words given their CSS cousin's value)
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "silver": (192, 192, 192),
    "pink": (255, 192, 203),
    "hotpink": (255, 105, 180),
    "magenta": (255, 0, 255),
    "fuchsia": (255, 0, 255),
    "cyan": (0, 255, 255),
    "aqua": (0, 255, 255),
    "turquoise": (64, 224, 208),
    "teal": (0, 128, 128),
    "brown": (165, 42, 42),
    "tan": (210, 180, 140),
    "beige": (245, 245, 220),
    "cream": (255, 253, 208),
    "ivory": (255, 255, 240),
    "khaki": (240, 230, 140),
    "gold": (255, 215, 0),
    "golden": (255, 215, 0),
    "amber": (255, 191, 0),
    "lime": (0, 255, 0),
    "olive": (128, 128, 0),
    "mint": (152, 255, 152),
    "emerald": (80, 200, 120),
    "navy": (0, 0, 128),
    "indigo": (75, 0, 130),
    "violet": (238, 130, 238),
    "lavender": (230, 230, 250),
    "lilac": (200, 162, 200),
    "plum": (221, 160, 221),
    "maroon": (128, 0, 0),
    "crimson": (220, 20, 60),
    "scarlet": (255, 36, 0),
    "burgundy": (128, 0, 32),
    "coral": (255, 127, 80),
    "salmon": (250, 128, 114),
    "peach": (255, 218, 185),
    "azure": (0, 127, 255),
    "sky": (135, 206, 235),
    "rose": (255, 0, 127),
    "chocolate": (210, 105, 30),
    "lemon": (255, 247, 0),
}


def _linear(channel: int) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIELAB (L*, a*, b*) of an sRGB colour, D65 white."""
    r, g, b = (_linear(c) for c in rgb)
    xyz = (
        (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047,
        (0.2126729 * r + 0.7151522 * g + 0.0721750 * b) / 1.0,
        (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883,
    )
    fx, fy, fz = (t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def delta_e(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """CIE76 colour difference: Euclidean distance in CIELAB (~2.3 is just noticeable)."""
    return math.dist(lab(a), lab(b))


def _nearest(rgb: tuple[int, int, int], palette: tuple[str, ...]) -> tuple[str, float]:
    return min(((world, delta_e(rgb, vocab.PAINTS[world])) for world in palette), key=lambda p: p[1])


@cache
def colour_map(palette: tuple[str, ...] = DEFAULT_PALETTE) -> dict[str, tuple[str, float]]:
    """Colour word -> (nearest colour of ``palette``, its CIE76 Delta E), for each word of ``COLOUR_NAMES`` the
    palette lacks. ``palette``: names of ``vocab.PAINTS`` (a world's ``ShapesConfig.colours``)."""
    unknown = [colour for colour in palette if colour not in vocab.PAINTS]
    if unknown or not palette:
        raise ValueError(f"a palette names colours the world paints ({', '.join(vocab.PAINTS)}); got {palette!r}")
    return {word: _nearest(rgb, palette) for word, rgb in COLOUR_NAMES.items() if word not in palette}


WORLD_COLOUR_OF: dict[str, tuple[str, float]] = colour_map(DEFAULT_PALETTE)
"""Colour word -> (nearest world colour, its CIE76 Delta E) in the default world; its own colours are not listed."""


def nearest_world_colour(word: str, palette: tuple[str, ...] = DEFAULT_PALETTE) -> tuple[str, float] | None:
    """The colour of ``palette`` a colour word is drawn as and its Delta E (0.0 for a palette colour); None if the
    word names no colour we know (``COLOUR_NAMES``)."""
    word = word.lower().strip()
    if word in palette:
        return word, 0.0
    return colour_map(palette).get(word)
