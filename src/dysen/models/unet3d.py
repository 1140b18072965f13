"""The Dysen-VDM denoiser: an LVDM-style 3D-UNet with text and frame-aligned dynamic-scene-graph cross-attention.

Backbone: LVDM's text-to-video ``UNetModel`` (He et al. 2022; ``research/backbones.md`` §2.3, ``dysen_spec.md`` §5.2):
an LDM UNet whose convs work per frame (2D, or (2+1)D with a 3x1x1 temporal conv), spatial-only down/up-sampling, and
at the attention resolutions a spatio-temporal transformer. Each transformer block is (Dysen-VDM, Fei et al. CVPR 2024,
§4.2 / ``dysen_spec.md`` §4.2):

    spatial self-attn (per frame) -> DSG cross-attn -> text cross-attn -> FF -> temporal self-attn (rel. pos.) -> FF

The DSG path differs from the official code on purpose: latent frame t attends only to the scene-graph steps aligned to
it (``frame_to_sg [B, T, M]``, from ``dysen.dsg.convert.align_steps_to_frames``), where the code repeats all M step
tokens for every frame (kept as ``dsg_cross_attention="broadcast"``). Its output projection is zero-initialised, so
adding the DSG to a trained text-to-video UNet starts as the identity.

``arch`` "lvdm-t2v" / "lvdm-short" build LVDM's released UNets instead, tensor for tensor (``lvdm_blocks``:
clip-wise GroupNorm, LVDM's block order and relative positions, FiLM ResBlocks for the short models), with the same
zero-initialised DSG cross-attention; ``dysen convert lvdm`` loads LVDM's checkpoints into them.

Shapes and memory format: ``[B, C, T, H, W]`` at the interface; inside, ``[B*T, C, H, W]`` in channels-last memory
(see ``layers.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dysen.errors import DysenError
from dysen.models.layers import (
    ClipGroupNorm,
    Downsample,
    GroupNorm32,
    ResBlock,
    SpatioTemporalTransformer,
    TimestepEmbedder,
    Upsample,
    group_norm,
    zero_,
)
from dysen.models.lvdm_blocks import LVDMSTAttention, LVDMTransformer
from dysen.models.pretrained import Pretrained
from dysen.models.rgtrm import GraphCondition, PlacedObjects

Text = tuple[torch.Tensor, torch.Tensor]  # tokens [B, L, Dt], mask [B, L]
# GraphCondition: tokens [B, M, Dg], mask [B, M], frame_to_sg [B, T, M], placed objects (or None); a 3-tuple works


class UNet3DError(DysenError, ValueError):
    """A UNet3D config or input is inconsistent (the message names the field or tensor and what it should be)."""


@dataclass(frozen=True)
class UNet3DConfig:
    """Architecture of ``UNet3D``; defaults are a small text+DSG model for 8x32x32 latents."""

    in_channels: int = 4  # latent channels of z_t
    out_channels: int = 4  # channels of the prediction (eps or v)
    model_channels: int = 64  # width of the first level; the time embedding is 4x this
    channel_mult: tuple[int, ...] = (1, 2, 4)  # width of each level, in units of model_channels
    num_res_blocks: int = 2  # ResBlocks per level on the way down (one more on the way up)
    attention_resolutions: tuple[int, ...] = (2, 4)  # downsampling factors with a transformer (the middle always has)
    head_dim: int = 32  # channels per attention head (heads = width / head_dim), unless num_heads is set
    num_heads: int | None = None  # heads of every attention layer (head width = width / num_heads; LVDM: 8 or 4)
    transformer_depth: int = 1  # (spatial block, temporal block) pairs per transformer
    ff_mult: int | tuple[int, ...] = 4  # GEGLU feed-forward hidden width in block widths; a tuple: one per level
    norm_groups: int = 32  # GroupNorm groups (must divide every level's width)
    text_dim: int = 384  # width of the text tokens (all-MiniLM-L6-v2: 384; CLIP-L: 768)
    dsg_dim: int = 256  # width of the RGTrm scene-graph tokens
    use_text_cross_attention: bool = True  # text cross-attention in every spatial block
    dsg_cross_attention: str = "aligned"  # "aligned" (frame t sees its steps), "broadcast" (official code), "off"
    use_temporal_attention: bool = True  # temporal self-attention over T per pixel in every transformer
    temporal_max_distance: int = 16  # relative positions are clipped to +-this many latent frames
    conv: str = "2d"  # "2d": per-frame 3x3 convs (LVDM); "2+1d": each followed by a 3x1x1 temporal conv
    layout: bool = False  # add the DSG's layout maps (objects painted into their boxes) at every level
    layout_frames: bool = False  # also paint each object's own turned coordinates (u, v) into its box; needs layout
    gradient_checkpointing: bool = False  # recompute each block in backward (torch.utils.checkpoint) when training
    dropout: float = 0.0  # dropout in ResBlocks and feed-forwards
    arch: str = "dysen"  # "dysen"; "lvdm-t2v" / "lvdm-short": LVDM's layouts, whose checkpoints load (module doc)

    def __post_init__(self) -> None:
        if isinstance(self.ff_mult, list):  # from YAML / JSON
            object.__setattr__(self, "ff_mult", tuple(self.ff_mult))
        if isinstance(self.ff_mult, tuple) and len(self.ff_mult) != len(self.channel_mult):
            raise UNet3DError(f"ff_mult {self.ff_mult} must be one int or one per level of channel_mult")
        widths = [self.model_channels * m for m in self.channel_mult]
        ff_mults = list(self.ff_mult) if isinstance(self.ff_mult, tuple) else [self.ff_mult]
        if not widths or min(widths + [self.num_res_blocks, self.transformer_depth] + ff_mults) < 1:
            raise UNet3DError("model_channels, channel_mult, num_res_blocks, transformer_depth, ff_mult must be >= 1")
        heads_of = "num_heads" if self.num_heads else "head_dim"
        if any(w % self.norm_groups or w % (self.num_heads or self.head_dim) for w in widths):
            raise UNet3DError(f"every level width {widths} must be a multiple of norm_groups and {heads_of}")
        if self.arch not in ("dysen", "lvdm-t2v", "lvdm-short"):
            raise UNet3DError(f"arch must be dysen, lvdm-t2v or lvdm-short, got {self.arch!r}")
        if self.arch != "dysen" and (self.conv != "2d" or not self.use_temporal_attention):
            raise UNet3DError(f"arch {self.arch!r} is LVDM's layout: it needs conv '2d' and temporal attention")
        if self.arch == "lvdm-short" and self.use_text_cross_attention:
            raise UNet3DError(
                "arch 'lvdm-short' (LVDM's unconditional UNet) has no text cross-attention: set "
                "use_text_cross_attention false"
            )
        if self.conv not in ("2d", "2+1d"):
            raise UNet3DError(f"conv must be '2d' or '2+1d', got {self.conv!r}")
        if self.dsg_cross_attention not in ("aligned", "broadcast", "off"):
            raise UNet3DError(
                f"dsg_cross_attention must be aligned, broadcast or off, got {self.dsg_cross_attention!r}"
            )
        if self.temporal_max_distance < 1 or not 0.0 <= self.dropout < 1.0:
            raise UNet3DError("temporal_max_distance must be >= 1 and dropout in [0, 1)")
        if self.layout_frames and not self.layout:
            raise UNet3DError("layout_frames paints into the layout maps: it needs layout: true")

    def heads_at(self, width: int) -> int:
        """Attention heads of a layer ``width`` channels wide."""
        return self.num_heads or width // self.head_dim

    def ff_mult_at(self, level: int) -> int:
        """The feed-forward multiplier of the transformers at ``level`` (the middle block uses the last level's)."""
        return self.ff_mult[level] if isinstance(self.ff_mult, tuple) else self.ff_mult


class UNetBlock(nn.Module):
    """One block of the UNet's down, middle or up path: an optional ResBlock, then an optional transformer, then an
    optional resampler."""

    def __init__(
        self,
        res: ResBlock | None = None,
        attn: nn.Module | None = None,
        resample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.res, self.attn, self.resample = res, attn, resample

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, num_frames: int, text: Text | None, graph_cond: GraphCondition | None
    ) -> torch.Tensor:
        if self.res is not None:
            x = self.res(x, emb, num_frames)  # [B*T, C', H, W]
        if self.attn is not None:
            x = self.attn(x, num_frames, text, graph_cond)  # [B*T, C', H, W]
        if self.resample is not None:
            x = self.resample(x)  # [B*T, C', H/2 or 2H, W/2 or 2W]
        return x


class UNet3D(nn.Module, Pretrained):
    """``UNet3D(z_t [B, C, T, h, w], t [B], text, graph_cond) -> [B, C_out, T, h, w]`` (see the module docstring)."""

    config_class = UNet3DConfig

    def __init__(self, config: UNet3DConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or UNet3DConfig()
        ch, emb_dim = cfg.model_channels, 4 * cfg.model_channels
        self.time_embed = TimestepEmbedder(ch, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.down, skips, ds = nn.ModuleList(), [ch], 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(UNetBlock(self._res(ch, mult * cfg.model_channels), self._attn(level, ds)))
                ch = mult * cfg.model_channels
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(UNetBlock(resample=Downsample(ch)))
                skips.append(ch)
                ds *= 2
        mid_attn = self._attn(len(cfg.channel_mult) - 1, None)
        self.mid = nn.ModuleList([UNetBlock(self._res(ch, ch), mid_attn), UNetBlock(self._res(ch, ch))])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                out = mult * cfg.model_channels
                upsample = Upsample(out) if level > 0 and i == cfg.num_res_blocks else None
                self.up.append(UNetBlock(self._res(ch + skips.pop(), out), self._attn(level, ds), upsample))
                ch = out
            ds //= 2
        level_widths = [cfg.model_channels * m for m in (1, *cfg.channel_mult[:-1])]  # stem, then each downsample
        self.layout_in = LayoutMaps(cfg.dsg_dim, level_widths, cfg.layout_frames) if cfg.layout else None
        self.norm_out = (GroupNorm32 if cfg.arch == "dysen" else ClipGroupNorm)(cfg.norm_groups, ch)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels, 3, padding=1)

    def _res(self, in_ch: int, out_ch: int) -> ResBlock:
        cfg = self.config
        return ResBlock(
            in_ch, out_ch, 4 * cfg.model_channels, cfg.norm_groups, cfg.conv == "2+1d", cfg.dropout,
            clip_norm=cfg.arch != "dysen", scale_shift=cfg.arch == "lvdm-short",
        )  # fmt: skip

    def _attn(self, level: int, ds: int | None) -> nn.Module | None:
        """The attention block of ``level`` at downsampling factor ``ds``, if configured (``ds=None``: the middle):
        a ``SpatioTemporalTransformer``, or LVDM's ``LVDMTransformer`` / ``LVDMSTAttention`` (``arch``)."""
        cfg = self.config
        if ds is not None and ds not in cfg.attention_resolutions:
            return None
        width = cfg.channel_mult[level] * cfg.model_channels
        text_dim = cfg.text_dim if cfg.use_text_cross_attention else None
        dsg_dim = cfg.dsg_dim if cfg.dsg_cross_attention != "off" else None
        dsg_mode = "broadcast" if cfg.dsg_cross_attention == "broadcast" else "aligned"
        if cfg.arch == "lvdm-short":
            return LVDMSTAttention(
                width, cfg.heads_at(width), cfg.norm_groups, cfg.temporal_max_distance, dsg_dim, dsg_mode
            )
        if cfg.arch == "lvdm-t2v":
            return LVDMTransformer(
                width, cfg.heads_at(width), cfg.norm_groups, depth=cfg.transformer_depth,
                ff_mult=cfg.ff_mult_at(level), text_dim=text_dim, dsg_dim=dsg_dim, dsg_mode=dsg_mode,
                max_distance=cfg.temporal_max_distance, dropout=cfg.dropout,
            )  # fmt: skip
        return SpatioTemporalTransformer(
            width,
            width // cfg.heads_at(width),
            cfg.norm_groups,
            depth=cfg.transformer_depth,
            ff_mult=cfg.ff_mult_at(level),
            text_dim=text_dim,
            dsg_dim=dsg_dim,
            dsg_mode=dsg_mode,
            temporal_max_distance=cfg.temporal_max_distance if cfg.use_temporal_attention else None,
            dropout=cfg.dropout,
        )

    def forward(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor | float,
        text: Text | None = None,
        graph_cond: GraphCondition | None = None,
    ) -> torch.Tensor:
        """Predict from the noisy latents ``z_t [B, C, T, h, w]``; ``text``/``graph_cond`` None drops that condition
        (CFG); ``graph_cond`` is the RGTrm's ``GraphCondition`` of the DSG."""
        b, _, frames, h, w = z_t.shape
        graph_cond = None if graph_cond is None else GraphCondition(*graph_cond)
        self._check_inputs(z_t, graph_cond)
        t = torch.as_tensor(t, device=z_t.device).reshape(-1).expand(b)  # [B]
        emb = self.time_embed(t)  # [B, 4*model_channels]
        x = z_t.permute(0, 2, 3, 4, 1).reshape(b * frames, h, w, -1).permute(0, 3, 1, 2)  # [B*T, C, h, w] NHWC
        objects = graph_cond.objects if graph_cond is not None and self.layout_in is not None else None
        level = 0
        x = self._add_layout(self.conv_in(x), objects, level)  # [B*T, model_channels, h, w]
        skips = [x]
        for block in self.down:
            x = self._run(block, x, emb, frames, text, graph_cond)
            if isinstance(block.resample, Downsample):
                level += 1
                x = self._add_layout(x, objects, level)
            skips.append(x)
        for block in self.mid:
            x = self._run(block, x, emb, frames, text, graph_cond)
        for block in self.up:
            x = self._run(block, torch.cat([x, skips.pop()], dim=1), emb, frames, text, graph_cond)  # [B*T, C+C', ..]
        x = self.conv_out(F.silu(group_norm(self.norm_out, x, frames)))  # [B*T, C_out, h, w]
        return x.permute(0, 2, 3, 1).reshape(b, frames, h, w, -1).permute(0, 4, 1, 2, 3).contiguous()

    def _add_layout(self, x: torch.Tensor, objects: PlacedObjects | None, level: int) -> torch.Tensor:
        return x if objects is None or self.layout_in is None else x + self.layout_in(x, objects, level)

    def _run(
        self,
        block: UNetBlock,
        x: torch.Tensor,
        emb: torch.Tensor,
        frames: int,
        text: Text | None,
        graph_cond: GraphCondition | None,
    ) -> torch.Tensor:
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, emb, frames, text, graph_cond, use_reentrant=False)
        return block(x, emb, frames, text, graph_cond)

    def _check_inputs(self, z_t: torch.Tensor, graph_cond: GraphCondition | None) -> None:
        cfg, factor = self.config, 2 ** (len(self.config.channel_mult) - 1)
        if z_t.ndim != 5 or z_t.shape[1] != cfg.in_channels:
            raise UNet3DError(f"z_t must be [B, {cfg.in_channels}, T, h, w], got {list(z_t.shape)}")
        if z_t.shape[-1] % factor or z_t.shape[-2] % factor:
            raise UNet3DError(f"latent h, w must be multiples of {factor}, got {list(z_t.shape[-2:])}")
        if graph_cond is not None:
            tokens, mask, frame_to_sg, objects = graph_cond
            b, _, frames = z_t.shape[:3]
            if cfg.layout and objects is not None and objects.mask.shape[:2] != (b, frames):
                raise UNet3DError(
                    f"placed objects must be [B, T, K] = [{b}, {frames}, K], got {list(objects.mask.shape)}"
                )
            m = tokens.shape[1]
            if mask.shape != (b, m) or frame_to_sg.shape != (b, frames, m):
                raise UNet3DError(
                    f"graph_cond mask must be [B, M] = {[b, m]} and frame_to_sg [B, T, M] = {[b, frames, m]} "
                    "(latent T), "
                    f"got {list(mask.shape)} and {list(frame_to_sg.shape)}"
                )


def box_coverage(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Share of each cell of a ``height`` x ``width`` grid on [0, 1]², covered per box: [..., 4] -> [..., H, W]."""
    x0, y0, x1, y1 = boxes.unbind(-1)  # [...] each
    xs = torch.linspace(0.0, 1.0, width + 1, device=boxes.device, dtype=boxes.dtype)  # [W+1] cell edges
    ys = torch.linspace(0.0, 1.0, height + 1, device=boxes.device, dtype=boxes.dtype)  # [H+1]
    cover_x = (torch.minimum(x1[..., None], xs[1:]) - torch.maximum(x0[..., None], xs[:-1])).clamp_min(0) * width
    cover_y = (torch.minimum(y1[..., None], ys[1:]) - torch.maximum(y0[..., None], ys[:-1])).clamp_min(0) * height
    return cover_y.unsqueeze(-1) * cover_x.unsqueeze(-2)  # [..., H, W]


def object_frames(boxes: torch.Tensor, angles: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each cell's coordinates in each box's own frame: boxes [..., 4], clockwise turns [...] -> [..., 2, H, W].

    Cell centres, in cell units (square cells), are taken relative to the box centre, turned back by the
    object's angle (u right, v up in its upright pose; ``dysen.world.geometry.inside`` uses the same
    convention) and divided by half the box's longer side, so ``(u, v)`` spans about [-1, 1] inside the box.
    """
    x0, y0, x1, y1 = (c * size for c, size in zip(boxes.unbind(-1), (width, height, width, height), strict=True))
    half = (torch.maximum(x1 - x0, y1 - y0) / 2).clamp_min(0.5)  # [...], at least half a cell
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5  # [W] cell centres
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5  # [H]
    dx = ((xs - ((x0 + x1) / 2)[..., None]) / half[..., None]).unsqueeze(-2)  # [..., 1, W]
    dy = ((ys - ((y0 + y1) / 2)[..., None]) / half[..., None]).unsqueeze(-1)  # [..., H, 1]
    cos, sin = angles.cos()[..., None, None], angles.sin()[..., None, None]  # [..., 1, 1]
    u = cos * dx + sin * dy  # [..., H, W]
    v = sin * dx - cos * dy  # [..., H, W]
    return torch.stack([u, v], dim=-3)  # [..., 2, H, W]


class LayoutMaps(nn.Module):
    """Layout tokens painted into the cells their boxes cover, projected to a level's width (zero-initialised).

    With ``frames``, each covered cell also gets its object's own coordinates ``(u, v)`` (``object_frames``):
    where the cell lies along the object's turned axes. A shape's outline is a few thresholds of ``u`` and ``v``
    (a triangle is three half-planes), so a turn becomes something the convolutions can draw. The coordinates
    are scaled by a gate in (0, 1) read from the object's token, so an object that is fading out (its progress
    is in the token) can fade its outline too (retrained ungated, ``shapes-tiny`` lost most of its
    disappearances: its model card).
    """

    def __init__(self, dim: int, widths: list[int], frames: bool = False) -> None:
        super().__init__()
        self.proj = nn.ModuleList(zero_(nn.Conv2d(dim + 2 * frames, width, 1)) for width in widths)
        self.gate = nn.Linear(dim, 1) if frames else None

    def forward(self, x: torch.Tensor, objects: PlacedObjects, level: int) -> torch.Tensor:
        """The map to add to ``x`` [B*T, C, h, w] at ``level``: Σ_k coverage_k · token_k (and the gated (u, v)
        with ``frames``), then the 1x1 conv."""
        h, w = x.shape[-2:]
        cover = box_coverage(objects.boxes, h, w) * objects.mask[..., None, None].to(x.dtype)  # [B, T, K, h, w]
        painted = torch.einsum("btkhw,btkd->btdhw", cover, objects.tokens.to(x.dtype)).flatten(0, 1)  # [B*T, D, h, w]
        if self.gate is not None:
            angles = objects.angles if objects.angles is not None else torch.zeros_like(objects.mask, dtype=x.dtype)
            coords = object_frames(objects.boxes.to(x.dtype), angles.to(x.dtype), h, w)  # [B, T, K, 2, h, w]
            coords = coords * torch.sigmoid(self.gate(objects.tokens.to(x.dtype)))[..., None, None]  # gate [B,T,K,1]
            frames = torch.einsum("btkhw,btkchw->btchw", cover, coords).flatten(0, 1)  # [B*T, 2, h, w]
            painted = torch.cat([painted, frames], dim=1)  # [B*T, D+2, h, w]
        return self.proj[level](painted.contiguous(memory_format=torch.channels_last))  # [B*T, C, h, w]
