"""Shared blocks of the dysen networks: time embedding, norms, attention, feed-forward, ResBlock, transformers.

The blocks follow LDM/LVDM (Rombach et al. 2022; He et al. 2022, ``openaimodel3d.py`` and ``attention_temporal.py``;
see ``research/backbones.md`` §2.3) and the Dysen-VDM block of Fei et al. (CVPR 2024, §4.2 of ``dysen_spec.md``).

Memory format. A video activation lives as ``[B*T, C, H, W]`` in **channels-last** memory, i.e. the bytes are
ordered ``[B, T, H, W, C]``. That one memory format serves every op without copies:
- 2D convs, GroupNorm and nearest upsampling run natively channels-last (oneDNN on CPU, cuDNN NHWC on GPU);
- per-frame tokens ``[B*T, H*W, C]`` and per-video tokens ``[B, T*H*W, C]`` are views (``frames_to_tokens``);
- a temporal 3x1x1 conv is a 2D ``(3, 1)`` conv on the channels-last view ``[B, C, T, H*W]`` (``TemporalConv``).
Only temporal attention regroups data: its q, k, v and output (not the block's input, norms or FF), by pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------------------------
# memory-format helpers (all views, no copies)


def frames_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` channels-last -> ``[N, H*W, C]`` (a view)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # [N, H*W, C]


def tokens_to_frames(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[N, H*W, C]`` contiguous -> ``[N, C, H, W]`` channels-last (a view)."""
    n, _, c = x.shape
    return x.reshape(n, h, w, c).permute(0, 3, 1, 2)  # [N, C, H, W]


def frames_to_clip(x: torch.Tensor, t: int) -> torch.Tensor:
    """``[B*T, C, H, W]`` channels-last -> ``[B, C, T, H*W]`` channels-last (a view): the clip as one 2D map."""
    bt, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(bt // t, t, h * w, c).permute(0, 3, 1, 2)  # [B, C, T, H*W]


def clip_to_frames(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of ``frames_to_clip``: ``[B, C, T, H*W]`` channels-last -> ``[B*T, C, H, W]`` channels-last."""
    b, c, t, _ = x.shape
    return x.permute(0, 2, 3, 1).reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # [B*T, C, H, W]


# ---------------------------------------------------------------------------------------------------------------------
# timestep embedding (DDPM/LDM: sinusoidal features, then an MLP)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps ``t [B]`` -> ``[B, dim]`` (LDM order: cos, then sin)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # [B, dim/2]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, 2*(dim/2)]
    return F.pad(emb, (0, dim % 2))  # [B, dim]


class TimestepEmbedder(nn.Module):
    """``t [B]`` -> ``[B, emb_dim]``: sinusoidal features of width ``dim`` through Linear-SiLU-Linear."""

    def __init__(self, dim: int, emb_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.dim).to(self.mlp[0].weight.dtype))  # [B, emb_dim]


# ---------------------------------------------------------------------------------------------------------------------
# normalisation


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in at least float32 (LDM), per frame: a frame's statistics never leak into another frame, so
    only the declared temporal layers mix time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(_norm_dtype(x))).to(x.dtype)  # [B*T, C, H, W]


def _norm_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype norms compute in: at least float32 (half precision is upcast, float64 kept)."""
    return torch.promote_types(x.dtype, torch.float32)


class ClipGroupNorm(nn.GroupNorm):
    """GroupNorm (in at least float32) whose statistics span a whole clip, as LVDM's, which normalises
    ``[B, C, T, H, W]``: each group's mean and variance are taken over its channels and all T frames. Input
    ``[B*T, C, H, W]``."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        h, w = x.shape[-2:]
        dtype = _norm_dtype(x)
        clip = frames_to_clip(x, num_frames).to(dtype)  # [B, C, T, H*W]
        out = F.group_norm(clip, self.num_groups, self.weight.to(dtype), self.bias.to(dtype), self.eps)
        return clip_to_frames(out.to(x.dtype), h, w)  # [B*T, C, H, W]


def group_norm(norm: nn.GroupNorm, x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``norm(x)`` for a per-frame ``GroupNorm32`` or a ``ClipGroupNorm`` (which needs the clip length)."""
    return norm(x, num_frames) if isinstance(norm, ClipGroupNorm) else norm(x)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (zero-initialised residual branches start as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


# ---------------------------------------------------------------------------------------------------------------------
# attention and feed-forward


class _SplitHeads(torch.autograd.Function):
    """``[N, L, parts*C]`` -> ``parts`` strided views ``[N, heads, L, d]``; the backward writes the parts' gradients
    straight into one ``[N, L, parts*C]`` buffer (autograd's ``unbind`` would ``stack`` them, then copy once more to
    undo the permute)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, parts: int, heads: int) -> tuple[torch.Tensor, ...]:
        n, length, width = x.shape
        ctx.shape = (n, length, parts, heads, width // (parts * heads))
        views = x.view(ctx.shape).permute(2, 0, 3, 1, 4).unbind(0)
        return tuple(v.view_as(v) for v in views)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor, None, None]:
        n, length, parts, heads, d = ctx.shape
        like = next(g for g in grads if g is not None)
        grad = like.new_empty(n, length, parts, heads, d)  # [N, L, parts, heads, d]
        for i, g in enumerate(grads):
            if g is None:
                grad[:, :, i].zero_()
            else:
                grad[:, :, i].copy_(g.transpose(1, 2))  # [N, L, heads, d]
        return grad.view(n, length, parts * heads * d), None, None


class Attention(nn.Module):
    """Multi-head attention by ``F.scaled_dot_product_attention``; self-attention when ``context_dim`` is None.

    ``mask`` is boolean, broadcastable to ``[N, heads, L, S]`` (True = attend); a query with no key to attend gets a
    zero update (not NaN, not the output bias).
    """

    def __init__(self, dim: int, head_dim: int, context_dim: int | None = None, zero_out: bool = False) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"attention width {dim} is not a multiple of head_dim {head_dim}")
        self.heads, self.head_dim = dim // head_dim, head_dim
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(context_dim, 2 * dim, bias=False)
        else:
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = zero_(nn.Linear(dim, dim)) if zero_out else nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """``[N, L, parts*C]`` -> ``parts`` strided views ``[N, heads, L, head_dim]``."""
        n, length, _ = x.shape
        if parts > 1 and torch.is_grad_enabled() and x.requires_grad:
            return _SplitHeads.apply(x, parts, self.heads)
        return x.view(n, length, parts, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, length, c = x.shape  # [N, L, C]
        if self.is_cross:
            (q,) = self._split(self.to_q(x), 1)  # [N, heads, L, d]
            k, v = self._split(self.to_kv(context), 2)  # [N, heads, S, d]
        else:
            q, k, v = self._split(self.to_qkv(x), 3)  # [N, heads, L, d]
        keep = None
        if mask is not None:
            keep = mask.any(dim=-1, keepdim=True)  # [N, 1|heads, L|1, 1]: does the query see any key?
            mask = mask | ~keep  # let empty rows attend everywhere (finite), then zero their update below
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [N, heads, L, d]
        out = self.to_out(out.transpose(1, 2).reshape(n, length, c))  # [N, L, C]
        return out if keep is None else out * keep.any(dim=1)  # [N, L, C]; zero for queries with no key


def _attention_with_learned_bias(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for short sequences (temporal attention), written out with batched GEMMs.

    SDPA's fused CPU kernel does not differentiate an additive bias, so a learned bias sends it to its unfused math
    path; for short sequences this explicit form is about 2x faster than that path.
    """
    n, heads, length, d = q.shape
    s = k.shape[2]
    q, k, v = (x.reshape(n * heads, -1, d) for x in (q, k, v))  # [N*heads, L|S, d]
    bias = bias.expand(n, heads, length, s).reshape(n * heads, length, s)  # [N*heads, L, S]
    probs = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=d**-0.5).softmax(dim=-1)  # [N*heads, L, S]
    return torch.bmm(probs, v).view(n, heads, length, d)  # [N, heads, L, d]


class _GEGLUProjection(torch.autograd.Function):
    """``a * gelu(gate)`` with ``[a, gate] = x W^T + b`` (``W [2*inner, C]``), on ``x [N, C]``, hand-differentiated.

    The usual ``linear(x).chunk(2, -1)`` leaves ``a`` and ``gate`` as strided halves of one ``[N, 2*inner]`` tensor,
    and ATen's CPU GELU and its backward run about 2x slower on such strided halves than on contiguous ones; autograd
    then also ``cat``s the halves' gradients back together. Here each half is its own GEMM into a contiguous buffer,
    and the backward writes the weight gradient's halves in place. Same parameters, exact (erf) GELU.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        inner = weight.shape[0] // 2
        a = torch.addmm(bias[:inner], x, weight[:inner].t())  # [N, inner]
        gate = torch.addmm(bias[inner:], x, weight[inner:].t())  # [N, inner]
        gelu_gate = F.gelu(gate)
        ctx.save_for_backward(x, weight, a, gate, gelu_gate)
        return gelu_gate.mul(a)  # [N, inner]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, weight, a, gate, gelu_gate = ctx.saved_tensors
        inner = weight.shape[0] // 2
        grad_out = grad_out.contiguous()
        grad_a = grad_out * gelu_gate  # [N, inner]
        grad_gate = torch.ops.aten.gelu_backward(grad_out * a, gate)  # [N, inner]
        grad_x = torch.addmm(torch.mm(grad_a, weight[:inner]), grad_gate, weight[inner:])  # [N, C]
        grad_w = torch.empty_like(weight)  # [2*inner, C]
        torch.mm(grad_a.t(), x, out=grad_w[:inner])
        torch.mm(grad_gate.t(), x, out=grad_w[inner:])
        grad_b = torch.cat([grad_a.sum(0), grad_gate.sum(0)])  # [2*inner]
        return grad_x, grad_w, grad_b


def geglu_projection(x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
    """``[..., C] -> [..., inner]``: ``a * gelu(gate)`` with ``a, gate = proj(x).chunk(2, -1)``."""
    if torch.is_autocast_enabled(x.device.type):  # mixed precision: let autocast cast the plain ops
        a, gate = proj(x).chunk(2, dim=-1)  # 2 x [..., inner]
        return a * F.gelu(gate)
    lead, c = x.shape[:-1], x.shape[-1]
    out = _GEGLUProjection.apply(x.reshape(-1, c), proj.weight, proj.bias)  # [N, inner]
    return out.view(*lead, -1)


class FeedForward(nn.Module):
    """GEGLU feed-forward (Shazeer 2020), as in LDM's ``BasicTransformerBlock``: ``[..., C] -> [..., C]``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner = dim * mult
        self.proj_in = nn.Linear(dim, 2 * inner)
        self.drop = nn.Dropout(dropout)
        self.proj_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.drop(geglu_projection(x, self.proj_in)))  # [..., inner] -> [..., C]


class RelativePositionBias(nn.Module):
    """Learned per-head bias of the temporal distance ``j - i``, clipped to ``±max_distance`` (Shaw et al. 2018)."""

    def __init__(self, heads: int, max_distance: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1))

    def forward(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, device=self.table.device)
        rel = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance)  # [T, T]
        return self.table[:, rel + self.max_distance].unsqueeze(0)  # [1, heads, T, T]


# ---------------------------------------------------------------------------------------------------------------------
# convolutions


class TemporalConv(nn.Module):
    """A 3x1x1 conv over time on ``[B*T, C, H, W]``, run as a ``(3, 1)`` 2D conv on the view ``[B, C, T, H*W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=(3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        return clip_to_frames(self.conv(frames_to_clip(x, num_frames)), h, w)  # [B*T, C, H, W]


class ResBlock(nn.Module):
    """LDM ResBlock applied per frame: GN-SiLU-conv, + time embedding, GN-SiLU-dropout-conv (zero-init), + skip.

    ``temporal_conv`` makes each 3x3 conv (2+1)D (Tran et al. 2018): a 3x1x1 temporal conv follows it as a
    zero-initialised residual, so a (2+1)D block starts as its 2D self. ``clip_norm`` takes GroupNorm statistics
    over the whole clip (LVDM); ``scale_shift`` applies the time embedding as FiLM after the second norm,
    h = GN(h)(1 + s) + b (ADM's ``use_scale_shift_norm``, LVDM's short-video models).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        groups: int,
        temporal_conv: bool = False,
        dropout: float = 0.0,
        clip_norm: bool = False,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        norm = ClipGroupNorm if clip_norm else GroupNorm32
        self.norm1 = norm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.scale_shift = scale_shift
        self.emb = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = norm(groups, out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.tconv1 = zero_(TemporalConv(out_ch)) if temporal_conv else None
        self.tconv2 = zero_(TemporalConv(out_ch)) if temporal_conv else None
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        h = self.conv1(F.silu(group_norm(self.norm1, x, num_frames)))  # [B*T, C', H, W]
        if self.tconv1 is not None:
            h = h + self.tconv1(h, num_frames)
        e = self.emb(F.silu(emb)).repeat_interleave(num_frames, 0)[:, :, None, None]  # [B*T, C' or 2C', 1, 1]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)  # [B*T, C', 1, 1] each
            h = group_norm(self.norm2, h, num_frames) * (1 + scale) + shift
        else:
            h = group_norm(self.norm2, h + e, num_frames)
        h = self.conv2(self.drop(F.silu(h)))  # [B*T, C', H, W]
        if self.tconv2 is not None:
            h = h + self.tconv2(h, num_frames)
        return self.skip(x) + h


class Downsample(nn.Module):
    """Spatial-only 2x downsampling (stride-2 3x3 conv per frame), as LVDM's stride (1, 2, 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # [B*T, C, H/2, W/2]


class Upsample(nn.Module):
    """Spatial-only 2x nearest upsampling then a 3x3 conv per frame."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # [B*T, C, 2H, 2W]


# ---------------------------------------------------------------------------------------------------------------------
# transformer blocks (LVDM ``SpatialTemporalTransformer`` / Dysen-VDM ``BasicTransformerBlockST``)


class FrameAlignedCrossAttention(nn.Module):
    """Cross-attention from video tokens to the RGTrm's keys of a DSG (Dysen-VDM §4.2): per scene-graph step its
    pooled token (``readout="steps"``), or its pooled token and its nodes (``readout="nodes"``).

    ``"aligned"``: latent frame t attends only to the keys m with ``frame_to_sg[b, t, m]`` (and ``mask[b, m]``); a
    frame with no such key gets a zero update. ``"broadcast"``: every frame attends to every valid key, as the
    official code does. The output projection is zero-initialised, so at initialisation the DSG changes nothing.
    """

    def __init__(self, dim: int, context_dim: int, head_dim: int, mode: str = "aligned") -> None:
        super().__init__()
        if mode not in ("aligned", "broadcast"):
            raise ValueError(f"DSG cross-attention mode must be 'aligned' or 'broadcast', got {mode!r}")
        self.mode = mode
        self.attn = Attention(dim, head_dim, context_dim=context_dim, zero_out=True)

    def forward(
        self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, frame_to_sg: torch.Tensor
    ) -> torch.Tensor:
        b, t, m = frame_to_sg.shape
        bt, hw, c = x.shape  # [B*T, H*W, C]
        if self.mode == "broadcast":
            out = self.attn(x.view(b, t * hw, c), tokens, mask=mask.bool()[:, None, None, :])  # [B, T*H*W, C]
            return out.view(bt, hw, c)
        active = (frame_to_sg.bool() & mask.bool()[:, None, :]).reshape(bt, 1, 1, m)  # [B*T, 1, 1, M]
        context = tokens[:, None].expand(b, t, m, tokens.shape[-1]).reshape(bt, m, -1)  # [B*T, M, Dg]
        return self.attn(x, context, mask=active)  # [B*T, H*W, C]


class SpatialBlock(nn.Module):
    """Per-frame sub-layers, pre-LayerNorm + residual: self-attention -> DSG cross-attn -> text cross-attn -> FF."""

    def __init__(
        self,
        dim: int,
        head_dim: int,
        text_dim: int | None,
        dsg_dim: int | None,
        dsg_mode: str,
        ff_mult: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.norm_self, self.attn_self = nn.LayerNorm(dim), Attention(dim, head_dim)
        self.norm_dsg = nn.LayerNorm(dim) if dsg_dim else None
        self.attn_dsg = FrameAlignedCrossAttention(dim, dsg_dim, head_dim, dsg_mode) if dsg_dim else None
        self.norm_text = nn.LayerNorm(dim) if text_dim else None
        self.attn_text = Attention(dim, head_dim, context_dim=text_dim) if text_dim else None
        self.norm_ff, self.ff = nn.LayerNorm(dim), FeedForward(dim, ff_mult, dropout)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        text: tuple[torch.Tensor, torch.Tensor] | None,
        graph_cond: tuple[torch.Tensor, ...] | None,
    ) -> torch.Tensor:
        """``graph_cond``: a ``GraphCondition`` (or its first three tensors: tokens, mask, frame_to_sg)."""
        bt, hw, c = x.shape  # [B*T, H*W, C]
        x = x + self.attn_self(self.norm_self(x))
        if self.attn_dsg is not None and graph_cond is not None:
            x = x + self.attn_dsg(self.norm_dsg(x), *graph_cond[:3])  # tokens, mask, frame_to_sg (not the objects)
        if self.attn_text is not None and text is not None:
            tokens, mask = text  # [B, L, Dt], [B, L]
            q = self.norm_text(x).view(bt // num_frames, num_frames * hw, c)  # [B, T*H*W, C]: same keys per frame
            x = x + self.attn_text(q, tokens, mask=mask.bool()[:, None, None, :]).view(bt, hw, c)
        return x + self.ff(self.norm_ff(x))  # [B*T, H*W, C]


class TemporalBlock(nn.Module):
    """Per-pixel sub-layers over time, pre-LayerNorm + residual: self-attention with relative positions -> FF.

    The attention output is zero-initialised (LVDM zero-initialises its temporal attention), so at initialisation no
    information crosses frames here: the model starts per-frame and learns to mix frames.
    """

    def __init__(self, dim: int, head_dim: int, max_distance: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm_attn, self.attn = nn.LayerNorm(dim), Attention(dim, head_dim, zero_out=True)
        self.rel_pos = RelativePositionBias(self.attn.heads, max_distance)
        self.norm_ff, self.ff = nn.LayerNorm(dim), FeedForward(dim, ff_mult, dropout)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bt, hw, c = x.shape  # [B*T, H*W, C]; norms, projections and FF are per token: they keep this memory order
        b, heads, d = bt // num_frames, self.attn.heads, self.attn.head_dim
        qkv = self.attn.to_qkv(self.norm_attn(x)).view(b, num_frames, hw, 3, heads, d)  # [B, T, H*W, 3, h, d]
        q, k, v = qkv.permute(3, 0, 2, 4, 1, 5).reshape(3, b * hw, heads, num_frames, d)  # 3 x [B*H*W, h, T, d]
        out = _attention_with_learned_bias(q, k, v, self.rel_pos(num_frames))  # [B*H*W, h, T, d]
        out = out.view(b, hw, heads, num_frames, d).permute(0, 3, 1, 2, 4).reshape(bt, hw, c)  # [B*T, H*W, C]
        x = x + self.attn.to_out(out)
        return x + self.ff(self.norm_ff(x))  # [B*T, H*W, C]


class SpatioTemporalTransformer(nn.Module):
    """GN -> Linear in -> depth x (spatial block, temporal block) -> Linear out, + residual, on ``[B*T, C, H, W]``."""

    def __init__(
        self,
        dim: int,
        head_dim: int,
        groups: int,
        depth: int = 1,
        ff_mult: int = 4,
        text_dim: int | None = None,
        dsg_dim: int | None = None,
        dsg_mode: str = "aligned",
        temporal_max_distance: int | None = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = GroupNorm32(groups, dim)
        self.proj_in = nn.Linear(dim, dim)
        self.spatial = nn.ModuleList(
            SpatialBlock(dim, head_dim, text_dim, dsg_dim, dsg_mode, ff_mult, dropout) for _ in range(depth)
        )
        n_temporal = depth if temporal_max_distance is not None else 0
        self.temporal = nn.ModuleList(
            TemporalBlock(dim, head_dim, temporal_max_distance, ff_mult, dropout) for _ in range(n_temporal)
        )
        self.proj_out = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        text: tuple[torch.Tensor, torch.Tensor] | None = None,
        graph_cond: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = self.proj_in(frames_to_tokens(self.norm(x)))  # [B*T, H*W, C]
        for i, block in enumerate(self.spatial):
            tokens = block(tokens, num_frames, text, graph_cond)
            if self.temporal:
                tokens = self.temporal[i](tokens, num_frames)
        return x + tokens_to_frames(self.proj_out(tokens), h, w)  # [B*T, C, H, W]
