"""Diffusion maths, kept apart from the networks: schedules, the training loss, guidance, samplers.

The networks (``dysen.models``) know nothing of noise levels; everything here is a small function over
tensors or a thin builder of a diffusers scheduler, and one denoising loop over them (``sampler.denoise``).
Importing this package is light (torch and tqdm; diffusers only when a scheduler is built).
"""

from dysen.diffusion.guidance import (
    PASSES,
    GuidancePass,
    combine,
    compositional_cfg,
    guidance_passes,
    stack_passes,
)
from dysen.diffusion.loss import condition_dropout, diffusion_loss, min_snr_weight, q_sample, v_target
from dysen.diffusion.sampler import DenoisingStep, SamplingSettings, denoise
from dysen.diffusion.sampling import make_scheduler, step_kwargs
from dysen.diffusion.schedules import DiffusionConfig, DiffusionConfigError, alphas_cumprod, make_betas

__all__ = [
    "PASSES",
    "DenoisingStep",
    "DiffusionConfig",
    "DiffusionConfigError",
    "GuidancePass",
    "SamplingSettings",
    "alphas_cumprod",
    "combine",
    "compositional_cfg",
    "condition_dropout",
    "denoise",
    "diffusion_loss",
    "guidance_passes",
    "make_betas",
    "make_scheduler",
    "min_snr_weight",
    "q_sample",
    "stack_passes",
    "step_kwargs",
    "v_target",
]
