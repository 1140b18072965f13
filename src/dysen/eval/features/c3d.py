"""C3D fine-tuned on UCF-101: the classifier behind the video Inception Score.

Tran et al. 2015, "Learning Spatiotemporal Features with 3D Convolutional Networks" (C3D v1.0, Sports-1M,
fine-tuned on UCF-101), as TGANv2 ports it (``C3DVersion1UCF101``, Saito et al. 2020; eval_data.md §2):

* input: 16 RGB frames in [-1, 1], each resized to 112×112 by bilinear interpolation with corner alignment
  (chainer ``resize_images``; inferred from chainer's default);
* then (x + 1)·128 in **BGR** minus the C3D mean volume ``mean2.npz[:, :, 8:120, 8:120]`` (§2.2);
* conv1a → pool1 (1,2,2) → conv2a → pool2 → conv3a/b → pool3 → conv4a/b → pool4 → conv5a/b → pool5 (all
  2×2×2, ceil mode as chainer's ``cover_all``, so pool5 gives 512·1·4·4 = 8192) → fc6 → fc7 → fc8 (101);
  IS uses softmax(fc8) (§2.1).

Accepted weights (never downloaded; eval_data.md §4):

* TGANv2's chainer file ``conv3d_deepnetA_ucf.npz`` (keys ``conv1a/W`` … ``fc8/b``, read with
  ``numpy.load(allow_pickle=False)``) together with ``mean2.npz`` (key ``mean``, [3, 16, 128, 171], BGR);
* a torch state dict of ``C3D`` (``torch.load(weights_only=True)``), which holds the cropped mean as the
  ``mean`` buffer, or takes it from ``mean_path``.

StyleGAN-V's TorchScript ``c3d_ucf101.pt`` is not accepted: its input convention is not documented
(§2.2). Golden-value tests run when ``DYSEN_C3D_WEIGHTS`` (and ``DYSEN_C3D_MEAN`` for the npz) are set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dysen.eval.features.frames import VideoInputError, resize_frames, run_batches, video_tensor
from dysen.eval.features.weights import checked_file, load_state_dict, load_strict
from dysen.models.pretrained import CheckpointError

C3D_FRAMES = 16
C3D_SIZE = 112
MEAN_CROP = 8
"""The mean volume [3, 16, 128, 171] is cropped at [8:120, 8:120] (a fixed offset, as TGANv2 does)."""

_CONVS = {  # name: (in, out); every conv is 3×3×3, stride 1, pad 1, then ReLU
    "conv1a": (3, 64),
    "conv2a": (64, 128),
    "conv3a": (128, 256),
    "conv3b": (256, 256),
    "conv4a": (256, 512),
    "conv4b": (512, 512),
    "conv5a": (512, 512),
    "conv5b": (512, 512),
}
_POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": 2, "conv3b": 2, "conv4b": 2, "conv5b": 2}


class C3D(nn.Module):
    """[B, 3, 16, 112, 112] RGB in [-1, 1] → [B, num_classes] fc8 logits (mean subtraction inside)."""

    sha256: str | None = None
    """SHA-256 of the weight file it was loaded from (set by ``load_c3d``)."""

    def __init__(self, num_classes: int = 101) -> None:
        super().__init__()
        for name, (cin, cout) in _CONVS.items():
            self.add_module(name, nn.Conv3d(cin, cout, 3, padding=1))
        self.fc6 = nn.Linear(512 * 4 * 4, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.register_buffer("mean", torch.zeros(3, C3D_FRAMES, C3D_SIZE, C3D_SIZE))  # BGR, 0..255 scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (3, C3D_FRAMES, C3D_SIZE, C3D_SIZE):
            raise VideoInputError(f"C3D takes [B, 3, {C3D_FRAMES}, {C3D_SIZE}, {C3D_SIZE}], got {tuple(x.shape)}")
        x = (x.flip(1) + 1.0) * 128.0 - self.mean  # [B, 3, 16, 112, 112], BGR minus the mean clip
        for name in _CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in _POOL_AFTER:
                x = F.max_pool3d(x, _POOL_AFTER[name], ceil_mode=True)
        x = F.relu(self.fc6(x.flatten(1)))  # [B, 4096] from [B, 512, 1, 4, 4]; dropout is off in eval
        return self.fc8(F.relu(self.fc7(x)))  # [B, classes]


def _chainer_state(path: Path) -> dict[str, torch.Tensor]:
    """TGANv2's ``conv3d_deepnetA_ucf.npz`` as a ``C3D`` state dict (``name/W`` → ``name.weight``, same layouts)."""
    suffix = {"W": "weight", "b": "bias"}
    with np.load(path, allow_pickle=False) as arrays:
        state = {}
        for key in arrays.files:
            layer, _, kind = key.strip("/").rpartition("/")
            if kind not in suffix:
                raise CheckpointError(f"{path}: unexpected array {key!r}; expected TGANv2's conv3d_deepnetA_ucf.npz")
            state[f"{layer}.{suffix[kind]}"] = torch.from_numpy(arrays[key].astype(np.float32))
    return state


def _mean_volume(path: str | os.PathLike) -> torch.Tensor:
    """``mean2.npz``'s C3D mean clip [3, 16, 128, 171] (BGR) cropped to [3, 16, 112, 112]."""
    with np.load(path, allow_pickle=False) as arrays:
        if "mean" not in arrays.files:
            raise CheckpointError(f"{path} has no 'mean' array; expected TGANv2's mean2.npz")
        mean = arrays["mean"].astype(np.float32)
    if mean.ndim != 4 or mean.shape[:2] != (3, C3D_FRAMES) or min(mean.shape[2:]) < MEAN_CROP + C3D_SIZE:
        raise CheckpointError(f"{path}: the mean volume has shape {mean.shape}, expected [3, 16, 128, 171]")
    return torch.from_numpy(mean[:, :, MEAN_CROP : MEAN_CROP + C3D_SIZE, MEAN_CROP : MEAN_CROP + C3D_SIZE].copy())


def load_c3d(
    path: str | os.PathLike, *, mean_path: str | os.PathLike | None = None, expected_sha256: str | None = None
) -> C3D:
    """Load the UCF-101 C3D from a chainer ``.npz`` (needs ``mean_path``) or a torch state dict, in eval mode.

    The weight file's SHA-256 is kept as ``.sha256``; a pinned ``expected_sha256`` that differs is an error.
    """
    file, digest = checked_file(path, expected_sha256, "C3D")
    state = _chainer_state(file) if file.suffix == ".npz" else load_state_dict(file)
    if mean_path is not None:
        state["mean"] = _mean_volume(mean_path)
    if "mean" not in state:
        raise CheckpointError(f"{file} has no mean volume: pass mean_path= (TGANv2's mean2.npz)")
    model = C3D()
    load_strict(model, state, file)
    model.sha256 = digest
    return model.eval()


def preprocess_c3d(videos: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 or [-1, 1] float videos [N, 16, H, W, 3] → [N, 3, 16, 112, 112] in [-1, 1] (eval_data.md §2.2)."""
    x = video_tensor(videos)  # [N, 3, T, H, W]
    if x.shape[2] != C3D_FRAMES:
        raise VideoInputError(f"C3D takes exactly {C3D_FRAMES} frames per clip (take the first 16), got {x.shape[2]}")
    return resize_frames(x, C3D_SIZE, align_corners=True)


def c3d_probs(
    videos: np.ndarray | torch.Tensor,
    model: nn.Module,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Class probabilities [N, 101] (float64 softmax of fc8) of 16-frame videos [N, 16, H, W, 3]."""
    logits = run_batches(
        model, videos, preprocess_c3d, batch_size=batch_size, device=device, progress=progress, desc="C3D"
    )
    return torch.softmax(logits.double(), dim=1)  # [N, 101]
