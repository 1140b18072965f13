"""Dynamic scene graphs: the data model, Step II conversion, the paper's text format and DSG metrics.

Pure Python: nothing under ``dysen.dsg`` imports torch.
"""

from dysen.dsg.types import (
    SCHEMA_VERSION,
    Attribute,
    Box,
    DynamicSceneGraph,
    Event,
    Relation,
    SceneGraph,
    dsg_json_schema,
)

__all__ = [
    "SCHEMA_VERSION",
    "Attribute",
    "Box",
    "DynamicSceneGraph",
    "Event",
    "Relation",
    "SceneGraph",
    "dsg_json_schema",
]
