"""I3D (Inception-v1 inflated to 3D, Kinetics-400, RGB stream): the FVD feature network.

Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?"; used for FVD by Unterthiner et al. 2018.
``InceptionI3d`` is the pytorch-i3d architecture (piergiaj; the copy in VideoGPT, TATS, LVDM and Dysen),
with the same parameter names, so its state dicts load as they are (eval_data.md §1.2). Its output is
the 400-d **pre-softmax logits averaged over time**, the FVD embedding (not the 1024-d pool features).

Weights (never downloaded; eval_data.md §4), both conversions of the tf.hub ``i3d-kinetics-400/1`` module
whose FVDs agree to about 0.1 (§0.2):

* ``i3d_pretrained_400.pt`` (TATS/VideoGPT/LVDM/Dysen): a state dict, read with ``torch.load(weights_only=True)``;
* ``i3d_torchscript.pt`` (StyleGAN-V): a TorchScript archive, read with ``torch.jit.load`` (TorchScript
  code and tensors, not a pickle of arbitrary Python objects), called as
  ``net(x, rescale=False, resize=False, return_features=True)`` on the same preprocessed input; or, for
  StyleGAN-V's own protocol (``call="stylegan-v"``), as StyleGAN-V calls it: uint8 videos at their own size with
  ``rescale=True, resize=True`` (the network's own scaling and resizing).

Preprocessing (§1.4, TATS-style, option (a)): frames resized straight to 224×224 by bilinear
``F.interpolate(align_corners=False)`` (no crop, no antialiasing), RGB in [-1, 1], T ≥ 9 frames (16 is the
protocol). Golden-value tests run when ``DYSEN_I3D_WEIGHTS`` names a weight file.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dysen.eval.features.frames import VideoInputError, resize_frames, run_batches, video_tensor, video_uint8
from dysen.eval.features.weights import checked_file, is_torchscript, load_state_dict, load_strict
from dysen.eval.references import I3DCall

I3D_SIZE = 224
"""Frame side the I3D sees (eval_data.md §1.4)."""

I3D_MIN_FRAMES = 9
"""Fewest frames the network accepts: at T = 8 the final [2, 7, 7] average pool meets a single time step (§1.2)."""

TATS_BN_EPS = 1e-5
"""BatchNorm eps of the TATS/VideoGPT port that LVDM/Dysen use (Sonnet's, and piergiaj's, is 1e-3; §1.2)."""


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return value if isinstance(value, tuple) else (value, value, value)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (front, back) of one axis."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Pad [B, C, T, H, W] so a conv or pool of ``kernel``/``stride`` gives ceil(size / stride) outputs."""
    t, h, w = (_same_padding(s, k, st) for s, k, st in zip(x.shape[2:], kernel, stride, strict=True))
    return F.pad(x, (*w, *h, *t))


class MaxPool3dSame(nn.MaxPool3d):
    """Max pooling with TF "SAME" padding (zero-padded, harmless after a ReLU; §1.2)."""

    def __init__(self, kernel: int | tuple[int, int, int], stride: int | tuple[int, int, int]) -> None:
        super().__init__(_triple(kernel), _triple(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_pad_same(x, self.kernel_size, self.stride))


class Unit3D(nn.Module):
    """Conv3d (SAME padding) → BatchNorm → ReLU, or a biased linear conv (the logits layer)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        stride: int = 1,
        *,
        bn_eps: float = TATS_BN_EPS,
        logits: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.logits = (kernel,) * 3, (stride,) * 3, logits
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(cout, eps=bn_eps, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))  # [B, cout, T', H', W']
        return x if self.logits else F.relu(self.bn(x))


class InceptionModule(nn.Module):
    """Four parallel branches (1×1; 1×1→3×3; 1×1→3×3; 3×3 max-pool→1×1) concatenated on channels."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int], bn_eps: float) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, widths[0], bn_eps=bn_eps)
        self.b1a = Unit3D(cin, widths[1], bn_eps=bn_eps)
        self.b1b = Unit3D(widths[1], widths[2], 3, bn_eps=bn_eps)
        self.b2a = Unit3D(cin, widths[3], bn_eps=bn_eps)
        self.b2b = Unit3D(widths[3], widths[4], 3, bn_eps=bn_eps)
        self.b3a = MaxPool3dSame(3, 1)
        self.b3b = Unit3D(cin, widths[5], bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)  # [B, w0 + w2 + w4 + w5, T, H, W]


_MIXED = {  # name: (input channels, branch widths), as in pytorch-i3d
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """[B, 3, T ≥ 9, 224, 224] in [-1, 1] → [B, num_classes] logits averaged over time (pytorch-i3d names)."""

    def __init__(self, num_classes: int = 400, *, bn_eps: float = TATS_BN_EPS) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, 2, bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3, bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name in ("Mixed_3b", "Mixed_3c"):
            self.add_module(name, InceptionModule(*_MIXED[name], bn_eps))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame(3, 2)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            self.add_module(name, InceptionModule(*_MIXED[name], bn_eps))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame(2, 2)
        for name in ("Mixed_5b", "Mixed_5c"):
            self.add_module(name, InceptionModule(*_MIXED[name], bn_eps))
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=1)
        self.logits = Unit3D(1024, num_classes, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.named_children():
            if name == "avg_pool":
                break
            x = layer(x)  # down to Mixed_5c: [B, 1024, ⌈T/8⌉, ⌈H/32⌉, ⌈W/32⌉]
        if x.shape[2] < 2 or min(x.shape[3:]) < 7:
            raise VideoInputError(
                f"I3D needs at least {I3D_MIN_FRAMES} frames of {I3D_SIZE}×{I3D_SIZE}; got an input that pools to "
                f"{tuple(x.shape[2:])} (need ≥ (2, 7, 7))"
            )
        x = self.logits(self.avg_pool(x))  # [B, classes, T'', 1, 1]; dropout is the identity in eval
        return x.squeeze(4).squeeze(3).mean(dim=2)  # [B, classes]


class I3DExtractor(nn.Module):
    """Either weight file behind one call → [B, 400] logits: [B, 3, T, 224, 224] in [-1, 1] (``call`` "tats"), or,
    for StyleGAN-V's protocol (``call`` "stylegan-v", TorchScript only), uint8 [B, 3, T, H, W] at the videos' own
    size, which the network rescales and resizes itself."""

    def __init__(
        self, network: nn.Module, *, torchscript: bool, sha256: str | None = None, call: I3DCall = "tats"
    ) -> None:
        super().__init__()
        if call == "stylegan-v" and not torchscript:
            raise VideoInputError("StyleGAN-V's FVD calls the TorchScript I3D (i3d_torchscript.pt), not a state dict")
        self.network, self.torchscript, self.sha256, self.call = network, torchscript, sha256, call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.call == "stylegan-v":  # as StyleGAN-V's compute_fvd: the detector's own rescaling and resizing
            return self.network(x, rescale=True, resize=True, return_features=True)
        if self.torchscript:  # StyleGAN-V's signature; keywords are required (eval_data.md §1.6)
            return self.network(x, rescale=False, resize=False, return_features=True)
        return self.network(x)


def load_i3d(
    path: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    bn_eps: float = TATS_BN_EPS,
    call: I3DCall = "tats",
) -> I3DExtractor:
    """Load ``i3d_pretrained_400.pt`` (state dict; ``bn_eps`` 1e-5 as TATS/LVDM, 1e-3 as piergiaj's original) or
    ``i3d_torchscript.pt`` (TorchScript), in eval mode on the CPU, fed as ``call`` says.

    The file's SHA-256 is kept as ``.sha256`` to print beside results; a pinned ``expected_sha256`` that
    differs is an error.
    """
    file, digest = checked_file(path, expected_sha256, "I3D")
    if is_torchscript(file):
        with warnings.catch_warnings():  # torch.jit.load is deprecated, but it is the only reader of this format
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            network = torch.jit.load(file, map_location="cpu").eval()
        return I3DExtractor(network, torchscript=True, sha256=digest, call=call)
    network = InceptionI3d(400, bn_eps=bn_eps)
    load_strict(network, load_state_dict(file), file)
    return I3DExtractor(network.eval(), torchscript=False, sha256=digest, call=call)


def preprocess_i3d(videos: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 or [-1, 1] float videos [N, T, H, W, 3] → [N, 3, T, 224, 224] in [-1, 1] (eval_data.md §1.4)."""
    x = video_tensor(videos)  # [N, 3, T, H, W]
    if x.shape[2] < I3D_MIN_FRAMES:
        raise VideoInputError(f"I3D needs at least {I3D_MIN_FRAMES} frames per clip (16 is usual), got {x.shape[2]}")
    return resize_frames(x, I3D_SIZE)


def preprocess_stylegan_v(videos: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 or [-1, 1] float videos [N, T, H, W, 3] → uint8 [N, 3, T, H, W] at their own size, as StyleGAN-V hands
    them to its TorchScript I3D."""
    return video_uint8(videos).permute(0, 4, 1, 2, 3)  # [N, 3, T, H, W]


def i3d_features(
    videos: np.ndarray | torch.Tensor,
    model: nn.Module,
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """FVD embeddings [N, 400] (float32, CPU) of videos [N, T, H, W, 3], uint8 or float in [-1, 1], fed as the
    extractor's ``call`` says."""
    prepare = preprocess_stylegan_v if getattr(model, "call", "tats") == "stylegan-v" else preprocess_i3d
    return run_batches(model, videos, prepare, batch_size=batch_size, device=device, progress=progress, desc="I3D")
