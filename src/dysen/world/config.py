"""Settings of the Dynamic Shapes world and its generator, the split names, and the checks on caller arguments.

Every knob lives in ``ShapesConfig`` once, with its default and a one-line meaning; geometry is in
fractions of the frame side, so a config renders the same story at any pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Literal

from dysen.errors import DysenError
from dysen.world import vocab

Phrasing = Literal["templates", "everyday"]
PHRASINGS: tuple[str, ...] = ("templates", "everyday")
"""'templates': verb phrases of ``vocab.ACTION_PHRASES`` only (the default world); 'everyday': those and
``vocab.EVERYDAY_PHRASES``."""

StartAngle = Literal["upright", "random"]
START_ANGLES: tuple[str, ...] = ("upright", "random")
"""'upright': every shape starts in its pose of ``dysen.world.geometry`` (the default world); 'random': every polygon
starts turned by an angle uniform in [0, its symmetry period), drawn from its own stream (``dysen.world.clip``)."""

SPLITS: tuple[str, ...] = ("train", "val", "test", "compositional")
"""train/val/test differ only by seed stream; 'compositional' shows held-out (colour, shape, action) triples."""


@dataclass(frozen=True)
class ShapesConfig:
    """How Dynamic Shapes clips look and move. Lengths are fractions of the frame side."""

    size: int = 64
    """Frame height and width in pixels."""
    num_frames: int = 16
    """T, frames per clip."""
    fps: int = 8
    """Frame rate of written videos (rendering does not depend on it)."""
    num_steps: int = 8
    """M, time steps (units v) per clip; frame t shows step floor(t * M / T). 8 lets 3 sequential events
    take 3, 3 and 2 steps (6, 6 and 4 frames at T = 16)."""
    max_objects: int = 3
    """Most shapes in a clip (1..4; shapes in a clip are distinct)."""
    max_events: int = 3
    """Most events in a clip (1..3)."""
    supersample: int = 4
    """Anti-aliasing: samples per pixel side, averaged by a box filter."""
    margin: float = 0.04
    """Free border kept between every shape and the frame edge at every frame."""
    gap: float = 0.04
    """Least free space between the circumscribed circles of two visible shapes at every frame."""
    move_distance: float = 0.3
    """Displacement of a 'moves <direction>' event (19 px at 64 px)."""
    jump_height: float = 0.25
    """Peak lift of a 'jumps' event (16 px at 64 px)."""
    rotate_periods: float = 1.5
    """Rotation of a 'rotates' event in symmetry periods of the shape (square 135°, triangle 180°, star 108°);
    a half-integer ends in the pose most unlike the start."""
    relation_margin: float = 0.1
    """'left of' / 'above' need the centres to differ by more than this along that axis."""
    colours: tuple[str, ...] = tuple(vocab.COLOURS)
    """The palette stories draw from, in draw order (names of ``vocab.PAINTS``); the default six keep every split
    as it was; e.g. add 'pink' and 'cyan' to train on eight."""
    phrasing: Phrasing = "templates"
    """How captions say actions: 'templates' (the default world) or 'everyday' (``PHRASINGS``)."""
    start_angle: StartAngle = "upright"
    """Polygons' pose at the first frame: 'upright' (the default world) or 'random' turns (``START_ANGLES``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "colours", require_palette(self.colours))
        if self.phrasing not in PHRASINGS:
            raise DysenError(f"ShapesConfig.phrasing must be one of {', '.join(PHRASINGS)}, got {self.phrasing!r}")
        if self.start_angle not in START_ANGLES:
            raise DysenError(
                f"ShapesConfig.start_angle must be one of {', '.join(START_ANGLES)}, got {self.start_angle!r}"
            )
        for field in fields(self):
            if field.name in ("colours", "phrasing", "start_angle"):
                continue
            value = getattr(self, field.name)
            expected = Integral if field.type == "int" else Real
            if isinstance(value, bool) or not isinstance(value, expected):
                raise DysenError(f"ShapesConfig.{field.name} must be a {field.type}, got {value!r}")
        require_int("ShapesConfig.size", self.size, 16)
        require_int("ShapesConfig.fps", self.fps, 1)
        require_int("ShapesConfig.supersample", self.supersample, 1)
        require_int("ShapesConfig.max_events", self.max_events, 1, 3)
        require_int("ShapesConfig.max_objects", self.max_objects, 1, 4)
        require_int("ShapesConfig.num_steps", self.num_steps, self.max_events)
        require_int("ShapesConfig.num_frames", self.num_frames, self.num_steps)
        for name in ("margin", "gap", "move_distance", "jump_height", "relation_margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DysenError(
                    f"ShapesConfig.{name} is a fraction of the frame side in [0, 1], got {getattr(self, name)}"
                )
        if self.rotate_periods <= 0:
            raise DysenError(f"ShapesConfig.rotate_periods must be > 0, got {self.rotate_periods}")


def require_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int if it is an integer in ``[minimum, maximum]``; otherwise a ``DysenError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise DysenError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise DysenError(f"{name} must be {bound}, got {value}")
    return int(value)


def require_palette(colours: object) -> tuple[str, ...]:
    """``colours`` as a tuple of distinct ``vocab.PAINTS`` names (at least 4: a clip has up to 4 shapes of distinct
    colours); otherwise a ``DysenError`` naming the colours the world can paint."""
    if isinstance(colours, str) or not isinstance(colours, (tuple, list)):
        raise DysenError(f"ShapesConfig.colours must be a tuple of colour names, got {colours!r}")
    unknown = [c for c in colours if c not in vocab.PAINTS]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise DysenError(f"the Dynamic Shapes world cannot paint {names}; its colours: {', '.join(vocab.PAINTS)}")
    if len(set(colours)) != len(colours) or len(colours) < 4:
        raise DysenError(f"ShapesConfig.colours needs at least 4 distinct colours, got {', '.join(colours)}")
    return tuple(colours)


def require_split(split: object) -> str:
    """``split`` if it is one of ``SPLITS``; otherwise a ``DysenError`` listing them."""
    if split not in SPLITS:
        raise DysenError(f"unknown Dynamic Shapes split {split!r}; choose one of {', '.join(SPLITS)}")
    return str(split)


def require_config(config: object) -> ShapesConfig:
    """``config`` if it is a ``ShapesConfig``; otherwise a ``DysenError``."""
    if not isinstance(config, ShapesConfig):
        raise DysenError(f"config must be a ShapesConfig, got {type(config).__name__}")
    return config


DEFAULT_CONFIG = ShapesConfig()
"""The default settings (a shared, immutable instance used as the default argument)."""
