"""Diffusion maths, kept apart from the networks: schedules, the training loss, guidance, samplers.

The networks (``dysen.models``) know nothing of noise levels; everything here is a small function over
tensors or a thin builder of a diffusers scheduler. Importing this package is light (torch only).
"""

from dysen.diffusion.guidance import combine, compositional_cfg, guidance_weights
from dysen.diffusion.loss import condition_dropout, diffusion_loss, min_snr_weight, q_sample, v_target
from dysen.diffusion.sampling import make_scheduler, step_kwargs
from dysen.diffusion.schedules import DiffusionConfig, DiffusionConfigError, alphas_cumprod, make_betas

__all__ = [
    "DiffusionConfig",
    "DiffusionConfigError",
    "alphas_cumprod",
    "combine",
    "compositional_cfg",
    "condition_dropout",
    "diffusion_loss",
    "guidance_weights",
    "make_betas",
    "make_scheduler",
    "min_snr_weight",
    "q_sample",
    "step_kwargs",
    "v_target",
]
