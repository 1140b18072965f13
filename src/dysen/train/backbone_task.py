"""Training a backbone denoiser by flow matching, text only: ``BackboneTask`` for the one loop (issue 24 §4).

The denoiser is a real ``WanTransformer3DModel`` (``dysen.backbones.dysen_wan``) on the latents of a frozen
per-frame ``KLVideoAutoencoder``, conditioned only on the frozen MiniLM's states of the caption (no DSG, no boxes),
as a pretrained text-to-video backbone is. Loss: rectified flow, ‖(ε − x_0) − f_θ(x_σ, 1000 σ, c)‖² with x_σ =
(1 − σ) x_0 + σ ε and σ logit-normal then shifted (``dysen.diffusion.loss.flow_matching_loss``; SD3 eq. 3, 6, 19,
23), as Wan is trained. The caption is replaced by "" with probability ``text_dropout`` (the null prompt of
classifier-free guidance, which sampling pairs with the negative prompt "" by default). x_0 is the VAE's
normalised posterior mean (encoded now, or read from a latent cache). Prompts are encoded by the backbone's own
``encode_prompt`` and the velocity by its ``denoise_fn``, so training and ``dysen generate --backbone`` see the same
text states and the same model function; sample videos go through ``BackbonePipeline`` (the one sampler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dysen.backbone_pipeline import BackbonePipeline
from dysen.backbones.base import BackboneDefaults
from dysen.backbones.dysen_wan import DysenWanBackbone, MiniLMSpec, MiniLMStates, WanSize
from dysen.config import VideoSpec
from dysen.diffusion.loss import FlowSigmas, flow_matching_loss
from dysen.errors import DysenError
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.loop import StepOutput


@dataclass(frozen=True)
class BackboneTrainConfig:
    """A text-only flow-matching backbone: its transformer, text encoder, σ sampling and what it samples."""

    transformer: WanSize = field(default_factory=WanSize)
    text: MiniLMSpec = field(default_factory=MiniLMSpec)
    sigmas: FlowSigmas = field(default_factory=FlowSigmas)  # σ of training; its shift is the scheduler's too
    video: VideoSpec = field(default_factory=VideoSpec)  # training clips (16×64×64, 8 fps) and the default output
    text_dropout: float = 0.1  # P(caption -> "") per clip, for classifier-free guidance
    sample_steps: int = 25  # defaults saved with the model (``dysen generate --backbone`` without flags)
    sample_guidance: float = 5.0  # classifier-free guidance scale (Wan 2.1: 5)

    def __post_init__(self) -> None:
        if not 0 <= self.text_dropout < 1 or self.sample_steps < 1 or self.sample_guidance < 0:
            raise DysenError(
                f"invalid BackboneTrainConfig (text_dropout in [0, 1), steps >= 1, guidance >= 0): {self}"
            )


BACKBONE_PRESETS: dict[str, BackboneTrainConfig] = {
    # 1.26M parameters (width 128, 4 blocks, 1024 tokens per 16×64×64 clip); ~1.9 s per batch-8 step on 1 thread
    "wan-tiny": BackboneTrainConfig(),
    # the shipped shapes-wan-tiny's: the same with (1, 4, 4) patches, 256 tokens per clip; ~0.3 s per batch-8 step
    "shapes-wan-tiny": BackboneTrainConfig(transformer=WanSize(patch_size=(1, 4, 4))),
    # tests: a few thousand parameters
    "wan-test": BackboneTrainConfig(
        transformer=WanSize(num_layers=1, num_attention_heads=2, attention_head_dim=8, ffn_dim=16, freq_dim=8),
        text=MiniLMSpec(max_length=32),
        video=VideoSpec(num_frames=8, height=16, width=16),
        sample_steps=2,
    ),
}


def sample_defaults(config: BackboneTrainConfig) -> BackboneDefaults:
    """What the trained model makes when asked for nothing in particular (saved in its ``model_index.json``)."""
    video = config.video
    return BackboneDefaults(
        height=video.height, width=video.width, num_frames=video.num_frames, fps=video.fps,
        steps=config.sample_steps, guidance=config.sample_guidance,
    )  # fmt: skip


def make_scheduler(config: BackboneTrainConfig) -> Any:
    """The sampling scheduler saved with the model: flow-matching Euler with the training shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=config.sigmas.num_train_timesteps, shift=config.sigmas.shift
    )


class BackboneTask:
    """Flow matching of the transformer on the frozen VAE's latents under the caption's MiniLM states."""

    def __init__(self, transformer: nn.Module, vae: KLVideoAutoencoder, config: BackboneTrainConfig) -> None:
        self.transformer, self.vae, self.config = transformer.train(), vae.eval().requires_grad_(False), config
        self.text = MiniLMStates(config.text)
        self.backbone = DysenWanBackbone.from_modules(
            transformer, vae, self.text, make_scheduler(config), sample_defaults(config)
        )

    def modules(self) -> dict[str, nn.Module]:
        return {"transformer": self.transformer}

    def to(self, device: torch.device) -> BackboneTask:
        self.transformer.to(device)
        self.vae.to(device)
        self.text.to(device)
        self.backbone.device = device
        return self

    def step(self, batch: dict[str, Any], generator: torch.Generator) -> StepOutput:
        x0 = self._latents(batch, generator.device)  # [B, c, T, h, w]
        drop = torch.rand((len(x0),), generator=generator, device=generator.device) < self.config.text_dropout  # [B]
        captions = ["" if d else caption for caption, d in zip(batch["caption"], drop.tolist(), strict=True)]
        with torch.no_grad():
            text = self.backbone.encode_prompt(captions)  # [B, L, D], [B, L]
        loss = flow_matching_loss(self.backbone.denoise_fn, x0, text, self.config.sigmas, generator)
        return StepOutput(loss, {})

    @torch.no_grad()
    def _latents(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        """The normalised posterior mean [B, c, T, h, w]: encoded now, or from cached moments."""
        if "latent_mean" in batch:
            return self.vae.normalise(batch["latent_mean"].to(device))  # the posterior mean of the cached moments
        video = batch["video"]
        if video is None:
            raise DysenError("every clip of a batch failed to load: check the dataset")
        return self.vae.encode(video.to(device))

    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A video per caption of ``batch`` through the one sampler (the backbone's defaults; noise seeded by the
        clip's position): ``clip-<i>``, uint8 [T, H, W, 3]."""
        pipe = BackbonePipeline(self.backbone)
        return {
            f"clip-{i}": torch.from_numpy(pipe(caption, seed=i, progress=False).frames)
            for i, caption in enumerate(batch["caption"])
        }
