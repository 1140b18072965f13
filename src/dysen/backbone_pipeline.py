"""``BackbonePipeline``: prompt -> video with a pretrained backbone (Wan, ModelScope), no plan yet. Inference only.

prompt (+ the negative prompt, "" by default) -> the backbone's text states -> seeded unit noise -> the one
sampler (``dysen.diffusion.sampler.denoise``) with the backbone's own scheduler and classifier-free guidance
(Ho & Salimans 2022, eq. 6, as the passes of ``dysen.diffusion.guidance``) -> the backbone's VAE -> uint8 frames.
The DSG control of the backbone (attention processors, layouts) attaches here later.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dysen.backbones.base import Backbone, BackboneError, BackboneOptions
from dysen.backbones.folder import load_backbone
from dysen.diffusion.guidance import guidance_passes, stack_text
from dysen.diffusion.sampler import DenoisingStep, denoise
from dysen.diffusion.sampling import step_kwargs


@dataclass(frozen=True)
class BackboneSampling:
    """How one video is sampled with a backbone (``resolve`` fills unset fields from the backbone's defaults)."""

    steps: int  # denoising steps
    guidance: float  # classifier-free guidance scale (1: the prompt alone; 0: the negative prompt alone)
    eta: float  # DDIM's η (0 for every other scheduler)

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) or self.steps < 1:
            problems.append(f"steps must be a whole number >= 1, got {self.steps!r}")
        for name in ("guidance", "eta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if problems:
            raise BackboneError("; ".join(problems))

    @classmethod
    def resolve(
        cls, backbone: Backbone, *, steps: int | None = None, guidance: float | None = None, eta: float | None = None
    ) -> BackboneSampling:
        """The settings with each unset one from ``backbone.defaults``; refuses more steps than noise levels."""
        settings = cls(
            steps=backbone.defaults.steps if steps is None else steps,
            guidance=backbone.defaults.guidance if guidance is None else guidance,
            eta=0.0 if eta is None else eta,
        )
        if settings.steps > backbone.num_train_timesteps:
            raise BackboneError(
                f"steps must be at most the backbone's {backbone.num_train_timesteps} noise levels, "
                f"got {settings.steps}"
            )
        return settings


@dataclass(frozen=True, eq=False)
class BackboneVideo:
    """One generated video and where the time went."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    prompt: str
    seed: int  # of the initial noise (and of a stochastic scheduler's noise)
    fps: int  # the backbone's frame rate
    timings: dict[str, float]  # seconds spent in "encode", "sample", "decode"


class BackbonePipeline:
    """A backbone and the one sampler: ``pipe(prompt, seed=…)`` -> ``BackboneVideo``."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone

    @classmethod
    def from_folder(cls, folder: str | Path, options: BackboneOptions | None = None) -> BackbonePipeline:
        """Load the backbone in the local diffusers folder ``folder`` (``dysen.backbones.folder``)."""
        return cls(load_backbone(folder, options))

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        steps: int | None = None,
        guidance: float | None = None,
        eta: float | None = None,
        seed: int = 0,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        callback: Callable[[DenoisingStep], None] | None = None,
        progress: bool = True,
    ) -> BackboneVideo:
        """Generate one video of ``prompt``; unset sizes and settings are the backbone's defaults. Sizes the
        backbone cannot take raise ``BackboneSizeError`` before anything is allocated. Same arguments, same video."""
        backbone, defaults = self.backbone, self.backbone.defaults
        settings = BackboneSampling.resolve(backbone, steps=steps, guidance=guidance, eta=eta)
        shape = backbone.latent_shape(*backbone.geometry.video_size(num_frames, height, width))  # (c, t, h, w)
        timings: dict[str, float] = {}

        clock = time.perf_counter()
        passes = guidance_passes(settings.guidance, 0.0)  # (∅) and (text) of plain CFG; one pass at scale 0 or 1
        states, mask = backbone.encode_prompt([prompt, negative_prompt])  # [2, L, D], [2, L]
        conditions = stack_text(passes, (states[:1], mask[:1]), (states[1:], mask[1:]))  # [P, L, D], [P, L]
        timings["encode"] = time.perf_counter() - clock

        clock = time.perf_counter()
        scheduler = backbone.make_scheduler()
        scheduler.set_timesteps(settings.steps)
        generator = torch.Generator("cpu").manual_seed(seed)
        extra = step_kwargs(scheduler, settings.eta, generator)
        noise = torch.randn((1, *shape), generator=generator).to(backbone.device)  # [1, c, t, h, w]
        latents = denoise(
            backbone.denoise_fn, scheduler, noise, conditions, passes,
            step_kwargs=extra, callback=callback, progress=progress,
        )  # fmt: skip
        timings["sample"] = time.perf_counter() - clock

        clock = time.perf_counter()
        frames = backbone.decode_latents(latents).numpy()  # uint8 [T, H, W, 3]
        timings["decode"] = time.perf_counter() - clock
        return BackboneVideo(frames, prompt, seed, defaults.fps, timings)
