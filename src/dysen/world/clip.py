"""One Dynamic Shapes clip: drawn from its (seed, split, index) alone, then rendered on demand.

Clip ``index`` of ``split`` under ``seed`` is the same in every run and process: its random stream is
``numpy.random.SeedSequence((seed, split number in SPLITS, index))``, split into one child stream for
the story and layout and one for the caption wording, and a third child for the start angles of
``ShapesConfig.start_angle='random'`` (spawning it changes neither of the others, so the default world
draws exactly as before). Drawing is cheap (no pixels); the generator's
``dysen.data.shapes.render.render_clip`` paints the frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dysen.dsg.types import Box, DynamicSceneGraph
from dysen.errors import DysenError
from dysen.world.captions import compose_caption
from dysen.world.config import DEFAULT_CONFIG, SPLITS, ShapesConfig, require_config, require_int, require_split
from dysen.world.gold import frame_boxes, gold_dsg
from dysen.world.motion import Track, place, start_turns, turned
from dysen.world.story import Story, sample_story

_STORY_TRIES = 1000
"""Stories drawn before giving up on a config whose shapes and motions cannot fit the frame."""


@dataclass(frozen=True)
class ShapesClip:
    """A clip's text, gold DSG, per-frame boxes, and the per-frame shape states the renderer paints."""

    id: str
    """'<split>-<seed>-<index:06d>', also the video file name."""
    split: str
    seed: int
    index: int
    caption: str
    dsg: DynamicSceneGraph
    frame_boxes: tuple[tuple[Box, ...], ...]
    """For every frame, the tight normalised box of every visible shape."""
    story: Story
    """Shapes and events as drawn (events carry their (colour, shape, action) triple)."""
    tracks: tuple[Track, ...]
    """Per-frame position, radius, angle, opacity, colour and size of every shape."""


def sample_clip(index: int, split: str = "train", seed: int = 0, config: ShapesConfig = DEFAULT_CONFIG) -> ShapesClip:
    """Draw clip ``index`` of ``split``: story, layout, caption, gold DSG and boxes (no pixels)."""
    index = require_int("index", index, 0)
    seed = require_int("seed", seed, 0)
    split = require_split(split)
    config = require_config(config)
    story_stream, caption_stream, angle_stream = np.random.SeedSequence((seed, SPLITS.index(split), index)).spawn(3)
    rng = np.random.default_rng(story_stream)
    for _ in range(_STORY_TRIES):
        story = sample_story(rng, config, compositional=split == "compositional")
        tracks = place(story, rng, config)
        if tracks is not None:
            break
    else:
        raise DysenError(
            f"could not lay out clip {index} of {split!r} in {_STORY_TRIES} tries: shapes and motions do not fit "
            "the frame; lower ShapesConfig.move_distance, jump_height, margin or gap, or max_objects"
        )
    if config.start_angle == "random":
        tracks = turned(tracks, start_turns(tracks, np.random.default_rng(angle_stream)))
    boxes = frame_boxes(tracks, config.num_frames)
    return ShapesClip(
        id=f"{split}-{seed}-{index:06d}",
        split=split,
        seed=seed,
        index=index,
        caption=compose_caption(story, np.random.default_rng(caption_stream), config.phrasing),
        dsg=gold_dsg(story, tracks, boxes, config),
        frame_boxes=boxes,
        story=story,
        tracks=tracks,
    )

