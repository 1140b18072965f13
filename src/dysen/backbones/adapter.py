"""A trained DSG adapter for a frozen backbone: the RGTrm's objects, in their boxes, into its blocks by attention.

Issue 25; GLIGEN (Li et al. 2023, §3.2) for video DiTs, as research notes ``backbones2026.md`` §6.3 option (a) lays it
out. Training-free control moves attention; it cannot teach a backbone what it draws badly. This module adds what
can be trained while the backbone stays frozen:

* **grounding tokens.** The project's RGTrm (with layout grounding, as in Dysen-VDM) gives, for every video frame
  and every object present, the object's node state plus an embedding of its action's progress, and its box
  (``PlacedObjects``). Each latent frame takes those of the middle video frame it packs (``latent_frame_spans``),
  and each becomes one token: g = MLP([node state; Fourier(box)]) (GLIGEN eq. 5: 8 frequencies of the 4
  coordinates), of the adapter's width (the backbone's unless ``width`` narrows it).
* **gated attention.** After every ``every``-th of the backbone's adapter sites (``Backbone.adapter_sites``: Wan's
  transformer blocks, shared by Wan 2.2 A14B's two experts; the UNet3D's spatial transformers, whose width grows
  with depth), the video tokens h [B, N, d] of latent frame f attend to the grounding tokens of latent frames
  f − n … f + n (and a learned null token, so a frame without objects attends to something), and
  h ← h + tanh(γ) · Attn(LN(h), g) (GLIGEN eq. 8, attention only: the full self-attention over [visual; grounding]
  tokens would cost a second 3D attention per block). γ starts at 0, so an untrained adapter leaves the backbone
  bit for bit as it was.

The layers are installed as forward hooks on the blocks (``DSGAdapter.installed``): the backbone's modules and
state dict are untouched. Under gradient checkpointing the backward pass reruns a block, hook included, so the
grounding a hook reads must outlive the forward pass: training keeps the hooks installed and sets each step's
grounding with ``use_grounding``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dysen.backbones.base import AdapterSite, Backbone
from dysen.backbones.control import TokenLayout
from dysen.errors import DysenError
from dysen.models.pretrained import Pretrained
from dysen.models.rgtrm import PlacedObjects, RGTrm, RGTrmConfig


class AdapterError(DysenError):
    """An adapter that does not fit its backbone, or grounding tokens that do not fit the video."""


def _default_rgtrm() -> RGTrmConfig:
    return RGTrmConfig(dim=128, num_layers=2, num_heads=4, layout=True)


@dataclass(frozen=True)
class AdapterConfig:
    """Sizes of a DSG adapter; ``dim`` and ``num_blocks`` are the backbone's."""

    dim: int = 128
    """The backbone's token width d (Wan: ``num_attention_heads · attention_head_dim``; UNet3D: its first level's)."""
    num_blocks: int = 4
    """The backbone's adapter sites (Wan: its transformer blocks; UNet3D: its spatial transformers)."""
    block_dims: tuple[int, ...] = ()
    """Each site's width where they differ (UNet3D levels); (): every site is ``dim`` wide."""
    every: int = 2
    """An adapter layer after blocks every − 1, 2·every − 1, …: the parameter-count knob."""
    heads: int = 4
    """Attention heads of each adapter layer (``width`` must be divisible by it)."""
    width: int = 0
    """Width of the grounding tokens and of each layer's attention (0: ``dim``): the other parameter-count knob."""
    box_frequencies: int = 8
    """Fourier frequencies of each box coordinate (GLIGEN: 8)."""
    neighbours: int = 1
    """A video token of latent frame f sees the grounding tokens of frames f − n … f + n."""
    rgtrm: RGTrmConfig = field(default_factory=_default_rgtrm)
    """The RGTrm that reads the DSG (``layout`` must be on: the adapter needs the objects in their boxes)."""
    backbone: str = ""
    """sha256 of the transformer config it was made for (``transformer_fingerprint``); "" fits any of its size."""

    def __post_init__(self) -> None:
        if not self.rgtrm.layout:
            raise AdapterError("the adapter's RGTrm needs layout=True: its grounding tokens are the placed objects")
        if self.width < 0 or self.inner % self.heads:
            raise AdapterError(f"adapter heads {self.heads} do not divide its width {self.inner}")
        if not 1 <= self.every <= self.num_blocks:
            raise AdapterError(f"every must be in 1..{self.num_blocks} (the backbone's blocks), got {self.every}")
        if self.neighbours < 0 or self.box_frequencies < 1:
            raise AdapterError("neighbours must be >= 0 and box_frequencies >= 1")
        if self.block_dims and len(self.block_dims) != self.num_blocks:
            raise AdapterError(f"block_dims has {len(self.block_dims)} widths for {self.num_blocks} blocks")

    @property
    def widths(self) -> tuple[int, ...]:
        """The width of each site."""
        return self.block_dims or (self.dim,) * self.num_blocks

    @property
    def inner(self) -> int:
        """The width of the grounding tokens and attention (``width``, or ``dim`` when 0)."""
        return self.width or self.dim

    @property
    def adapted_blocks(self) -> tuple[int, ...]:
        """The blocks an adapter layer follows."""
        return tuple(range(self.every - 1, self.num_blocks, self.every))


def box_features(boxes: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Fourier features of boxes [..., 4] in [0, 1]: sin and cos of 2^i · π · x for i < ``frequencies`` (GLIGEN's
    embedding of the box corners), [..., 4 · 2 · frequencies]."""
    scales = torch.pi * 2.0 ** torch.arange(frequencies, device=boxes.device, dtype=boxes.dtype)  # [Q]
    angles = boxes.unsqueeze(-1) * scales  # [..., 4, Q]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # [..., 8Q]


class GatedGroundingAttention(nn.Module):
    """h + tanh(γ) · Attn(LN(h), [null; g]), with γ = 0 at initialisation (GLIGEN eq. 8, attention only); the
    attention runs at ``width`` (queries projected down from the backbone's ``dim``, the output back up)."""

    def __init__(self, dim: int, heads: int, width: int | None = None) -> None:
        super().__init__()
        width = width or dim
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q, self.to_out = nn.Linear(dim, width), nn.Linear(width, dim)
        self.to_k, self.to_v = nn.Linear(width, width), nn.Linear(width, width)
        self.null = nn.Parameter(torch.randn(1, 1, width) * 0.02)  # [1, 1, w]: a key every video token may take
        self.gate = nn.Parameter(torch.zeros(()))  # γ: tanh(0) = 0, the backbone unchanged

    def forward(self, hidden: torch.Tensor, tokens: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``hidden`` [B, N, d], grounding ``tokens`` [B, S, w], ``allowed`` bool [B, N, S] -> [B, N, d]."""
        b, n, _ = hidden.shape
        dtype = self.null.dtype  # the adapter's own (a bfloat16 backbone's tokens are cast to it and back)
        keys = torch.cat([self.null.expand(b, -1, -1), tokens.to(dtype)], dim=1)  # [B, 1+S, d]
        allowed = F.pad(allowed, (1, 0), value=True)  # [B, N, 1+S]: the null key is always there

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, H, *, d/H]

        q = heads(self.to_q(self.norm(hidden.to(dtype))))
        k, v = heads(self.to_k(keys)), heads(self.to_v(keys))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])  # [B, H, N, d/H]
        out = self.to_out(out.transpose(1, 2).reshape(b, n, -1))  # [B, N, d]
        return hidden + torch.tanh(self.gate).to(hidden.dtype) * out.to(hidden.dtype)


class GroundingProjection(nn.Module):
    """One grounding token per object and latent frame: MLP([node state; Fourier(box)]) of the adapter's width."""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.frequencies = config.box_frequencies
        features, width = config.rgtrm.dim + 8 * config.box_frequencies, config.inner
        self.mlp = nn.Sequential(nn.Linear(features, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, tokens: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``tokens`` [..., D_rgtrm], ``boxes`` [..., 4] -> [..., w]."""
        return self.mlp(torch.cat([tokens, box_features(boxes, self.frequencies)], dim=-1))


@dataclass(frozen=True, eq=False)
class Grounding:
    """The grounding tokens of one batch, per latent frame."""

    tokens: torch.Tensor  # [B, F, K, w]
    mask: torch.Tensor  # [B, F, K] bool: an object present at that latent frame

    def for_passes(self, sees_dsg: list[bool]) -> Grounding:
        """These tokens (of one video) for the P guidance passes of a sampling step: masked out (the null DSG) on
        the passes that do not see the plan."""
        rows = torch.tensor(sees_dsg, device=self.mask.device)  # [P]
        count = len(sees_dsg)
        tokens = self.tokens.expand(count, *self.tokens.shape[1:])  # [P, F, K, d]
        return Grounding(tokens, self.mask.expand(count, *self.mask.shape[1:]) & rows[:, None, None])

    def select(self, rows: list[int]) -> Grounding:
        """The tokens of these rows (passes) only."""
        return Grounding(self.tokens[rows], self.mask[rows])

    def allowed(self, grid_tokens: int, neighbours: int) -> torch.Tensor:
        """bool [B, F·grid_tokens, F·K]: video token (of latent frame f) -> grounding token (of frame f') when
        |f − f'| <= ``neighbours`` and that object is present there."""
        b, frames, count = self.mask.shape
        index = torch.arange(frames, device=self.mask.device)
        near = (index[:, None] - index[None, :]).abs() <= neighbours  # [F, F']
        allowed = near[None, :, :, None] & self.mask[:, None, :, :]  # [B, F, F', K]
        allowed = allowed.reshape(b, frames, 1, frames * count).expand(-1, -1, grid_tokens, -1)
        return allowed.reshape(b, frames * grid_tokens, frames * count)  # [B, F·n, F'·K]


class DSGAdapter(nn.Module, Pretrained):
    """The RGTrm, the grounding projection and the gated attention layers of one backbone."""

    config_class = AdapterConfig

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.rgtrm = RGTrm(config.rgtrm)
        self.rgtrm.pool.requires_grad_(False)  # the adapter reads the placed objects, not the pooled step tokens:
        # a parameter no loss reaches would stop DDP ("parameters that were not used in producing loss")
        self.grounding = GroundingProjection(config)
        self.layers = nn.ModuleList(
            GatedGroundingAttention(config.widths[slot], config.heads, config.inner) for slot in config.adapted_blocks
        )
        self._grounding: Grounding | None = None  # what the installed layers read (``installed``, ``grounded``)

    def ground(self, objects: PlacedObjects, spans: tuple[tuple[int, int], ...]) -> Grounding:
        """The grounding tokens of ``objects`` (the RGTrm's, per video frame [B, T, K, ·]) for the latent frames
        whose video-frame spans are ``spans`` (``dysen.backbones.schedule.latent_frame_spans``): each takes the
        objects of its middle frame."""
        frames = objects.tokens.shape[1]
        if spans[-1][1] != frames:
            raise AdapterError(f"the latent frames cover {spans[-1][1]} video frames, the DSG was aligned to {frames}")
        middle = torch.tensor([(a + b - 1) // 2 for a, b in spans], device=objects.tokens.device)  # [F]
        tokens = self.grounding(objects.tokens[:, middle], objects.boxes[:, middle])  # [B, F, K, w]
        mask = objects.mask[:, middle]  # [B, F, K]
        return Grounding(tokens * mask.unsqueeze(-1), mask)

    @contextmanager
    def installed(self, sites: list[AdapterSite], grounding: Grounding | None) -> Iterator[None]:
        """Run the adapter layers after their blocks among ``sites`` (``Backbone.adapter_sites``; forward hooks)
        for the block, reading ``grounding`` (None: the hooks pass the blocks' outputs through)."""
        widths = self.config.widths
        found = tuple(dict.fromkeys(site.slot for site in sites))
        if found != tuple(range(self.config.num_blocks)):
            raise AdapterError(
                f"this adapter was made for a backbone of {self.config.num_blocks} blocks, not {len(found)}"
            )
        wrong = [(site.slot, site.dim) for site in sites if site.dim != widths[site.slot]]
        if wrong:
            raise AdapterError(f"this adapter's block widths {widths} do not fit the backbone's (slot, width) {wrong}")
        layers = dict(zip(self.config.adapted_blocks, self.layers, strict=True))
        handles = [
            site.module.register_forward_hook(self._hook(layers[site.slot], site.layout))
            for site in sites
            if site.slot in layers
        ]
        try:
            with self.grounded(grounding):
                yield
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def grounded(self, grounding: Grounding | None) -> Iterator[None]:
        """The installed layers read ``grounding`` for the block: a model call on other passes than the run's
        (energy guidance's probe of the text pass alone) gives its own."""
        previous = self._grounding
        self.use_grounding(grounding)
        try:
            yield
        finally:
            self.use_grounding(previous)

    def use_grounding(self, grounding: Grounding | None) -> None:
        """The installed layers read ``grounding`` from now on: a training step's stays set through its backward
        pass, which reruns gradient-checkpointed blocks and their hooks."""
        self._grounding = grounding

    def _hook(self, layer: GatedGroundingAttention, layout: TokenLayout) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            grounding = self._grounding
            if grounding is None:
                return output
            frames = grounding.mask.shape[1]
            hidden, restore = video_tokens(output, layout, frames)  # [B, N, d]
            b, n, _ = hidden.shape
            if n % frames:
                raise AdapterError(f"{n} video tokens do not split into {frames} latent frames")
            tokens = grounding.tokens.flatten(1, 2)  # [B, F·K, w]
            allowed = grounding.allowed(n // frames, self.config.neighbours)  # [B, N, F·K]
            if tokens.shape[0] != b:  # the guidance passes of one video share its grounding
                tokens = tokens.expand(b, -1, -1)
                allowed = allowed.expand(b, -1, -1)
            return restore(layer(hidden, tokens, allowed))

        return hook


def video_tokens(output: Any, layout: TokenLayout, frames: int) -> tuple[torch.Tensor, Any]:
    """A block's ``output`` as the video tokens h [B, N, d] (N = frames · tokens per frame, frame-major) and the
    function that puts an h of that shape back in the block's own output form."""
    if layout == "video":  # Wan: [B, N, d] already
        return output, lambda hidden: hidden
    first = output[0]  # UNet3D's Transformer2DModel: ([B·F, d, h, w],) (or its output dataclass)
    bf, d, h, w = first.shape
    hidden = first.unflatten(0, (bf // frames, frames)).permute(0, 1, 3, 4, 2).reshape(bf // frames, -1, d)

    def restore(new: torch.Tensor) -> Any:
        sample = torch.empty_like(first)  # the block's own strides: the UNet's next kernels run as without us
        sample.copy_(new.reshape(bf // frames, frames, h, w, d).permute(0, 1, 4, 2, 3).reshape(bf, d, h, w))
        return (sample, *output[1:]) if isinstance(output, tuple) else type(output)(sample=sample)

    return hidden, restore


def adapter_parameters(config: AdapterConfig) -> int:
    """Parameters of an adapter of ``config``, counted without building it on a device."""
    with torch.device("meta"):
        return sum(p.numel() for p in DSGAdapter(config).parameters())


def transformer_fingerprint(transformer_config: Any) -> str:
    """sha256 of a denoiser's config (its architecture; diffusers' ``_``-keys left out)."""
    config = {k: v for k, v in dict(transformer_config).items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def wan_adapter_config(transformer_config: Any, **changes: Any) -> AdapterConfig:
    """The adapter config that fits a ``WanTransformer3DModel`` config (width, blocks, fingerprint), with
    ``changes``: what ``adapter_config`` gives a Wan backbone, from the config alone (a meta-device count)."""
    dim = transformer_config["num_attention_heads"] * transformer_config["attention_head_dim"]
    heads = changes.pop("heads", transformer_config["num_attention_heads"])
    return AdapterConfig(
        dim=dim, num_blocks=transformer_config["num_layers"], heads=heads,
        backbone=transformer_fingerprint(transformer_config), **changes,
    )  # fmt: skip


def adapter_config(backbone: Backbone, **changes: Any) -> AdapterConfig:
    """The adapter config that fits ``backbone`` (its sites' widths, their number, its denoiser's fingerprint), with
    ``changes``; the heads default to the first site's own, or, where they do not divide the adapter's width, the
    most below them that do (a 64-wide adapter on Wan2.1-1.3B's 12 heads: 8)."""
    sites = {site.slot: site for site in backbone.adapter_sites()}
    if not sites:
        raise AdapterError(f"the {backbone.name} backbone offers no blocks for an adapter")
    widths = tuple(sites[slot].dim for slot in range(len(sites)))
    inner = changes.get("width") or widths[0]
    heads = changes.pop("heads", None) or max(h for h in range(1, sites[0].heads + 1) if inner % h == 0)
    uniform = len(set(widths)) == 1
    return AdapterConfig(
        dim=widths[0], num_blocks=len(widths), block_dims=() if uniform else widths, heads=heads,
        backbone=transformer_fingerprint(backbone.denoiser.config), **changes,
    )  # fmt: skip


def load_adapter(folder: str | os.PathLike[str], denoiser_config: Any) -> DSGAdapter:
    """The adapter saved in ``folder`` (config.json + model.safetensors), refused unless it was trained for a
    denoiser (``Backbone.denoiser``) of ``denoiser_config``; a shipped adapter's name works too."""
    from dysen.backbones.folder import adapter_folder

    folder = adapter_folder(folder)
    adapter = DSGAdapter.from_pretrained(folder)
    expected = transformer_fingerprint(denoiser_config)
    if adapter.config.backbone and adapter.config.backbone != expected:
        raise AdapterError(
            f"the adapter in {folder} was trained for another backbone (transformer config sha256 "
            f"{adapter.config.backbone[:12]}…, this one {expected[:12]}…): train one for it with dysen train-adapter"
        )
    return adapter

