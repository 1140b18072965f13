"""The Dynamic Shapes world flags shared by ``dysen data shapes``, the training stages and ``dysen eval``.

``--world-colours``, ``--world-phrasing`` and ``--world-start-angle`` set ``ShapesConfig.colours``, ``.phrasing`` and
``.start_angle`` (same defaults: the default world); a training run saves them as ``RUN/world.json`` so it can be
reproduced and resumed (a setting missing from an older ``world.json`` reads as its default).
"""

from __future__ import annotations

import argparse
from typing import Any

from dysen.errors import DysenError
from dysen.world import vocab
from dysen.world.config import PHRASINGS, START_ANGLES, ShapesConfig, require_palette

WORLD_FILE = "world.json"
"""The world settings of a training run, in its run folder."""

_DEFAULT = ShapesConfig()


def colour_list(text: str) -> tuple[str, ...]:
    """Comma-separated colour names of ``vocab.PAINTS`` (e.g. 'red,orange,yellow,green,blue,purple,pink,cyan')."""
    colours = tuple(word.strip().lower() for word in text.split(",") if word.strip())
    try:
        return require_palette(colours)
    except DysenError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_world_flags(p: argparse.ArgumentParser) -> None:
    """``--world-colours``, ``--world-phrasing`` and ``--world-start-angle``, defaulting to ``ShapesConfig``'s (the
    default world)."""
    group = p.add_argument_group("Dynamic Shapes world (ShapesConfig; defaults: the default world)")
    group.add_argument(
        "--world-colours",
        type=colour_list,
        default=",".join(_DEFAULT.colours),  # a string default goes through colour_list too
        metavar="C1,C2,...",
        help=f"palette the clips draw from, in order, of: {', '.join(vocab.PAINTS)} "
        f"(default: {','.join(_DEFAULT.colours)}; e.g. add ',pink,cyan')",
    )
    group.add_argument(
        "--world-phrasing",
        choices=PHRASINGS,
        default=_DEFAULT.phrasing,
        help="captions: 'templates' (the default world) or 'everyday' (extra everyday verb phrases) "
        f"(default: {_DEFAULT.phrasing})",
    )
    group.add_argument(
        "--world-start-angle",
        choices=START_ANGLES,
        default=_DEFAULT.start_angle,
        help="polygons' first pose: 'upright' (the default world) or 'random' (each square, triangle and star starts "
        f"turned uniformly within its symmetry period) (default: {_DEFAULT.start_angle})",
    )


def world_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ShapesConfig`` keyword arguments the world flags give."""
    return {
        "colours": tuple(args.world_colours),
        "phrasing": args.world_phrasing,
        "start_angle": args.world_start_angle,
    }


def saved_with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved ``world.json`` with the settings it predates filled in with their defaults (JSON-shaped), so a run
    saved before a world option existed resumes with the default world."""
    defaults = {"colours": list(_DEFAULT.colours), "phrasing": _DEFAULT.phrasing, "start_angle": _DEFAULT.start_angle}
    return {**defaults, **saved}
