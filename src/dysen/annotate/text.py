"""Gold DSGs from text: timestamped sentences (quantised into M steps) and whole captions, through a planner."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from dysen.annotate.run import DEFAULT_STEPS, AnnotateError, Annotator
from dysen.data.datasets.base import Segment, VideoRecord
from dysen.dsg import DynamicSceneGraph, Event, SceneGraph, events_to_dsg
from dysen.errors import DysenError
from dysen.planner.types import Planner

log = logging.getLogger(__name__)


def quantise_span(start_s: float, end_s: float, duration_s: float, steps: int = DEFAULT_STEPS) -> tuple[int, int]:
    """The half-open step span ``[start, end)`` of ``[start_s, end_s]`` seconds (module docstring)."""
    if duration_s <= 0 or steps < 1:
        raise AnnotateError(f"need duration > 0 and steps >= 1, got {duration_s} s and {steps} steps")
    start = min(max(math.floor(start_s * steps / duration_s + 0.5), 0), steps - 1)
    end = min(max(math.floor(end_s * steps / duration_s + 0.5), start + 1), steps)
    return start, end


def timestamps_to_dsg(
    segments: Sequence[Segment], duration_s: float, steps: int = DEFAULT_STEPS, planner: Planner | None = None
) -> DynamicSceneGraph:
    """The M-step DSG of timestamped sentences: each sentence's events inside its span (module docstring)."""
    if planner is None:
        from dysen.planner.rules import RulesPlanner

        planner = RulesPlanner()
    events: list[Event] = []
    for segment in segments:
        try:
            plan = planner.plan(segment.sentence)
        except DysenError as err:
            log.debug("sentence %r gives no event: %s", segment.sentence, err)
            continue
        length, span = plan.num_steps, segment.end_s - segment.start_s
        for event in plan.events:
            start_s = segment.start_s + span * event.start / length
            start, end = quantise_span(start_s, segment.start_s + span * event.end / length, duration_s, steps)
            events.append(event.model_copy(update={"start": start, "end": end}))
    if not events:
        raise AnnotateError(f"none of the {len(segments)} sentences gives an event (agent + action)")
    dsg = events_to_dsg(dict.fromkeys(events))
    padding = (SceneGraph(),) * (steps - dsg.num_steps)
    return DynamicSceneGraph(events=dsg.events, graphs=dsg.graphs + padding)


def timestamp_annotator(planner: Planner | None = None, steps: int = DEFAULT_STEPS) -> Annotator:
    """Mode ``timestamps``: a record's segments -> its DSG."""

    def annotate(record: VideoRecord) -> DynamicSceneGraph:
        if not record.segments or not record.duration_s:
            raise AnnotateError(f"{record.id} has no timestamped sentences; use mode 'captions' or 'vlm'")
        return timestamps_to_dsg(record.segments, record.duration_s, steps, planner)

    return annotate


def caption_annotator(planner: Planner) -> Annotator:
    """Mode ``captions``: a record's first caption through ``planner``; a record without one fails."""

    def annotate(record: VideoRecord) -> DynamicSceneGraph:
        if not record.captions:
            raise AnnotateError(f"{record.id} has no caption to plan from ({record.problem or 'none given'})")
        return planner.plan(record.captions[0])

    return annotate
