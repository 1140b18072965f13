"""Inception-v3 pool3 features (2048-d) for frame FID, with the TF-FID network variant.

Szegedy et al. 2016, "Rethinking the Inception Architecture"; FID by Heusel et al. 2017. The FID weights
(``pt_inception-2015-12-05-6726825d.pth`` of pytorch-fid, a port of TF's 2015-12-05 graph) need
pytorch-fid's variant of torchvision's ``Inception3`` (eval_data.md §3.2): average pools in the A, C and
first E blocks exclude padding (``count_include_pad=False``), and the last E block max-pools its pool
branch. torchvision does not import beside this torch build, so the network is written here with
torchvision's parameter names; the file is read with ``torch.load(weights_only=True)`` and its 1008-way
``fc`` head is ignored.

Preprocessing as pytorch-fid: frames bilinearly resized to 299×299 (``align_corners=False``, no
antialiasing), RGB in [-1, 1]. Golden-value tests run when ``DYSEN_INCEPTION_WEIGHTS`` names the file.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dysen.eval.features.frames import VideoInputError, resize_frames, run_batches, video_tensor
from dysen.eval.features.weights import checked_file, load_state_dict, load_strict

INCEPTION_SIZE = 299

_Size = int | tuple[int, int]


class BasicConv2d(nn.Module):
    """Conv2d (no bias) → BatchNorm (eps 1e-3) → ReLU."""

    def __init__(self, cin: int, cout: int, kernel: _Size, stride: int = 1, padding: _Size = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3×3 stride-1 average pool that excludes the zero padding (the TF-FID variant)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35×35 block: 1×1, 5×5, double 3×3 and pool branches → 224 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branches = (self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double, self.branch_pool(_avg_pool(x)))
        return torch.cat(branches, 1)


class InceptionB(nn.Module):
    """35→17 reduction: strided 3×3, strided double 3×3 and max-pool branches."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat((self.branch3x3(x), double, F.max_pool2d(x, 3, stride=2)), 1)


class InceptionC(nn.Module):
    """17×17 block with factorised 7×7 convolutions → 768 channels."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat((self.branch1x1(x), single, double, self.branch_pool(_avg_pool(x))), 1)


class InceptionD(nn.Module):
    """17→8 reduction: strided 3×3, strided 7×7→3×3 and max-pool branches."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat((self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)), 1)


class InceptionE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs → 2048 channels; ``max_pool`` marks the last (7c) block."""

    def __init__(self, cin: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        single = torch.cat((self.branch3x3_2a(single), self.branch3x3_2b(single)), 1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat((self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)), 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat((self.branch1x1(x), single, double, self.branch_pool(pooled)), 1)


class FIDInceptionV3(nn.Module):
    """[B, 3, 299, 299] RGB in [-1, 1] → pool3 features [B, 2048] (torchvision ``Inception3`` names)."""

    sha256: str | None = None
    """SHA-256 of the weight file it was loaded from (set by ``load_inception``)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280, max_pool=False), InceptionE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)  # ends at Mixed_7c: [B, 2048, 8, 8] for 299×299 input
        return x.mean(dim=(2, 3))  # [B, 2048], the global average pool ("pool3")


def load_inception(path: str | os.PathLike, *, expected_sha256: str | None = None) -> FIDInceptionV3:
    """Load ``pt_inception-2015-12-05-6726825d.pth`` (or any state dict of this network), in eval mode.

    The file's SHA-256 is kept as ``.sha256``; a pinned ``expected_sha256`` that differs is an error.
    """
    file, digest = checked_file(path, expected_sha256, "Inception")
    model = FIDInceptionV3()
    load_strict(model, load_state_dict(file), file, ignore=("fc.", "AuxLogits."))
    model.sha256 = digest
    return model.eval()


def preprocess_inception(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 or [-1, 1] float frames [M, H, W, 3] → [M, 3, 299, 299] in [-1, 1] (pytorch-fid's resize)."""
    x = torch.as_tensor(frames)
    if x.ndim not in (3, 4):
        raise VideoInputError(f"frames must be [M, H, W, 3] (or grayscale [M, H, W]), got {tuple(x.shape)}")
    x = video_tensor(x.unsqueeze(1))  # [M, 3, 1, H, W]
    return resize_frames(x, INCEPTION_SIZE)[:, :, 0]  # [M, 3, 299, 299]


def inception_features(
    frames: np.ndarray | torch.Tensor,
    model: nn.Module,
    *,
    batch_size: int = 50,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Pool3 features [M, 2048] of frames [M, H, W, 3] (all frames of videos: ``videos.reshape(-1, H, W, 3)``)."""
    return run_batches(
        model, frames, preprocess_inception, batch_size=batch_size, device=device, progress=progress, desc="Inception"
    )
