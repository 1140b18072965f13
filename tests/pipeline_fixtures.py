"""The tiny model of the pipeline and training tests (8×16×16 videos) and test stand-ins for its text encoder and
planner; nothing is downloaded."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from dysen.config import DysenVDMConfig, TextEncoderSpec, VAESpec, VideoSpec
from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.models.rgtrm import RGTrmConfig
from dysen.models.unet3d import UNet3DConfig
from dysen.models.vae import KLVideoAutoencoderConfig


class HashTextEncoder:
    """Test stand-in for a frozen text encoder: one seeded random 16-d vector per word."""

    dim = 16

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        words = [["<s>", *text.split()] for text in texts]
        length = max(len(w) for w in words)
        tokens, mask = torch.zeros(len(texts), length, self.dim), torch.zeros(len(texts), length, dtype=torch.bool)
        for i, row in enumerate(words):
            for j, word in enumerate(row):
                seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
                tokens[i, j] = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
                mask[i, j] = True
        return tokens, mask

    def pooled(self, texts: Sequence[str]) -> torch.Tensor:
        tokens, mask = self(texts)
        return (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    def to(self, device: str | torch.device) -> HashTextEncoder:
        return self  # CPU tensors; callers move them


class FixedPlanner:
    """A planner that always returns ``dsg``."""

    def __init__(self, dsg: DynamicSceneGraph) -> None:
        self.dsg = dsg

    def plan(self, prompt: str, demonstrations: object = None) -> DynamicSceneGraph:
        return self.dsg


TINY = DysenVDMConfig(
    unet=UNet3DConfig(
        model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2), head_dim=8,
        norm_groups=4, text_dim=16, dsg_dim=8, temporal_max_distance=4,
    ),
    rgtrm=RGTrmConfig(label_dim=16, dim=8, num_layers=1, num_heads=2),
    vae=VAESpec(kl3d=KLVideoAutoencoderConfig(
        base_channels=4, channel_mult=(1, 2), spatial_downsample=4, temporal_downsample=2, norm_groups=4,
    )),
    text_encoder=TextEncoderSpec(dim=16),
    video=VideoSpec(num_frames=8, height=16, width=16),
)  # fmt: skip
DSG_A = DynamicSceneGraph.from_events([Event(agent="circle", predicate="moves right", start=0, end=2)])
