"""Samplers through diffusers' schedulers, built from a ``DiffusionConfig`` with the same betas.

* ``ddim``: DDIM (Song et al. 2021, eq. 12) with η; configured as LVDM's sampler (``steps_offset=1``,
  ``set_alpha_to_one=False``, "leading" spacing), which reproduces its timesteps and σ's (backbones.md §2.5).
* ``dpmpp``: DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), deterministic; good at 20–25 steps.
* ``euler``: Euler steps on the probability-flow ODE in σ (Karras et al. 2022, Alg. 2 without churn).

The betas are passed as ``trained_betas`` so the three share ``dysen.diffusion.schedules`` exactly. The
denoising loop over them is ``dysen.diffusion.sampler.denoise``: scale the input, predict, then step the
scheduler with ``step_kwargs``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from dysen.diffusion.schedules import DiffusionConfig, DiffusionConfigError, SamplerName, make_betas


def make_scheduler(config: DiffusionConfig, sampler: SamplerName | None = None) -> Any:
    """A fresh diffusers scheduler for ``sampler`` (default: ``config.sampler``) on ``config``'s betas."""
    name = sampler or config.sampler
    common = {
        "num_train_timesteps": config.num_train_timesteps,
        "trained_betas": make_betas(config).numpy(),
        "prediction_type": config.prediction_type,
    }
    # each scheduler imported alone: DPM-Solver++'s module imports scipy.stats (~2.5 s of `dysen generate`)
    if name == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(
            **common, clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading"
        )
    if name == "dpmpp":
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    if name == "euler":
        from diffusers import EulerDiscreteScheduler

        return EulerDiscreteScheduler(**common)
    raise DiffusionConfigError(f"unknown sampler {name!r}; choose one of ddim, dpmpp, euler")


def step_kwargs(scheduler: Any, eta: float, generator: torch.Generator | None) -> dict[str, Any]:
    """Extra keyword arguments of ``scheduler.step``: η (DDIM only) and the generator of its noise, for a scheduler
    whose ``step`` takes one (UniPC's, deterministic, does not)."""
    from diffusers import DDIMScheduler

    if isinstance(scheduler, DDIMScheduler):
        return {"eta": eta, "generator": generator}
    if eta != 0.0:
        raise DiffusionConfigError(f"eta={eta} applies only to the ddim sampler; use eta=0 with {type(scheduler)}")
    return {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
