"""LPIPS (Zhang et al., CVPR 2018, eq. 1) over a VGG16 written in plain torch, with weights from the user's files.

    d(x, x̂) = Σ_l 1/(H_l W_l) Σ_{h,w} ‖ w_l ⊙ (ŷ^l_hw − ŷ'^l_hw) ‖²,   ŷ^l = unit-normalised (over channels)
    features of VGG16 at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, of inputs in [-1, 1] shifted and scaled
    as the ``lpips`` package's ``ScalingLayer``.

This is the taming-transformers/``lpips`` "vgg" variant that LDM/LVDM's autoencoder loss uses (backbones.md
§2.2). Nothing is downloaded; two files are given (a ``.safetensors`` file, or a tensors-only ``torch.save``
file read with ``weights_only=True``; pickled objects are refused):

* the linear heads, e.g. the ``lpips`` package's ``weights/v0.1/vgg.pth`` (keys ``lin{l}.model.1.weight``,
  [1, C_l, 1, 1]; ``lin{l}.weight`` is accepted too);
* the VGG16 backbone in torchvision's layout, e.g. ``vgg16-397923af.pth`` (keys ``features.{i}.weight/bias``;
  the classifier is ignored; keys without the ``features.`` prefix are accepted). The channel widths are read
  from the file, so a narrow VGG (tests) loads as well as the real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from dysen.models.pretrained import CheckpointError, read_state_dict

VGG16_WIDTHS = (64, 128, 256, 512, 512)  # output channels of VGG16's five blocks
_BLOCK_CONVS = (2, 2, 3, 3, 3)  # 3×3 convs per block
_SHIFT = (-0.030, -0.088, -0.188)  # lpips ScalingLayer: (x − shift) / scale, x in [-1, 1]
_SCALE = (0.458, 0.448, 0.450)


class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` up to relu5_3 (same module indices, so its state dict loads as is)."""

    def __init__(self, widths: tuple[int, ...] = VGG16_WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.taps: list[int] = []  # index of the ReLU ending each block (3, 8, 15, 22, 29 for VGG16)
        previous = 3
        for block, (width, convs) in enumerate(zip(widths, _BLOCK_CONVS, strict=True)):
            if block:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(convs):
                layers += [nn.Conv2d(previous, width, 3, padding=1), nn.ReLU(inplace=True)]
                previous = width
            self.taps.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five block outputs [N, C_l, H / 2^l, W / 2^l] of images [N, 3, H, W]."""
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


class LPIPS(nn.Module):
    """Frozen LPIPS distance; ``forward(x, y)`` gives one distance per image, [N] (0 for identical images)."""

    def __init__(self, widths: tuple[int, ...] = VGG16_WIDTHS) -> None:
        super().__init__()
        self.net = VGG16Features(widths)
        self.heads = nn.ModuleList(nn.Conv2d(width, 1, 1, bias=False) for width in widths)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    @classmethod
    def from_files(cls, heads: str | os.PathLike[str], backbone: str | os.PathLike[str]) -> LPIPS:
        """LPIPS with the linear heads from ``heads`` and the VGG16 weights from ``backbone`` (module docstring)."""
        vgg = _backbone_state(read_state_dict(backbone, "VGG16 backbone"), Path(backbone))
        conv_outputs = [vgg[f"features.{i}.weight"].shape[0] for i in (0, 5, 10, 17, 24)]
        model = cls(tuple(conv_outputs))
        lins = _head_state(read_state_dict(heads, "LPIPS heads"), Path(heads))
        try:
            model.net.load_state_dict(vgg)
            model.heads.load_state_dict(lins)
        except RuntimeError as err:
            raise CheckpointError(f"the LPIPS heads {heads} do not fit the VGG16 backbone {backbone}: {err}") from None
        return model

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # a frozen metric: always eval

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d(x, y) of images [N, 3, H, W] in [-1, 1] (Zhang et al. 2018, eq. 1) -> [N]."""
        total = x.new_zeros(len(x))
        for head, fx, fy in zip(self.heads, self.net((x - self.shift) / self.scale),
                                self.net((y - self.shift) / self.scale), strict=True):  # fmt: skip
            diff = (_unit(fx) - _unit(fy)).square()  # [N, C_l, H_l, W_l]
            total = total + head(diff).mean(dim=(1, 2, 3))  # spatial average of w_l · diff
        return total


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Features divided by their L2 norm over channels (``lpips.normalize_tensor``)."""
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)


def _backbone_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """torchvision VGG16 keys ``features.{i}.*`` (the classifier dropped; a bare ``{i}.*`` layout prefixed)."""
    if not any(k.startswith("features.") for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    kept = {k: v for k, v in state.items() if k.startswith("features.") and _index(k) < 29}
    if "features.0.weight" not in kept or "features.24.weight" not in kept:
        raise CheckpointError(f"{path} is not a VGG16 state dict: it lacks features.0.weight / features.24.weight")
    return kept


def _index(key: str) -> int:
    part = key.split(".")[1]
    return int(part) if part.isdigit() else 1 << 30


def _head_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``lin{l}.model.1.weight`` (lpips ``vgg.pth``) or ``lin{l}.weight`` as ``{l}.weight`` of ``LPIPS.heads``."""
    heads = {}
    for layer in range(len(VGG16_WIDTHS)):
        for key in (f"lin{layer}.model.1.weight", f"lin{layer}.weight"):
            if key in state:
                heads[f"{layer}.weight"] = state[key]
    if len(heads) != len(VGG16_WIDTHS):
        raise CheckpointError(f"{path} is not an LPIPS heads file: expected lin0..lin4 weights, found {sorted(state)}")
    return heads
