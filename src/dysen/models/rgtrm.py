"""RGTrm: the recurrent graph Transformer that turns a dynamic scene graph into tokens for the 3D-UNet.

Dysen-VDM §3.4 and Fig. 2; dysen_spec.md §4.1 (the paper and the unrunnable official code), §9.2.

Graph (``GraphBatch``). Each scene graph is typed nodes and typed edges, as in the paper's figure:
object nodes, one attribute node per ``(object, attribute)`` fact and one relation node per
``(subject, predicate, object)`` fact (predicates are nodes). Edges subject→relation, relation→object,
object→attribute, plus the three reverse types, so information flows both ways. Node inputs are the
text encoder's pooled embeddings of the node labels (dysen_spec.md §9.2) plus a node-type embedding.

Layer (``GraphTransformerLayer``). Pre-norm multi-head attention over the nodes of one scene graph,
restricted to graph neighbours, the node itself and the memory cells, then a feed-forward block.
Edge features: the official layer (Dwivedi & Bresson 2021) multiplies attention scores by projected
edge features, which only re-weights messages. We use **relation-aware keys and values** (Shaw et al.
2018, as in RAT-SQL): a learned vector per edge type is added to the key *and* the value of each
neighbour. The value term is what lets a relation node tell its subject from its object —
``(circle, left of, square)`` vs ``(square, left of, circle)`` would otherwise receive the same
messages — and it costs ``O(N² + N·R)`` per head, never an ``[N, N, D]`` edge tensor.

Recurrence (``MemoryUpdater``): MART (Lei et al., ACL 2020). Every layer keeps ``memory_cells``
memory vectors; a step's nodes read them as extra keys in that layer's attention, then the memory is
updated from the step: ``s = Attn(m, [m; nodes])``, ``c = tanh(W_mc m + W_sc s)``,
``z = σ(W_mz m + W_sz s)``, ``m' = (1 − z) ⊙ c + z ⊙ m``. The memory starts from a learned state
(MART initialises it from the first step, which is undefined for an empty first graph), and ``m``
itself is among the update's keys, so empty scene graphs and padded nodes never give NaN. Steps are
processed in order, so step ``m``'s token depends on steps ``≤ m`` only.

Readout: attention pooling of each graph's nodes with a learned query, plus a learned "null" key so an
empty graph pools to a learned vector (the official code mean-pools, which an empty graph cannot do).
``readout="steps"`` gives the UNet that one token per scene graph; ``readout="nodes"`` gives it the pooled
token *and* every node of the graph (objects, attributes, relations), all aligned to the graph's frames.
With one token per frame, cross-attention has a single key, so its softmax is 1 and every position of the
frame receives the same vector: the DSG can say what happens, but not where. With the nodes, positions can
attend to different objects ("this blob is the red circle, which moves right"), as they do to caption words.

Layout (``layout=True``): for DSGs with boxes, ``forward`` also returns a ``Layout``: for every frame and every
object present, the object's node state at the frame's step plus an embedding of its action's progress
(``dysen.dsg.layout``), with its box; the UNet paints these into the latent cells the boxes cover.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from dysen.dsg.convert import align_steps_to_frames
from dysen.dsg.layout import frame_layout
from dysen.errors import DysenError
from dysen.models.pretrained import Pretrained

if TYPE_CHECKING:
    from dysen.dsg.types import DynamicSceneGraph, SceneGraph
    from dysen.encoders.text import TextEncoder

NODE_TYPES = ("object", "attribute", "relation")
EDGE_TYPES = ("subject", "object", "attribute", "subject_rev", "object_rev", "attribute_rev")
"""Edge ``(source, target)`` types: subject→relation, relation→object, object→attribute, then their reverses."""

_SELF, _MEMORY = 0, 1
"""Key codes inside attention: the node itself, a memory cell, then ``2 + edge type``; -1 = not attended."""
_NUM_CODES = 2 + len(EDGE_TYPES)


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


@dataclass(frozen=True)
class RGTrmConfig:
    """Sizes of the recurrent graph Transformer (dysen_spec.md §4.1: the UNet-internal code uses 4 layers)."""

    label_dim: int = 384
    """Width of the label embeddings: the text encoder's pooled width (MiniLM 384, CLIP ViT-L/14 768)."""
    dim: int = 256
    """Hidden and output width D."""
    num_layers: int = 4
    """Graph-Transformer layers L, each with its own memory."""
    num_heads: int = 8
    """Attention heads (D must be divisible by it)."""
    ff_mult: int = 4
    """Feed-forward hidden width as a multiple of D."""
    memory_cells: int = 1
    """Memory vectors per layer (MART's n_memory_cells)."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches."""
    readout: Literal["steps", "nodes"] = "steps"
    """What ``forward`` gives the UNet per scene graph: its pooled token, or the pooled token and its nodes."""
    layout: bool = False
    """Also ground each object in its boxes (``Layout``): for DSGs with boxes, the UNet learns *where*."""
    orientation: bool = False
    """With ``layout``: also embed each object's turn (``Box.angle``) in its layout token, to draw it turned."""


class RGTrmOutput(NamedTuple):
    """Per-step tokens for cross-attention, their mask and frame alignment, and the node states."""

    tokens: torch.Tensor  # [B, M, D], zero on padded steps
    mask: torch.Tensor  # [B, M] bool
    frame_to_sg: torch.Tensor  # [B, T, M] bool
    nodes: torch.Tensor  # [B, M, N, D], zero on padded nodes
    node_mask: torch.Tensor  # [B, M, N] bool


class Layout(NamedTuple):
    """The objects present at every frame, for the UNet's layout maps (``dysen.models.unet3d``)."""

    tokens: torch.Tensor  # [B, T, K, D]: the object's node state at the frame's step + its progress embedding
    boxes: torch.Tensor  # [B, T, K, 4]: (x0, y0, x1, y1) in [0, 1]
    mask: torch.Tensor  # [B, T, K] bool
    angles: torch.Tensor | None = None  # [B, T, K]: clockwise turn, radians (``Box.angle``)


class DSGCondition(NamedTuple):
    """What the UNet receives from the RGTrm: cross-attention keys aligned to frames, and optionally a layout."""

    tokens: torch.Tensor  # [B, K, D]
    mask: torch.Tensor  # [B, K] bool
    frame_to_sg: torch.Tensor  # [B, T, K] bool, which frames see each key
    layout: Layout | None = None

    def dropped(self, drop: torch.Tensor) -> DSGCondition:
        """The null DSG for the rows where ``drop`` [B] is True: every key and every placed object masked out."""
        layout = self.layout
        if layout is not None:
            layout = layout._replace(mask=layout.mask & ~drop[:, None, None])
        return self._replace(mask=self.mask & ~drop[:, None], layout=layout)


class GraphTransformerLayer(nn.Module):
    """Pre-norm relation-aware multi-head attention over neighbours + self + memory, then a feed-forward block."""

    def __init__(self, config: RGTrmConfig) -> None:
        super().__init__()
        self.heads = config.num_heads
        self.norm1 = nn.LayerNorm(config.dim)
        self.to_q = nn.Linear(config.dim, config.dim)
        self.to_kv = nn.Linear(config.dim, 2 * config.dim)
        self.code_k = nn.Embedding(_NUM_CODES, config.dim)
        self.code_v = nn.Embedding(_NUM_CODES, config.dim)
        self.to_out = nn.Linear(config.dim, config.dim)
        self.norm2 = nn.LayerNorm(config.dim)
        self.ff = nn.Sequential(
            nn.Linear(config.dim, config.ff_mult * config.dim),
            nn.GELU(),
            nn.Linear(config.ff_mult * config.dim, config.dim),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``x`` [B, N, D] nodes, ``memory`` [B, C, D], ``codes`` [B, N, C+N] key codes (-1: masked)."""
        batch, nodes, dim = x.shape
        heads, width = self.heads, dim // self.heads
        h = self.norm1(torch.cat([memory, x], dim=1))  # [B, C+N, D]
        q = self.to_q(h[:, memory.shape[1] :]).view(batch, nodes, heads, width).transpose(1, 2)  # [B, H, N, d]
        k, v = self.to_kv(h).view(batch, -1, 2, heads, width).permute(2, 0, 3, 1, 4)  # 2 x [B, H, C+N, d]
        code_k = self.code_k.weight.view(_NUM_CODES, heads, width).transpose(0, 1)  # [H, R, d]
        code_v = self.code_v.weight.view(_NUM_CODES, heads, width).transpose(0, 1)  # [H, R, d]
        index = codes.clamp_min(0).unsqueeze(1).expand(-1, heads, -1, -1)  # [B, H, N, C+N]
        scores = q @ k.transpose(-1, -2) + (q @ code_k.transpose(-1, -2)).gather(-1, index)  # [B, H, N, C+N]
        scores = scores.masked_fill(codes.unsqueeze(1) < 0, float("-inf")) / width**0.5
        attn = self.dropout(scores.softmax(-1))  # [B, H, N, C+N]; every row holds at least "self"
        per_code = torch.zeros(*attn.shape[:3], _NUM_CODES, dtype=attn.dtype, device=attn.device)
        per_code = per_code.scatter_add(-1, index, attn)  # [B, H, N, R]: attention mass per key code
        out = attn @ v + per_code @ code_v  # [B, H, N, d]
        x = x + self.dropout(self.to_out(out.transpose(1, 2).reshape(batch, nodes, dim)))  # [B, N, D]
        return x + self.dropout(self.ff(self.norm2(x)))  # [B, N, D]


class MemoryUpdater(nn.Module):
    """MART's gated memory update: ``m' = (1 − z) ⊙ tanh(W_mc m + W_sc s) + z ⊙ m``, ``s = Attn(m, [m; nodes])``."""

    def __init__(self, config: RGTrmConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dim)
        self.attention = nn.MultiheadAttention(config.dim, config.num_heads, dropout=config.dropout, batch_first=True)
        self.candidate = nn.Linear(2 * config.dim, config.dim)
        self.gate = nn.Linear(2 * config.dim, config.dim)

    def forward(self, memory: torch.Tensor, x: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """``memory`` [B, C, D], ``x`` [B, N, D], ``node_mask`` [B, N] -> the updated memory [B, C, D]."""
        keys = self.norm(torch.cat([memory, x], dim=1))  # [B, C+N, D]
        ignore = torch.cat([torch.zeros_like(memory[..., 0], dtype=torch.bool), ~node_mask], dim=1)  # [B, C+N]
        queries = keys[:, : memory.shape[1]]  # [B, C, D]
        mask = _padding_mask(ignore, queries.shape[1], self.attention.num_heads)
        summary, _ = self.attention(queries, keys, keys, attn_mask=mask, need_weights=False)
        both = torch.cat([memory, summary], dim=-1)  # [B, C, 2D]
        z = torch.sigmoid(self.gate(both))  # [B, C, D]
        return (1 - z) * torch.tanh(self.candidate(both)) + z * memory  # [B, C, D]


class AttentionPool(nn.Module):
    """One token per graph: a learned query attends over a learned null token and the graph's nodes."""

    def __init__(self, config: RGTrmConfig) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02)
        self.null = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02)
        self.attention = nn.MultiheadAttention(config.dim, config.num_heads, dropout=config.dropout, batch_first=True)

    def forward(self, nodes: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """``nodes`` [B, N, D], ``node_mask`` [B, N] -> [B, D]."""
        batch = nodes.shape[0]
        keys = torch.cat([self.null.expand(batch, -1, -1), nodes], dim=1)  # [B, 1+N, D]
        ignore = torch.cat([node_mask.new_zeros(batch, 1), ~node_mask], dim=1)  # [B, 1+N]
        mask = _padding_mask(ignore, 1, self.attention.num_heads)
        pooled, _ = self.attention(self.query.expand(batch, -1, -1), keys, keys, attn_mask=mask, need_weights=False)
        return pooled[:, 0]  # [B, D]


class ObjectGrounding(nn.Module):
    """Per frame and present object: its node state at the frame's step plus an embedding of its action's progress.

    Progress ``p`` in (0, 1] enters as Fourier features ``sin(π k p), cos(π k p)``, k = 1..F, with an idle flag
    (NeRF-style; Mildenhall et al. 2020 eq. 4), so a fade's opacity or a jump's height can follow ``p``. With
    ``config.orientation`` the object's turn θ adds the harmonics ``sin(k θ), cos(k θ)``, k = 1..H: a shape
    with n-fold symmetry looks the same at θ and θ + 2π/n, and harmonic n is exactly what it shows.
    """

    frequencies = 4
    harmonics = 6  # covers the 3-, 4- and 5-fold symmetry of Dynamic Shapes' triangle, square and star

    def __init__(self, config: RGTrmConfig) -> None:
        super().__init__()
        self.progress = nn.Sequential(
            nn.Linear(2 * self.frequencies + 1, config.dim), nn.SiLU(), nn.Linear(config.dim, config.dim)
        )
        self.orientation = (
            nn.Sequential(nn.Linear(2 * self.harmonics, config.dim), nn.SiLU(), nn.Linear(config.dim, config.dim))
            if config.orientation
            else None
        )

    def forward(self, nodes: torch.Tensor, batch: GraphBatch) -> Layout:
        """``nodes`` [B, M, N, D] (``RGTrmOutput.nodes``) -> ``Layout`` of ``batch``'s layout fields."""
        fields = [batch.layout_node, batch.layout_box, batch.layout_progress, batch.layout_mask]
        fields += [batch.layout_angle] if self.orientation is not None else []
        if any(field is None for field in fields):
            raise GraphError("the GraphBatch has no layout fields: build it with GraphBatch.from_dsgs")
        b, m, n, d = nodes.shape
        index = batch.layout_node.reshape(b, -1, 1).expand(-1, -1, d)  # [B, T*K, D]
        picked = nodes.reshape(b, m * n, d).gather(1, index).view(*batch.layout_node.shape, d)  # [B, T, K, D]
        progress = batch.layout_progress  # [B, T, K], -1 when idle
        idle = (progress < 0).unsqueeze(-1)  # [B, T, K, 1]
        k = torch.arange(1, self.frequencies + 1, device=nodes.device, dtype=nodes.dtype)  # [F]
        angles = torch.pi * progress.clamp_min(0).unsqueeze(-1).to(nodes.dtype) * k  # [B, T, K, F]
        features = torch.cat([angles.sin(), angles.cos()], dim=-1).masked_fill(idle, 0.0)  # [B, T, K, 2F]
        features = torch.cat([features, idle.to(nodes.dtype)], dim=-1)  # [B, T, K, 2F+1]
        tokens = picked + self.progress(features)  # [B, T, K, D]
        if self.orientation is not None:
            h = torch.arange(1, self.harmonics + 1, device=nodes.device, dtype=nodes.dtype)  # [H]
            turns = batch.layout_angle.unsqueeze(-1).to(nodes.dtype) * h  # [B, T, K, H]
            tokens = tokens + self.orientation(torch.cat([turns.sin(), turns.cos()], dim=-1))
        mask = batch.layout_mask  # [B, T, K]
        tokens = tokens * mask.unsqueeze(-1)  # [B, T, K, D]
        angles = None if batch.layout_angle is None else batch.layout_angle.to(nodes.dtype)
        return Layout(tokens, batch.layout_box.to(nodes.dtype), mask, angles)


def _padding_mask(ignore: torch.Tensor, queries: int, heads: int) -> torch.Tensor:
    """Key padding ``ignore`` [B, S] (True: padding) as ``nn.MultiheadAttention``'s ``attn_mask`` [B·heads, L, S].

    The same masking as ``key_padding_mask``, without its shape check, whose ``torch._check_with`` imports
    ``torch.fx.experimental.symbolic_shapes`` on first use: ~1 s of a fresh ``dysen generate`` on 2 cores.
    """
    return ignore[:, None, None, :].expand(-1, heads, queries, -1).flatten(0, 1)


class RGTrm(nn.Module, Pretrained):
    """Recurrent graph Transformer: ``RGTrm(batch) -> (tokens [B, M, D], mask [B, M], frame_to_sg [B, T, M])``."""

    config_class = RGTrmConfig

    def __init__(self, config: RGTrmConfig) -> None:
        super().__init__()
        if config.dim % config.num_heads:
            raise GraphError(f"RGTrm dim {config.dim} is not divisible by num_heads {config.num_heads}")
        if config.readout not in ("steps", "nodes"):
            raise GraphError(f"RGTrm readout must be 'steps' or 'nodes', got {config.readout!r}")
        self.config = config
        self.label_norm = nn.LayerNorm(config.label_dim)
        self.label_proj = nn.Linear(config.label_dim, config.dim)
        self.type_embedding = nn.Embedding(len(NODE_TYPES), config.dim)
        self.layers = nn.ModuleList(GraphTransformerLayer(config) for _ in range(config.num_layers))
        self.updaters = nn.ModuleList(MemoryUpdater(config) for _ in range(config.num_layers))
        self.initial_memory = nn.Parameter(torch.randn(config.num_layers, config.memory_cells, config.dim) * 0.02)
        self.out_norm = nn.LayerNorm(config.dim)
        self.pool = AttentionPool(config)
        self.grounding = ObjectGrounding(config) if config.layout else None

    def forward(self, batch: GraphBatch) -> DSGCondition:
        """The UNet's DSG keys [B, K, D], their mask [B, K], which frames see each [B, T, K] (see ``encode``), and
        with ``config.layout`` the ``Layout`` of the objects in their boxes.

        ``readout="steps"``: K = M, one pooled token per scene graph. ``readout="nodes"``: K = M·(1 + N), per
        scene graph its pooled token then its N node slots (padded nodes masked), each seen by that graph's frames.
        """
        out = self.encode(batch)
        layout = self.grounding(out.nodes, batch) if self.grounding is not None else None
        if self.config.readout == "steps":
            return DSGCondition(out.tokens, out.mask, out.frame_to_sg, layout)
        b, m, n, d = out.nodes.shape
        keys = torch.cat([out.tokens.unsqueeze(2), out.nodes], dim=2).reshape(b, m * (1 + n), d)  # [B, K, D]
        node_mask = out.node_mask & out.mask.unsqueeze(-1)  # [B, M, N]
        mask = torch.cat([out.mask.unsqueeze(-1), node_mask], dim=2).reshape(b, m * (1 + n))  # [B, K]
        frame_to_key = out.frame_to_sg.repeat_interleave(1 + n, dim=2)  # [B, T, K]
        return DSGCondition(keys, mask, frame_to_key, layout)

    def encode(self, batch: GraphBatch) -> RGTrmOutput:
        """Run the layers step by step, carrying each layer's memory from one scene graph to the next."""
        x = self._embed_nodes(batch)  # [B, M, N, D]
        codes = self._key_codes(batch)  # [B, M, N, C+N]
        memory = list(self.initial_memory.unsqueeze(1).expand(-1, x.shape[0], -1, -1))  # L x [B, C, D]
        tokens, nodes = [], []
        for m in range(x.shape[1]):
            h, node_mask, real = x[:, m], batch.node_mask[:, m], batch.step_mask[:, m, None, None]
            for i, (layer, updater) in enumerate(zip(self.layers, self.updaters, strict=True)):
                h = layer(h, memory[i], codes[:, m])  # [B, N, D]
                memory[i] = torch.where(real, updater(memory[i], h, node_mask), memory[i])  # [B, C, D]
            h = self.out_norm(h)  # [B, N, D]
            nodes.append(h * node_mask.unsqueeze(-1))
            tokens.append(self.pool(h, node_mask))
        step_mask = batch.step_mask
        token_tensor = torch.stack(tokens, dim=1) * step_mask.unsqueeze(-1)  # [B, M, D]
        return RGTrmOutput(token_tensor, step_mask, batch.frame_to_sg, torch.stack(nodes, dim=1), batch.node_mask)

    def _embed_nodes(self, batch: GraphBatch) -> torch.Tensor:
        """Projected label embeddings plus node-type embeddings, [B, M, N, D]."""
        table = batch.label_embeddings
        if table is None:
            raise GraphError("the GraphBatch has no label embeddings: call batch.with_label_embeddings(text_encoder)")
        if table.shape != (len(batch.labels), self.config.label_dim):
            raise GraphError(
                f"label embeddings have shape {tuple(table.shape)}, expected ({len(batch.labels)}, "
                f"{self.config.label_dim}): was the text encoder's width RGTrmConfig.label_dim?"
            )
        labels = self.label_proj(self.label_norm(table.to(self.label_proj.weight.dtype)))  # [V, D]
        x = labels[batch.node_label] + self.type_embedding(batch.node_type)  # [B, M, N, D]
        return x * batch.node_mask.unsqueeze(-1)

    def _key_codes(self, batch: GraphBatch) -> torch.Tensor:
        """For each query node, the code of each key (memory cells, then nodes): [B, M, N, C+N]; -1 = masked."""
        b, m, n = batch.node_mask.shape
        node_codes = torch.full((b, m, n, n), -1, dtype=torch.long, device=batch.node_mask.device)  # [B, M, N, N]
        node_codes.diagonal(dim1=-2, dim2=-1).fill_(_SELF)
        bi, mi, ei = batch.edge_mask.nonzero(as_tuple=True)
        source, target = batch.edge_index[bi, mi, ei].unbind(-1)  # [K] each
        node_codes[bi, mi, target, source] = 2 + batch.edge_type[bi, mi, ei]  # the target attends to the source
        memory_codes = node_codes.new_full((b, m, n, self.config.memory_cells), _MEMORY)  # [B, M, N, C]
        return torch.cat([memory_codes, node_codes], dim=-1)
