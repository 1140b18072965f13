"""LVDM's 3D autoencoder layout (He et al. 2022, from TATS; ``research/backbones.md`` §2.2), for
``KLVideoAutoencoder`` with ``arch="lvdm"``: the encoder and decoder of LVDM's released ``ae_*.ckpt``, so that
their weights load tensor for tensor (``dysen.convert.lvdm``).

Encoder: a 3x3x3 conv, then per stage a stride-2 kernel-4 conv (time halved in the first log2(f_t) stages) and one
ResBlock; GN-SiLU-3x3x3 conv to mean and log-variance. Decoder: per stage a stride-2 kernel-4 transposed conv (time
doubled in the first log2(f_t) stages) and two ResBlocks; a 3x3x3 conv to RGB. No attention, no mid block. Every
conv pads "same" by replication, the odd remainder in front (``SamePadConv3d``); ResBlocks are GN(eps 1e-6)-SiLU-conv
twice with an identity skip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """``F.pad`` widths (last dim first) that make a conv's output size the input's / stride: k - s per dim, the
    larger half in front."""
    pads: list[int] = []
    for k, s in reversed(list(zip(kernel, stride, strict=True))):
        total = k - s
        pads += [total - total // 2, total // 2]
    return tuple(pads)


class SamePadConv3d(nn.Module):
    """A 3D conv whose input is replicate-padded "same" (``same_padding``) first."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.pad = same_padding((kernel,) * 3, stride)
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad, mode="replicate"))  # [B, C', T/s, H/s, W/s]


class SamePadConvTranspose3d(nn.Module):
    """A transposed 3D conv (stride ``stride``, output ``stride`` x the input) on an input replicate-padded as
    ``same_padding``; its own padding k - 1 crops the borders back."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.pad = same_padding((kernel,) * 3, stride)
        self.convt = nn.ConvTranspose3d(cin, cout, kernel, stride=stride, padding=kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convt(F.pad(x, self.pad, mode="replicate"))  # [B, C', sT, sH, sW]


class ResBlockLVDM3d(nn.Module):
    """GN(eps 1e-6)-SiLU-conv twice, + the input (every ResBlock of LVDM's AE keeps its width)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, channels, eps=1e-6), SamePadConv3d(channels, channels, 3)
        self.norm2, self.conv2 = nn.GroupNorm(groups, channels, eps=1e-6), SamePadConv3d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))  # [B, C, T, H, W]


def _strides(stages: int, time_stages: int) -> list[tuple[int, int, int]]:
    return [(2 if i < time_stages else 1, 2, 2) for i in range(stages)]


class EncoderLVDM3d(nn.Module):
    """Video [B, 3, T, H, W] -> moments [B, 2c, T/f_t, H/f_s, W/f_s] (before ``quant_conv``)."""

    def __init__(self, cin: int, width: int, stages: int, time_stages: int, latent: int, groups: int) -> None:
        super().__init__()
        self.conv_first = SamePadConv3d(cin, width, 3)
        self.conv_blocks = nn.ModuleList()
        for i, stride in enumerate(_strides(stages, time_stages)):
            block = nn.Module()
            block.down = SamePadConv3d(width * 2**i, width * 2 ** (i + 1), 4, stride)
            block.res = ResBlockLVDM3d(width * 2 ** (i + 1), groups)
            self.conv_blocks.append(block)
        top = width * 2**stages
        self.final_block = nn.Sequential(
            nn.GroupNorm(groups, top, eps=1e-6), nn.SiLU(), SamePadConv3d(top, 2 * latent, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(x)
        for block in self.conv_blocks:
            x = block.res(block.down(x))
        return self.final_block(x)


class DecoderLVDM3d(nn.Module):
    """Latents [B, c, t, h, w] (after ``post_quant_conv``) -> video [B, 3, f_t t, f_s h, f_s w]."""

    def __init__(self, cout: int, width: int, stages: int, time_stages: int, latent: int, groups: int) -> None:
        super().__init__()
        self.conv_blocks = nn.ModuleList()
        previous = latent
        for i, stride in enumerate(_strides(stages, time_stages)):
            channels = width * 2 ** (stages - i)
            block = nn.Module()
            block.up = SamePadConvTranspose3d(previous, channels, 4, stride)
            block.res1, block.res2 = ResBlockLVDM3d(channels, groups), ResBlockLVDM3d(channels, groups)
            self.conv_blocks.append(block)
            previous = channels
        self.conv_out = SamePadConv3d(previous, cout, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for block in self.conv_blocks:
            z = block.res2(block.res1(block.up(z)))
        return self.conv_out(z)
