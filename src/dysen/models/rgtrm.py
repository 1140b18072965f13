"""RGTrm: the recurrent graph Transformer that turns a dynamic scene graph into tokens for the 3D-UNet.

Dysen-VDM §3.4 and Fig. 2; dysen_spec.md §4.1 (the paper and the unrunnable official code), §9.2.

Graph (``GraphBatch``, ``dysen.models.graph_batch``). Each scene graph is typed nodes (objects, attributes,
relations) and typed edges, both ways, so information flows both ways. Node inputs are the text encoder's
pooled embeddings of the node labels (dysen_spec.md §9.2) plus a node-type embedding.

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

Layout grounding (``layout=True``): for DSGs with boxes, ``forward``'s ``GraphCondition`` also holds
``PlacedObjects``: for every frame and every object present, the object's node state at the frame's step plus an
embedding of its action's progress (``dysen.dsg.layout``), with its box; the UNet paints these into the latent
cells the boxes cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from dysen.models.graph_batch import EDGE_TYPES, NODE_TYPES, GraphBatch, GraphError
from dysen.models.pretrained import Pretrained

_SELF, _MEMORY = 0, 1
"""Key codes inside attention: the node itself, a memory cell, then ``2 + edge type``; -1 = not attended."""
_NUM_CODES = 2 + len(EDGE_TYPES)


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
    """Also ground each object in its boxes (``PlacedObjects``): for DSGs with boxes, the UNet learns *where*."""
    orientation: bool = False
    """With ``layout``: also embed each object's turn (``Box.angle``) in its layout token, to draw it turned."""


class RGTrmOutput(NamedTuple):
    """Per-step tokens for cross-attention, their mask and frame alignment, and the node states."""

    tokens: torch.Tensor  # [B, M, D], zero on padded steps
    mask: torch.Tensor  # [B, M] bool
    frame_to_sg: torch.Tensor  # [B, T, M] bool
    nodes: torch.Tensor  # [B, M, N, D], zero on padded nodes
    node_mask: torch.Tensor  # [B, M, N] bool


class PlacedObjects(NamedTuple):
    """The objects present at every frame, each a token in its box, for the UNet's layout maps (``unet3d``)."""

    tokens: torch.Tensor  # [B, T, K, D]: the object's node state at the frame's step + its progress embedding
    boxes: torch.Tensor  # [B, T, K, 4]: (x0, y0, x1, y1) in [0, 1]
    mask: torch.Tensor  # [B, T, K] bool
    angles: torch.Tensor | None = None  # [B, T, K]: clockwise turn, radians (``Box.angle``)


class GraphCondition(NamedTuple):
    """The tensors a DSG becomes for the UNet (the RGTrm's output): cross-attention keys aligned to frames, and
    with layout grounding its objects in their boxes."""

    tokens: torch.Tensor  # [B, K, D]
    mask: torch.Tensor  # [B, K] bool
    frame_to_sg: torch.Tensor  # [B, T, K] bool, which frames see each key
    objects: PlacedObjects | None = None

    def dropped(self, drop: torch.Tensor) -> GraphCondition:
        """The null DSG for the rows where ``drop`` [B] is True: every key and every placed object masked out."""
        drop = drop.to(self.mask.device)
        objects = self.objects
        if objects is not None:
            objects = objects._replace(mask=objects.mask & ~drop[:, None, None])
        return self._replace(mask=self.mask & ~drop[:, None], objects=objects)

    def expand(self, count: int) -> GraphCondition:
        """This batch of one repeated ``count`` times along the batch (views, no copies)."""
        objects = self.objects
        if objects is not None:
            objects = PlacedObjects(*(None if x is None else x.expand(count, *x.shape[1:]) for x in objects))
        return GraphCondition(
            self.tokens.expand(count, -1, -1),  # [P, K, D]
            self.mask.expand(count, -1),  # [P, K]
            self.frame_to_sg.expand(count, -1, -1),  # [P, T, K]
            objects,
        )


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

    def forward(self, nodes: torch.Tensor, batch: GraphBatch) -> PlacedObjects:
        """``nodes`` [B, M, N, D] (``RGTrmOutput.nodes``) -> ``PlacedObjects`` of ``batch``'s layout fields."""
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
        return PlacedObjects(tokens, batch.layout_box.to(nodes.dtype), mask, angles)


def _padding_mask(ignore: torch.Tensor, queries: int, heads: int) -> torch.Tensor:
    """Key padding ``ignore`` [B, S] (True: padding) as ``nn.MultiheadAttention``'s ``attn_mask`` [B·heads, L, S].

    The same masking as ``key_padding_mask``, without its shape check, whose ``torch._check_with`` imports
    ``torch.fx.experimental.symbolic_shapes`` on first use: ~1 s of a fresh ``dysen generate`` on 2 cores.
    """
    return ignore[:, None, None, :].expand(-1, heads, queries, -1).flatten(0, 1)


class RGTrm(nn.Module, Pretrained):
    """Recurrent graph Transformer: ``RGTrm(batch: GraphBatch) -> GraphCondition`` (keys, mask, frame alignment,
    and with ``config.layout`` the placed objects)."""

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

    def forward(self, batch: GraphBatch) -> GraphCondition:
        """The UNet's DSG keys [B, K, D], their mask [B, K], which frames see each [B, T, K] (see ``encode``), and
        with ``config.layout`` the ``PlacedObjects`` in their boxes.

        ``readout="steps"``: K = M, one pooled token per scene graph. ``readout="nodes"``: K = M·(1 + N), per
        scene graph its pooled token then its N node slots (padded nodes masked), each seen by that graph's frames.
        """
        out = self.encode(batch)
        objects = self.grounding(out.nodes, batch) if self.grounding is not None else None
        if self.config.readout == "steps":
            return GraphCondition(out.tokens, out.mask, out.frame_to_sg, objects)
        b, m, n, d = out.nodes.shape
        keys = torch.cat([out.tokens.unsqueeze(2), out.nodes], dim=2).reshape(b, m * (1 + n), d)  # [B, K, D]
        node_mask = out.node_mask & out.mask.unsqueeze(-1)  # [B, M, N]
        mask = torch.cat([out.mask.unsqueeze(-1), node_mask], dim=2).reshape(b, m * (1 + n))  # [B, K]
        frame_to_key = out.frame_to_sg.repeat_interleave(1 + n, dim=2)  # [B, T, K]
        return GraphCondition(keys, mask, frame_to_key, objects)

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
