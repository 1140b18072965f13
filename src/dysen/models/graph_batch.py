"""``GraphBatch``: dynamic scene graphs as dense, padded tensors, the input of the RGTrm (``dysen.models.rgtrm``).

Each scene graph becomes typed nodes and typed edges, as in Dysen-VDM's Fig. 2: object nodes, one attribute node
per ``(object, attribute)`` fact and one relation node per ``(subject, predicate, object)`` fact (predicates are
nodes). Edges subject→relation, relation→object, object→attribute, plus the three reverse types. Padding is done
in numpy and turned into torch tensors once, so a DataLoader worker can build batches cheaply (``GraphCollate``).
For DSGs with boxes, the ``layout_*`` fields hold each frame's objects in their boxes (``dysen.dsg.layout``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from dysen.dsg.convert import align_steps_to_frames
from dysen.dsg.layout import frame_layout
from dysen.errors import DysenError

if TYPE_CHECKING:
    from dysen.dsg.types import DynamicSceneGraph, SceneGraph
    from dysen.encoders.text import TextEncoder

NODE_TYPES = ("object", "attribute", "relation")
EDGE_TYPES = ("subject", "object", "attribute", "subject_rev", "object_rev", "attribute_rev")
"""Edge ``(source, target)`` types: subject→relation, relation→object, object→attribute, then their reverses."""


class GraphError(DysenError):
    """A graph batch cannot be built or does not fit the RGTrm it is fed to."""


@dataclass(frozen=True, eq=False)
class GraphBatch:
    """A batch of DSGs as dense, padded tensors: ``M`` steps per DSG, ``N`` nodes and ``E`` edges per step."""

    labels: tuple[str, ...]
    """The label vocabulary: ``node_label`` indexes it, ``label_embeddings`` holds one row per label."""
    node_label: torch.Tensor  # [B, M, N] long
    node_type: torch.Tensor  # [B, M, N] long, index into NODE_TYPES
    node_mask: torch.Tensor  # [B, M, N] bool, True on real nodes
    edge_index: torch.Tensor  # [B, M, E, 2] long, (source, target) node positions within the step
    edge_type: torch.Tensor  # [B, M, E] long, index into EDGE_TYPES
    edge_mask: torch.Tensor  # [B, M, E] bool
    step_mask: torch.Tensor  # [B, M] bool, True on real steps
    frame_to_sg: torch.Tensor  # [B, T, M] bool, True where frame t shows step m
    label_embeddings: torch.Tensor | None = None  # [V, label_dim], set by with_label_embeddings
    layout_box: torch.Tensor | None = None  # [B, T, K, 4] float, (x0, y0, x1, y1) of each object present at frame t
    layout_node: torch.Tensor | None = None  # [B, T, K] long, its node in the step's graph, as m * N + n
    layout_progress: torch.Tensor | None = None  # [B, T, K] float, its action's progress; -1 when idle
    layout_angle: torch.Tensor | None = None  # [B, T, K] float, its clockwise turn in radians (Box.angle)
    layout_mask: torch.Tensor | None = None  # [B, T, K] bool; K = 0 when no DSG of the batch has boxes

    @classmethod
    def from_dsgs(
        cls, dsgs: Sequence[DynamicSceneGraph], num_frames: int, label_index: Mapping[str, int] | None = None
    ) -> GraphBatch:
        """Pad ``dsgs`` into one batch for videos of ``num_frames`` frames.

        ``label_index``: a fixed vocabulary (label -> id, ids ``0..V-1``); by default the unique labels of
        the batch, in order of first appearance.
        """
        if not dsgs:
            raise GraphError("GraphBatch.from_dsgs needs at least one DSG")
        vocab = _check_vocabulary(label_index) if label_index is not None else {}
        graphs = [[_graph_elements(sg) for sg in dsg.graphs] for dsg in dsgs]
        steps = max(len(g) for g in graphs)
        nodes = max(len(labels) for g in graphs for labels, _, _ in g)
        edges = max(len(e) for g in graphs for _, _, e in g)
        batch = len(dsgs)  # filled as numpy arrays (one torch tensor each at the end: ~3x faster in a collate)
        node_label = np.zeros((batch, steps, nodes), dtype=np.int64)  # [B, M, N]
        node_type = np.zeros((batch, steps, nodes), dtype=np.int64)  # [B, M, N]
        node_mask = np.zeros((batch, steps, nodes), dtype=bool)  # [B, M, N]
        edge_index = np.zeros((batch, steps, edges, 2), dtype=np.int64)  # [B, M, E, 2]
        edge_type = np.zeros((batch, steps, edges), dtype=np.int64)  # [B, M, E]
        edge_mask = np.zeros((batch, steps, edges), dtype=bool)  # [B, M, E]
        frame_to_sg = np.zeros((batch, num_frames, steps), dtype=bool)  # [B, T, M]
        step_mask = np.zeros((batch, steps), dtype=bool)  # [B, M]
        for b, dsg_graphs in enumerate(graphs):
            for m, (labels, types, graph_edges) in enumerate(dsg_graphs):
                node_label[b, m, : len(labels)] = [_label_id(vocab, x, label_index) for x in labels]
                node_type[b, m, : len(types)] = types
                node_mask[b, m, : len(labels)] = True
                if graph_edges:
                    edge_index[b, m, : len(graph_edges)] = [e[:2] for e in graph_edges]
                    edge_type[b, m, : len(graph_edges)] = [e[2] for e in graph_edges]
                    edge_mask[b, m, : len(graph_edges)] = True
            frame_to_sg[b, :, : len(dsg_graphs)] = align_steps_to_frames(len(dsg_graphs), num_frames).matrix()
            step_mask[b, : len(dsg_graphs)] = True
        arrays = (node_label, node_type, node_mask, edge_index, edge_type, edge_mask, step_mask, frame_to_sg)
        layout = {k: torch.from_numpy(v) for k, v in _layout_arrays(dsgs, num_frames, nodes).items()}
        return cls(tuple(sorted(vocab, key=vocab.__getitem__)), *(torch.from_numpy(a) for a in arrays), **layout)

    def with_label_embeddings(self, encoder: TextEncoder) -> GraphBatch:
        """This batch with ``label_embeddings`` = ``encoder.pooled(labels)`` (cached by the encoder)."""
        return dataclasses.replace(self, label_embeddings=encoder.pooled(list(self.labels)))

    def select(self, index: int) -> GraphBatch:
        """DSG ``index`` alone, as a batch of one (same label vocabulary)."""
        rows = {
            f.name: getattr(self, f.name)[index : index + 1]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor) and f.name != "label_embeddings"
        }
        return dataclasses.replace(self, **rows)

    def to(self, device: str | torch.device) -> GraphBatch:
        """The batch with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


def _layout_arrays(dsgs: Sequence[DynamicSceneGraph], num_frames: int, nodes: int) -> dict[str, np.ndarray]:
    """The ``layout_*`` fields of ``GraphBatch`` (``dysen.dsg.layout.frame_layout`` of each DSG, padded)."""
    layouts = [frame_layout(dsg, num_frames) for dsg in dsgs]
    width = max((len(objects) for layout in layouts if layout for objects in layout), default=0)  # K
    shape = (len(dsgs), num_frames, width)
    arrays = {
        "layout_box": np.zeros((*shape, 4), dtype=np.float32),
        "layout_node": np.zeros(shape, dtype=np.int64),
        "layout_progress": np.full(shape, -1.0, dtype=np.float32),
        "layout_angle": np.zeros(shape, dtype=np.float32),
        "layout_mask": np.zeros(shape, dtype=bool),
    }
    for b, (dsg, layout) in enumerate(zip(dsgs, layouts, strict=True)):
        if layout is None:
            continue
        alignment = align_steps_to_frames(dsg.num_steps, num_frames)
        for t, objects in enumerate(layout):
            step = alignment.steps_of_frame[t][0]
            position = {name: i for i, name in enumerate(dsg.graphs[step].objects)}
            for k, placed in enumerate(objects):
                arrays["layout_box"][b, t, k] = placed.box
                arrays["layout_node"][b, t, k] = step * nodes + position[placed.object]
                arrays["layout_progress"][b, t, k] = -1.0 if placed.progress is None else placed.progress
                arrays["layout_angle"][b, t, k] = placed.angle
                arrays["layout_mask"][b, t, k] = True
    return arrays


def _check_vocabulary(label_index: Mapping[str, int]) -> dict[str, int]:
    if sorted(label_index.values()) != list(range(len(label_index))):
        raise GraphError("label_index must map labels to the ids 0..V-1, each used once")
    return dict(label_index)


def _label_id(vocab: dict[str, int], label: str, fixed: Mapping[str, int] | None) -> int:
    if fixed is None:
        return vocab.setdefault(label, len(vocab))
    if label not in vocab:
        raise GraphError(f"node label {label!r} is not in the given label_index ({len(vocab)} labels)")
    return vocab[label]


def _graph_elements(graph: SceneGraph) -> tuple[list[str], list[int], list[tuple[int, int, int]]]:
    """Node labels, node types and ``(source, target, type)`` edges of one scene graph.

    An ordered node pair keeps its first edge only: a self-relation ``(x, p, x)`` would otherwise give
    the pair (relation, x) two edge types.
    """
    position = {name: i for i, name in enumerate(graph.objects)}
    labels, types = list(graph.objects), [0] * len(graph.objects)
    forward: list[tuple[int, int, int]] = []
    for fact in graph.attributes:
        forward.append((position[fact.object], len(labels), 2))
        labels.append(fact.attribute)
        types.append(1)
    for fact in graph.relations:
        forward += [(position[fact.subject], len(labels), 0), (len(labels), position[fact.object], 1)]
        labels.append(fact.predicate)
        types.append(2)
    edges: dict[tuple[int, int], int] = {}
    for source, target, kind in forward + [(t, s, k + 3) for s, t, k in forward]:
        edges.setdefault((source, target), kind)
    return labels, types, [(s, t, k) for (s, t), k in edges.items()]
