"""LVDM's attention blocks, for ``UNet3D`` with ``arch="lvdm-t2v"`` / ``"lvdm-short"``: the layouts of LVDM's
released text-to-video and short-video UNets (He et al. 2022; ``research/backbones.md`` §2.3), so that their
checkpoints load tensor for tensor (``dysen.convert.lvdm``), plus Dysen's DSG cross-attention, zero-initialised.

* ``LVDMTransformer`` (text-to-video; LVDM's ``SpatialTemporalTransformer`` with one ``BasicTransformerBlockST``):
  clip-wise GroupNorm -> 1x1 projection -> per block, each sub-layer pre-LayerNorm with a residual:

      spatial self-attn -> temporal self-attn -> [DSG cross-attn] -> text cross-attn -> temporal self-attn -> FF

  -> zero-initialised 1x1 projection, + input. Temporal attention adds Shaw et al.'s (2018) relative positions to
  its keys and values (``ShawTemporalAttention``); LVDM zero-initialises its q, k, v and output. The DSG sub-layer
  sits where Dysen-VDM's code puts its ``attn3`` (``dysen_spec.md`` §4.2), frame-aligned as in ``UNet3D``.
* ``LVDMSTAttention`` (short-video models; LVDM's ``STAttentionBlock``): ADM-style attention with a fused 1x1
  ``qkv``, first over each frame's pixels, then over time per pixel with relative positions, each zero-initialised at
  its output; then, for Dysen, a zero-initialised DSG cross-attention.

Activations are ``[B*T, C, H, W]`` channels-last, as in ``layers.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dysen.models.layers import (
    ClipGroupNorm,
    FeedForward,
    FrameAlignedCrossAttention,
    GroupNorm32,
    frames_to_clip,
    frames_to_tokens,
    tokens_to_frames,
    zero_,
)


class HeadAttention(nn.Module):
    """Multi-head attention with separate q, k, v projections (no bias) and a biased output, by SDPA (LDM's
    ``CrossAttention``); self-attention when ``context_dim`` is None. ``mask``: boolean, True = attend."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, length, c = x.shape  # [N, L, C]
        context = x if context is None else context  # [N, S, Dc]
        q, k, v = (
            proj(src).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [N, heads, L|S, d]
            for proj, src in ((self.to_q, x), (self.to_k, context), (self.to_v, context))
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [N, heads, L, d]
        return self.to_out(out.transpose(1, 2).reshape(n, length, c))  # [N, L, C]


class RelativePositionTable(nn.Module):
    """Shaw et al. (2018) relative position vectors r(j - i), distances clipped to ±``max_distance``: a table of
    ``2 * max_distance + 1`` rows of width ``dim`` (Xavier-initialised, as LVDM's ``RelativePosition``)."""

    def __init__(self, dim: int, max_distance: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Parameter(nn.init.xavier_uniform_(torch.empty(2 * max_distance + 1, dim)))

    def forward(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, device=self.table.device)
        rel = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance)  # [T, T]: j - i
        return self.table[rel + self.max_distance]  # [T, T, dim]


class ShawTemporalAttention(HeadAttention):
    """Self-attention over time per pixel with relative positions on keys and values (LVDM's
    ``TemporalCrossAttention`` without context; Shaw et al. 2018, eqs. 3-4):

        a_ij = softmax_j((q_i · k_j + q_i · r^K_(j-i)) / sqrt(d)),   out_i = Σ_j a_ij (v_j + r^V_(j-i))

    q, k, v and the output start at zero (LVDM), so the layer starts as the identity of its residual."""

    def __init__(self, dim: int, heads: int, max_distance: int) -> None:
        super().__init__(dim, heads)
        for layer in (self.to_q, self.to_k, self.to_v, self.to_out):
            zero_(layer)
        self.rel_k = RelativePositionTable(dim // heads, max_distance)
        self.rel_v = RelativePositionTable(dim // heads, max_distance)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        bt, hw, c = x.shape  # [B*T, H*W, C]
        b, heads, d = bt // num_frames, self.heads, c // self.heads

        def per_pixel(proj: nn.Linear) -> torch.Tensor:
            y = proj(x).view(b, num_frames, hw, heads, d)  # [B, T, H*W, h, d]
            return y.permute(0, 2, 3, 1, 4).reshape(b * hw, heads, num_frames, d)  # [B*H*W, h, T, d]

        q, k, v = per_pixel(self.to_q), per_pixel(self.to_k), per_pixel(self.to_v)
        r_k, r_v = self.rel_k(num_frames).to(q.dtype), self.rel_v(num_frames).to(q.dtype)  # [T, T, d]
        scores = (q @ k.transpose(-1, -2) + torch.einsum("nhid,ijd->nhij", q, r_k)) * d**-0.5  # [B*H*W, h, T, T]
        probs = scores.softmax(dim=-1)
        out = probs @ v + torch.einsum("nhij,ijd->nhid", probs, r_v)  # [B*H*W, h, T, d]
        out = out.view(b, hw, heads, num_frames, d).permute(0, 3, 1, 2, 4).reshape(bt, hw, c)  # [B*T, H*W, C]
        return self.to_out(out)


class LVDMTransformerBlock(nn.Module):
    """LVDM's ``BasicTransformerBlockST`` (+ Dysen's DSG cross-attention): see the module docstring."""

    def __init__(
        self,
        dim: int,
        heads: int,
        text_dim: int | None,
        dsg_dim: int | None,
        dsg_mode: str,
        max_distance: int,
        ff_mult: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.norm_self, self.attn_self = nn.LayerNorm(dim), HeadAttention(dim, heads)
        self.norm_time1, self.attn_time1 = nn.LayerNorm(dim), ShawTemporalAttention(dim, heads, max_distance)
        self.norm_dsg = nn.LayerNorm(dim) if dsg_dim else None
        self.attn_dsg = FrameAlignedCrossAttention(dim, dsg_dim, dim // heads, dsg_mode) if dsg_dim else None
        self.norm_text = nn.LayerNorm(dim) if text_dim else None
        self.attn_text = HeadAttention(dim, heads, context_dim=text_dim) if text_dim else None
        self.norm_time2, self.attn_time2 = nn.LayerNorm(dim), ShawTemporalAttention(dim, heads, max_distance)
        self.norm_ff, self.ff = nn.LayerNorm(dim), FeedForward(dim, ff_mult, dropout)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        text: tuple[torch.Tensor, torch.Tensor] | None,
        graph_cond: tuple[torch.Tensor, ...] | None,
    ) -> torch.Tensor:
        bt, hw, c = x.shape  # [B*T, H*W, C]
        x = x + self.attn_self(self.norm_self(x))
        x = x + self.attn_time1(self.norm_time1(x), num_frames)
        if self.attn_dsg is not None and graph_cond is not None:
            x = x + self.attn_dsg(self.norm_dsg(x), *graph_cond[:3])  # tokens, mask, frame_to_sg
        if self.attn_text is not None and text is not None:
            tokens, mask = text  # [B, L, Dt], [B, L]
            q = self.norm_text(x).view(bt // num_frames, num_frames * hw, c)  # [B, T*H*W, C]: the same keys per frame
            x = x + self.attn_text(q, tokens, mask=mask.bool()[:, None, None, :]).view(bt, hw, c)
        x = x + self.attn_time2(self.norm_time2(x), num_frames)
        return x + self.ff(self.norm_ff(x))  # [B*T, H*W, C]


class LVDMTransformer(nn.Module):
    """LVDM's ``SpatialTemporalTransformer``: clip-wise GN (eps 1e-6) -> Linear in -> blocks -> Linear out
    (zero-initialised), + residual, on ``[B*T, C, H, W]``. LVDM's 1x1x1 convs are these Linears."""

    def __init__(
        self,
        dim: int,
        heads: int,
        groups: int,
        depth: int = 1,
        ff_mult: int = 4,
        text_dim: int | None = None,
        dsg_dim: int | None = None,
        dsg_mode: str = "aligned",
        max_distance: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = ClipGroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(
            LVDMTransformerBlock(dim, heads, text_dim, dsg_dim, dsg_mode, max_distance, ff_mult, dropout)
            for _ in range(depth)
        )
        self.proj_out = zero_(nn.Linear(dim, dim))

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        text: tuple[torch.Tensor, torch.Tensor] | None = None,
        graph_cond: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = self.proj_in(frames_to_tokens(self.norm(x, num_frames)))  # [B*T, H*W, C]
        for block in self.blocks:
            tokens = block(tokens, num_frames, text, graph_cond)
        return x + tokens_to_frames(self.proj_out(tokens), h, w)  # [B*T, C, H, W]


class LVDMSTAttention(nn.Module):
    """LVDM's ``STAttentionBlock`` (short-video UNets) + Dysen's DSG cross-attention: see the module docstring.

    Spatial: per-frame GN -> 1x1 ``qkv`` -> attention over the frame's pixels -> zero-init 1x1 out, + residual.
    Temporal: GN over (channels of a group, time) per pixel -> 1x1 ``qkv`` -> attention over time with relative
    positions -> zero-init 1x1 out, + residual. LVDM's temporal key term is transposed and scaled once by
    d^(-1/4) (``backbones.md`` §2.3): query i gets q_j · r^K_(i-j) / d^(1/4) for key j; the released weights were
    trained so, and it is kept. The value term is Shaw's, Σ_j a_ij r^V_(j-i). LVDM's 1D 1x1 convs are Linears here.
    """

    def __init__(
        self, dim: int, heads: int, groups: int, max_distance: int, dsg_dim: int | None, dsg_mode: str
    ) -> None:
        super().__init__()
        self.heads = heads
        self.norm_space, self.qkv_space = GroupNorm32(groups, dim), nn.Linear(dim, 3 * dim)
        self.out_space = zero_(nn.Linear(dim, dim))
        self.norm_time, self.qkv_time = GroupNorm32(groups, dim), nn.Linear(dim, 3 * dim)
        self.out_time = zero_(nn.Linear(dim, dim))
        self.rel_k = RelativePositionTable(dim // heads, max_distance)
        self.rel_v = RelativePositionTable(dim // heads, max_distance)
        self.norm_dsg = nn.LayerNorm(dim) if dsg_dim else None
        self.attn_dsg = FrameAlignedCrossAttention(dim, dsg_dim, dim // heads, dsg_mode) if dsg_dim else None

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        text: tuple[torch.Tensor, torch.Tensor] | None = None,
        graph_cond: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """``text`` is accepted for the UNet's uniform call and unused: LVDM's short models are unconditional."""
        bt, c, h, w = x.shape
        b, heads, d = bt // num_frames, self.heads, c // self.heads
        q, k, v = (
            self.qkv_space(frames_to_tokens(self.norm_space(x))).unflatten(-1, (3, heads, d)).permute(2, 0, 3, 1, 4)
        )  # 3 x [B*T, h, H*W, d]
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bt, h * w, c)  # [B*T, H*W, C]
        x = x + tokens_to_frames(self.out_space(out), h, w)  # [B*T, C, H, W]

        clip = frames_to_clip(x, num_frames).permute(0, 3, 1, 2).reshape(b * h * w, c, num_frames)  # [B*H*W, C, T]
        tokens = self.norm_time(clip).transpose(1, 2)  # [B*H*W, T, C]
        q, k, v = self.qkv_time(tokens).unflatten(-1, (3, heads, d)).permute(2, 0, 3, 1, 4)  # 3 x [B*H*W, h, T, d]
        r_k, r_v = self.rel_k(num_frames).to(q.dtype), self.rel_v(num_frames).to(q.dtype)  # [T, T, d]: r(j - i)
        key_term = torch.einsum("nhjd,ijd->nhij", q, r_k.transpose(0, 1)) * d**-0.25  # q_j · r^K_(i-j), LVDM's
        scores = q @ k.transpose(-1, -2) * d**-0.5 + key_term  # [B*H*W, h, T, T]
        probs = scores.to(torch.promote_types(q.dtype, torch.float32)).softmax(dim=-1).to(q.dtype)  # LVDM: >= fp32
        out = probs @ v + torch.einsum("nhij,ijd->nhid", probs, r_v)  # [B*H*W, h, T, d]
        out = self.out_time(out.permute(0, 2, 1, 3).reshape(b * h * w, num_frames, c))  # [B*H*W, T, C]
        out = out.view(b, h * w, num_frames, c).transpose(1, 2).reshape(bt, h * w, c)  # [B*T, H*W, C]
        tokens = frames_to_tokens(x) + out  # [B*T, H*W, C]
        if self.attn_dsg is not None and graph_cond is not None:
            tokens = tokens + self.attn_dsg(self.norm_dsg(tokens), *graph_cond[:3])
        return tokens_to_frames(tokens.contiguous(), h, w)  # [B*T, C, H, W]
