"""Video autoencoders behind one interface: a 3D KL autoencoder (LVDM-style) and a per-frame 2D VAE (SD-VAE).

Dysen-VDM builds on LVDM (He et al. 2022), whose UCF/Sky models use a 3D autoencoder and whose
text-to-video model encodes frame by frame with the LDM/SD KL-f8 VAE (backbones.md §2.2, §6.2).

* ``VideoAutoencoder`` — the protocol: ``encode(video [B, 3, T, H, W] in [-1, 1]) -> latents``
  ``[B, c, t, h, w]``, already normalised as ``(z - shift_factor) * scaling_factor``; ``decode`` inverts it.
* ``KLVideoAutoencoder`` — LVDM's ``autoencoder3d`` architecture (backbones.md §2.2): ``conv_in``, one stage per
  spatial halving (strided 3D conv to the stage's channels, then ResBlocks of GroupNorm–SiLU–Conv3d),
  the first ``log2(temporal_downsample)`` stages also halve time; GN–SiLU–conv to mean and log-variance
  (``double_z``) and a 1×1×1 ``quant_conv``; the decoder mirrors it with one more ResBlock per stage, as
  LVDM's. Convolutions pad by replication, as LVDM's ``SamePadConv3d``. Differences, by choice: strided
  k=3 convs and nearest-neighbour upsampling + conv instead of k=4 convs and transposed convs (no
  checkerboard artefacts); an optional mid-level spatio-temporal attention block (LVDM has none).
  LVDM trains with KL weight 0 and normalises latents per dataset; ``fit_scale`` measures those factors.
* ``FrameVAE`` — diffusers' ``AutoencoderKL`` applied to every frame (LVDM-T2V, Dysen-T2V), in chunks.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from dysen.errors import DysenError
from dysen.models.lvdm_ae import DecoderLVDM3d, EncoderLVDM3d
from dysen.models.pretrained import Pretrained


class AutoencoderError(DysenError):
    """An autoencoder config is inconsistent, or a video does not fit the autoencoder's downsampling."""


class VideoAutoencoder(Protocol):
    """Video [B, 3, T, H, W] in [-1, 1] <-> normalised latents [B, c, t, h, w]."""

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, t, h, w)`` of the latents of a ``num_frames x height x width`` video."""
        ...


@dataclass(frozen=True)
class KLVideoAutoencoderConfig:
    """Architecture of the 3D KL autoencoder; the defaults are LVDM's UCF/Sky one (downsample 4 x 8 x 8)."""

    in_channels: int = 3
    """Channels of the video (and of the reconstruction)."""
    latent_channels: int = 4
    """Channels c of the latent (z_channels)."""
    base_channels: int = 32
    """Width of ``conv_in`` (LVDM's n_hiddens)."""
    channel_mult: tuple[int, ...] = (2, 4, 8)
    """Width of each stage as a multiple of ``base_channels``; one stage per spatial halving."""
    spatial_downsample: int = 8
    """Spatial factor h = H / f; must be 2 ** len(channel_mult)."""
    temporal_downsample: int = 4
    """Temporal factor t = T / f; a power of two, at most ``spatial_downsample``."""
    temporal_kernel: int = 3
    """Time extent of every convolution: 3 (LVDM) mixes neighbouring frames; 1 makes a frame-wise 2D
    autoencoder (with ``temporal_downsample`` 1), as the per-frame SD VAE of text-to-video models."""
    num_res_blocks: int = 1
    """ResBlocks per encoder stage; the decoder has one more per stage (LVDM: 1 and 2)."""
    mid_attention: bool = False
    """Add a spatio-temporal self-attention block at the lowest resolution of encoder and decoder."""
    norm_groups: int = 32
    """GroupNorm groups (must divide every stage width)."""
    scaling_factor: float = 1.0
    """Latents are ``(z - shift_factor) * scaling_factor``; set by ``fit_scale``."""
    shift_factor: float = 0.0
    """See ``scaling_factor``."""
    arch: str = "dysen"
    """"dysen" (the module docstring) or "lvdm": LVDM's released layout (``models.lvdm_ae``), whose ``ae_*.ckpt``
    load into it; it needs ``channel_mult`` (2, 4, ..., 2^n), one ResBlock per stage, kernel 3, no mid attention."""


class DiagonalGaussian(NamedTuple):
    """The posterior q(z | x) = N(mean, exp(logvar)) of a KL autoencoder, [B, c, t, h, w] each."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised draw (differentiable in mean and logvar)."""
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample [B], summed over latent elements (LDM's ``DiagonalGaussianDistribution``)."""
        return 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class AutoencoderOutput(NamedTuple):
    """``forward``'s result for training: the reconstruction and the posterior."""

    reconstruction: torch.Tensor  # [B, 3, T, H, W]
    posterior: DiagonalGaussian


def _conv(
    cin: int, cout: int, kernel: int = 3, stride: tuple[int, int, int] = (1, 1, 1), time_kernel: int | None = None
) -> nn.Conv3d:
    """A replicate-padded ``(time_kernel, kernel, kernel)`` conv (``time_kernel`` defaults to ``kernel``)."""
    kt = kernel if time_kernel is None else time_kernel
    size, padding = (kt, kernel, kernel), (kt // 2, kernel // 2, kernel // 2)
    return nn.Conv3d(cin, cout, size, stride=stride, padding=padding, padding_mode="replicate")


class ResBlock3d(nn.Module):
    """GroupNorm–SiLU–Conv3d twice with a skip (a 1×1×1 conv when the width changes)."""

    def __init__(self, cin: int, cout: int, groups: int, time_kernel: int = 3) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, cin), nn.SiLU(), _conv(cin, cout, time_kernel=time_kernel),
            nn.GroupNorm(groups, cout), nn.SiLU(), _conv(cout, cout, time_kernel=time_kernel),
        )  # fmt: skip
        self.skip = nn.Identity() if cin == cout else nn.Conv3d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)  # [B, C, T, H, W]


class Attention3d(nn.Module):
    """Single-head self-attention over all t·h·w positions (LDM's ``AttnBlock``, extended to time)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.out = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # 3 x [B, thw, C]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, thw, C]
        return x + self.out(out.transpose(1, 2).reshape(b, c, t, h, w))  # [B, C, T, H, W]


class _Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``(ft, 2, 2)`` followed by a 3×3×3 conv (1×3×3 when frame-wise)."""

    def __init__(self, cin: int, cout: int, temporal: bool, time_kernel: int = 3) -> None:
        super().__init__()
        self.scale = (2 if temporal else 1, 2, 2)
        self.conv = _conv(cin, cout, time_kernel=time_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))  # [B, C', fT, 2H, 2W]


def _mid(channels: int, config: KLVideoAutoencoderConfig) -> nn.Module:
    if not config.mid_attention:
        return nn.Identity()
    groups = config.norm_groups
    return nn.Sequential(ResBlock3d(channels, channels, groups, config.temporal_kernel), Attention3d(channels, groups))


class KLVideoAutoencoder(nn.Module, Pretrained):
    """LVDM-style 3D KL autoencoder (see the module docstring); ``forward`` is the training pass."""

    config_class = KLVideoAutoencoderConfig

    def __init__(self, config: KLVideoAutoencoderConfig) -> None:
        super().__init__()
        _validate(config)
        self.config = config
        widths = [config.base_channels * m for m in config.channel_mult]
        groups, time_stages = config.norm_groups, int(math.log2(config.temporal_downsample))
        kt = config.temporal_kernel
        self.quant_conv = nn.Conv3d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv3d(config.latent_channels, config.latent_channels, 1)
        if config.arch == "lvdm":
            sizes = (config.base_channels, len(widths), time_stages, config.latent_channels, groups)
            self.encoder = EncoderLVDM3d(config.in_channels, *sizes)
            self.decoder = DecoderLVDM3d(config.in_channels, *sizes)
            return
        encoder: list[nn.Module] = [_conv(config.in_channels, config.base_channels, time_kernel=kt)]
        previous = config.base_channels
        for i, width in enumerate(widths):
            encoder.append(_conv(previous, width, stride=(2 if i < time_stages else 1, 2, 2), time_kernel=kt))
            encoder += [ResBlock3d(width, width, groups, kt) for _ in range(config.num_res_blocks)]
            previous = width
        encoder += [_mid(previous, config), nn.GroupNorm(groups, previous), nn.SiLU()]
        encoder.append(_conv(previous, 2 * config.latent_channels, time_kernel=kt))
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = [_conv(config.latent_channels, widths[-1], time_kernel=kt)]
        decoder.append(_mid(widths[-1], config))
        previous = widths[-1]
        for i in reversed(range(len(widths))):
            decoder.append(_Upsample(previous, widths[i], temporal=i < time_stages, time_kernel=kt))
            decoder += [ResBlock3d(widths[i], widths[i], groups, kt) for _ in range(config.num_res_blocks + 1)]
            previous = widths[i]
        decoder += [nn.GroupNorm(groups, previous), nn.SiLU(), _conv(previous, config.in_channels, time_kernel=kt)]
        self.decoder = nn.Sequential(*decoder)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, T / ft, H / fs, W / fs)``; the sizes must be divisible by the factors."""
        ft, fs = self.config.temporal_downsample, self.config.spatial_downsample
        if num_frames % ft or height % fs or width % fs:
            raise AutoencoderError(
                f"a {num_frames}x{height}x{width} video does not fit this autoencoder: frames must be a multiple "
                f"of {ft} and height/width multiples of {fs}"
            )
        return (self.config.latent_channels, num_frames // ft, height // fs, width // fs)

    def posterior(self, video: torch.Tensor) -> DiagonalGaussian:
        """q(z | video) for a video [B, 3, T, H, W] in [-1, 1]; unnormalised latent space."""
        self.latent_shape(*video.shape[2:])
        moments = self._frame_wise(self._encoder_pass, video)  # [B, 2c, t, h, w]
        mean, logvar = moments.chunk(2, dim=1)  # [B, c, t, h, w] each
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised latents [B, c, t, h, w]: the posterior mean, or a sample when ``generator`` is given."""
        posterior = self.posterior(video)
        z = posterior.mean if generator is None else posterior.sample(generator)  # [B, c, t, h, w]
        return self.normalise(z)

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """Latents z of the posterior's space (a mean or a draw, e.g. from cached moments) as the denoiser sees
        them: (z − shift_factor) · scaling_factor."""
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, T, H, W] (unbounded; trained towards [-1, 1]) from normalised latents."""
        z = latents / self.config.scaling_factor + self.config.shift_factor  # [B, c, t, h, w]
        return self._frame_wise(self._decoder_pass, z)

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None) -> AutoencoderOutput:
        """Reconstruct ``video`` through a posterior sample; the loss is the trainer's (L1/LPIPS + w·KL)."""
        posterior = self.posterior(video)
        return AutoencoderOutput(self._frame_wise(self._decoder_pass, posterior.sample(generator)), posterior)

    def _encoder_pass(self, video: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(video))  # [B, 2c, t, h, w]: posterior mean and log-variance

    def _decoder_pass(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))  # [B, 3, T, H, W] from unnormalised z [B, c, t, h, w]

    def _frame_wise(self, network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``network(x)`` for x [B, C, T, H, W]; a frame-wise model (temporal_kernel 1) sees every frame as its
        own clip [B·T, C, 1, H, W], so GroupNorm statistics are per frame too and no frame affects another."""
        if self.config.temporal_kernel != 1:
            return network(x)
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, 1, h, w)  # [B·T, C, 1, H, W]
        y = network(frames.contiguous(memory_format=torch.channels_last_3d))  # [B·T, C', 1, H', W']
        return y.reshape(b, t, *y.shape[1:2], *y.shape[3:]).transpose(1, 2)  # [B, C', T, H', W']

    @torch.no_grad()
    def fit_scale(self, latents: torch.Tensor) -> tuple[float, float]:
        """Set the shift/scale so that ``latents`` (unnormalised posterior means) get mean 0 and std 1.

        Returns ``(scaling_factor, shift_factor)``; the config is replaced, so save the model afterwards.
        """
        shift, std = latents.double().mean().item(), latents.double().std().item()
        if not math.isfinite(std) or std <= 0:
            raise AutoencoderError(f"cannot fit a scale to latents with std {std}: pass several non-constant latents")
        self.config = dataclasses.replace(self.config, scaling_factor=1.0 / std, shift_factor=shift)
        return self.config.scaling_factor, self.config.shift_factor


def _validate(config: KLVideoAutoencoderConfig) -> None:
    stages, fs, ft = len(config.channel_mult), config.spatial_downsample, config.temporal_downsample
    if stages < 1 or fs != 2**stages:
        raise AutoencoderError(f"spatial_downsample {fs} must be 2 ** len(channel_mult) = {2**stages}")
    if ft < 1 or ft & (ft - 1) or ft > fs:
        raise AutoencoderError(f"temporal_downsample {ft} must be a power of two, at most spatial_downsample {fs}")
    if config.temporal_kernel not in (1, 3):
        raise AutoencoderError(f"temporal_kernel must be 1 (frame-wise) or 3, got {config.temporal_kernel}")
    if config.temporal_kernel == 1 and ft != 1:
        raise AutoencoderError(
            "a frame-wise autoencoder (temporal_kernel 1) cannot downsample time: set temporal_downsample 1"
        )
    if config.arch not in ("dysen", "lvdm"):
        raise AutoencoderError(f"arch must be 'dysen' or 'lvdm', got {config.arch!r}")
    lvdm_mult = tuple(2 ** (i + 1) for i in range(stages))
    if config.arch == "lvdm" and (
        config.channel_mult != lvdm_mult or config.num_res_blocks != 1 or config.temporal_kernel != 3
    ):
        raise AutoencoderError(
            f"arch 'lvdm' is LVDM's layout: channel_mult {lvdm_mult}, num_res_blocks 1, temporal_kernel 3"
        )
    if config.arch == "lvdm" and config.mid_attention:
        raise AutoencoderError("arch 'lvdm' has no mid attention: set mid_attention false")
    widths = [config.base_channels] + [config.base_channels * m for m in config.channel_mult]
    if any(w % config.norm_groups for w in widths):
        raise AutoencoderError(f"norm_groups {config.norm_groups} must divide every stage width {widths}")


class FrameVAE(nn.Module):
    """A diffusers ``AutoencoderKL`` (e.g. the SD VAE) applied frame by frame; frozen; no temporal compression."""

    def __init__(self, vae: Any, frames_per_chunk: int = 16) -> None:
        """``vae``: a diffusers ``AutoencoderKL``; ``frames_per_chunk`` frames go through it at once."""
        super().__init__()
        if frames_per_chunk < 1:
            raise AutoencoderError(f"frames_per_chunk must be >= 1, got {frames_per_chunk}")
        self.vae = vae.eval().requires_grad_(False)
        self.frames_per_chunk = frames_per_chunk
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str],
        subfolder: str | None = None,
        dtype: torch.dtype = torch.float32,
        frames_per_chunk: int = 16,
    ) -> FrameVAE:
        """Load ``AutoencoderKL`` from a folder or hub id (``subfolder="vae"`` for a full SD pipeline repo)."""
        from diffusers import AutoencoderKL

        from dysen.encoders.hub import require_hub_source

        require_hub_source(source, "the frame VAE", "vae.frame.source in the model config (--config YAML)", subfolder)
        try:
            vae = AutoencoderKL.from_pretrained(os.fspath(source), subfolder=subfolder, torch_dtype=dtype)
        except (OSError, ValueError) as err:
            raise AutoencoderError(f"cannot load the frame VAE {source!s} (subfolder {subfolder}): {err}") from None
        return cls(vae, frames_per_chunk)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, T, H / f, W / f)`` with f = 8 for the SD VAE."""
        if height % self.downsample or width % self.downsample:
            raise AutoencoderError(f"height and width must be multiples of {self.downsample}, got {height}x{width}")
        return (int(self.vae.config.latent_channels), num_frames, height // self.downsample, width // self.downsample)

    @property
    def config(self) -> Any:
        """The wrapped ``AutoencoderKL``'s config (what a latent cache is keyed by, with the weights)."""
        return self.vae.config

    def posterior(self, video: torch.Tensor) -> DiagonalGaussian:
        """q(z | video) for a video [B, 3, T, H, W] in [-1, 1], frame by frame; unnormalised latent space."""
        self.latent_shape(*video.shape[2:])
        frames = video.transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
        means, logvars = [], []
        for chunk in frames.split(self.frames_per_chunk):
            posterior = self.vae.encode(chunk.to(self.vae.dtype)).latent_dist
            means.append(posterior.mean)
            logvars.append(posterior.logvar)

        def video_layout(parts: list[torch.Tensor]) -> torch.Tensor:  # [B*T, c, h, w] -> [B, c, T, h, w]
            return torch.cat(parts).float().unflatten(0, (video.shape[0], video.shape[2])).transpose(1, 2)

        return DiagonalGaussian(video_layout(means), video_layout(logvars))

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised latents [B, c, T, h, w] of a video [B, 3, T, H, W] in [-1, 1]: the posterior mean, or a draw
        when ``generator`` is given (one draw over the whole video, as from cached moments)."""
        posterior = self.posterior(video)
        return self.normalise(posterior.mean if generator is None else posterior.sample(generator))

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """Latents z of the posterior's space as the denoiser sees them: (z − shift_factor) · scaling_factor."""
        return (z - self.shift_factor) * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, T, H, W] from normalised latents [B, c, T, h, w], decoded ``frames_per_chunk`` at a time."""
        z = (latents / self.scaling_factor + self.shift_factor).transpose(1, 2).flatten(0, 1)  # [B*T, c, h, w]
        frames = torch.cat(
            [self.vae.decode(chunk.to(self.vae.dtype)).sample for chunk in z.split(self.frames_per_chunk)]
        )
        return frames.unflatten(0, (latents.shape[0], latents.shape[2])).transpose(1, 2)  # [B, 3, T, H, W]
