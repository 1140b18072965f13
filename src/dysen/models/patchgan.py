"""PatchGAN discriminator of LDM/LVDM's autoencoder loss (pix2pix, Isola et al., CVPR 2017 §3.2.2).

taming-transformers' ``NLayerDiscriminator``, applied to single frames (LVDM folds time into the batch,
backbones.md §2.2): a k4-s2 conv + LeakyReLU(0.2), ``n_layers − 1`` k4-s2 conv–BatchNorm–LeakyReLU blocks
doubling the channels (at most 8×), one k4-s1 block, and a k4-s1 conv to one logit per patch. Initialised
as taming's ``weights_init``: convs N(0, 0.02), BatchNorm weights N(1, 0.02) and biases 0.
"""

from __future__ import annotations

import torch
from torch import nn

from dysen.errors import DysenError


class DiscriminatorError(DysenError):
    """The discriminator cannot judge these frames (too small for its depth)."""


class NLayerDiscriminator(nn.Module):
    """Patch logits [N, 1, h, w] of frames [N, C, H, W]; frames need H, W ≥ 3·2^n_layers."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1 or channels < 1:
            raise DiscriminatorError(f"n_layers and channels must be >= 1, got {n_layers}, {channels}")
        self.n_layers = n_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(channels * previous, channels * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        smallest = 3 * 2**self.n_layers
        if min(frames.shape[-2:]) < smallest:
            raise DiscriminatorError(
                f"{tuple(frames.shape[-2:])} frames are too small for a {self.n_layers}-layer PatchGAN (needs "
                f">= {smallest} pixels a side): use fewer discriminator layers (--disc-layers)"
            )
        return self.main(frames)  # [N, 1, h, w]
