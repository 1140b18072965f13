"""Dynamic scene graphs: the data model, Step II conversion, the paper's text format and DSG metrics.

Pure Python: nothing under ``dysen.dsg`` imports torch.
"""

from dysen.dsg.convert import FrameAlignment, align_steps_to_frames, events_to_dsg
from dysen.dsg.io import read_dsgs, write_jsonl_atomic
from dysen.dsg.metrics import action_planning_reliability, event_exact_match, triplet_prf, triplet_recall
from dysen.dsg.textfmt import format_dsg, format_events, format_graph, parse_dsg, parse_events, parse_graph
from dysen.dsg.types import (
    SCHEMA_VERSION,
    Attribute,
    Box,
    DSGLimits,
    DynamicSceneGraph,
    Event,
    Motion,
    Relation,
    SceneGraph,
    dsg_json_schema,
)

__all__ = [
    "SCHEMA_VERSION",
    "Attribute",
    "Box",
    "DSGLimits",
    "DynamicSceneGraph",
    "Event",
    "FrameAlignment",
    "Motion",
    "Relation",
    "SceneGraph",
    "action_planning_reliability",
    "align_steps_to_frames",
    "dsg_json_schema",
    "event_exact_match",
    "events_to_dsg",
    "format_dsg",
    "format_events",
    "format_graph",
    "parse_dsg",
    "parse_events",
    "parse_graph",
    "read_dsgs",
    "triplet_prf",
    "triplet_recall",
    "write_jsonl_atomic",
]
