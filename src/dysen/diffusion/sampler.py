"""The one denoising loop (``denoise``) and the one rule for the settings it runs with (``SamplingSettings``).

``denoise`` is written in the style of k-diffusion's samplers: a pure function of a model function, a diffusers
scheduler, the initial noise and the conditions, with a callback and a progress flag, and nothing of the
networks. The pipeline (``DysenVDMPipeline.__call__``), the training-time samples (``VDMTask``) and, through the
pipeline, evaluation and the web demo all call it. Each step runs the guidance passes as one batch and combines
their predictions (``dysen.diffusion.guidance``): classifier-free guidance (Ho & Salimans 2022, eq. 6),
compositional over text and DSG, then one scheduler step x_t -> x_{t-1}.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from dysen.diffusion.guidance import GuidancePass, combine, guidance_passes
from dysen.diffusion.loss import ModelFn
from dysen.diffusion.sampling import make_scheduler
from dysen.diffusion.schedules import DiffusionConfig, DiffusionConfigError, SamplerName

MAX_STEPS = 1000
"""Most denoising steps of one video: the default ``num_train_timesteps`` (a model's own may lower it)."""


class NonFiniteLatentsError(DiffusionConfigError):
    """Sampling produced NaN or infinite latents (NaN weights, or guidance so large that it overflows)."""


@dataclass(frozen=True)
class SamplingSettings:
    """How one video is sampled: every field set (``resolve`` fills the unset ones from the model's config)."""

    steps: int  # denoising steps
    guidance: float  # s_text of the compositional guidance
    dsg_guidance: float  # s_dsg (0: the DSG is not used)
    sampler: SamplerName  # ddim, dpmpp or euler (``dysen.diffusion.sampling``)
    eta: float  # DDIM's η (0: deterministic)

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.steps, numbers.Integral) or isinstance(self.steps, bool):
            problems.append(f"steps must be a whole number, got {self.steps!r}")
        elif self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        elif self.steps > MAX_STEPS:
            problems.append(f"steps must be at most {MAX_STEPS} (noise levels of a default model), got {self.steps}")
        for name in ("guidance", "dsg_guidance"):
            value = getattr(self, name)
            if not _is_real(value) or not (math.isfinite(value) and value >= 0.0):
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if not _is_real(self.eta) or not 0.0 <= self.eta <= 1.0:  # also refuses NaN
            problems.append(f"eta must be a number in [0, 1], got {self.eta!r}")
        if problems:
            raise DiffusionConfigError("; ".join(problems))

    @classmethod
    def resolve(
        cls,
        defaults: DiffusionConfig,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        dsg_guidance: float | None = None,
        sampler: SamplerName | None = None,
        eta: float | None = None,
    ) -> SamplingSettings:
        """The settings with each unset (None) one taken from the model's ``defaults``; an s_dsg unset here and
        there is s_text (plain CFG on the joint condition: two UNet passes per step)."""
        guidance = defaults.guidance if guidance is None else guidance
        if dsg_guidance is None:
            dsg_guidance = guidance if defaults.dsg_guidance is None else defaults.dsg_guidance
        settings = cls(
            steps=defaults.steps if steps is None else steps,
            guidance=guidance,
            dsg_guidance=dsg_guidance,
            sampler=defaults.sampler if sampler is None else sampler,
            eta=defaults.eta if eta is None else eta,
        )
        settings.check_model(defaults)
        return settings

    @property
    def passes(self) -> tuple[GuidancePass, ...]:
        """The guidance passes these scales need, in their fixed order."""
        return guidance_passes(self.guidance, self.dsg_guidance)

    def check_model(self, config: DiffusionConfig) -> None:
        """Refuse more steps than ``config``'s model has noise levels (no scheduler can space them)."""
        if self.steps > config.num_train_timesteps:
            raise DiffusionConfigError(
                f"steps must be at most the model's {config.num_train_timesteps} noise levels, got {self.steps}"
            )

    def scheduler(self, config: DiffusionConfig) -> Any:
        """A fresh diffusers scheduler of ``sampler`` on ``config``'s betas, with ``steps`` timesteps set."""
        self.check_model(config)
        scheduler = make_scheduler(config, self.sampler)
        scheduler.set_timesteps(self.steps)
        return scheduler


def _is_real(value: object) -> bool:
    """A real number (a bool is not a scale)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class DenoisingStep:
    """What the callback of ``denoise`` sees after each step."""

    index: int  # 0-based, in sampling order
    timestep: torch.Tensor  # the scheduler's t of this step
    latents: torch.Tensor  # x_{t-1} [1, C, T, h, w]
    prediction: torch.Tensor  # the guided prediction ε̃ (or ṽ) at x_t [1, C, T, h, w]


def denoise(
    model_fn: ModelFn,
    scheduler: Any,
    noise: torch.Tensor,
    conditions: Any,
    passes: Sequence[GuidancePass],
    *,
    step_kwargs: Mapping[str, Any] | None = None,
    callback: Callable[[DenoisingStep], None] | None = None,
    progress: bool = False,
    guide: Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """x_0 [1, C, T, h, w] from unit noise ``noise`` [1, C, T, h, w] (scaled by ``scheduler.init_noise_sigma``).

    ``model_fn(x [P, C, T, h, w], t, conditions) -> [P, C, T, h, w]`` predicts all ``len(passes)`` guidance passes
    at once, ``conditions`` being stacked in the order of ``passes`` (``stack_passes``). ``scheduler``: a diffusers
    scheduler with its timesteps set; ``step_kwargs``: the extra arguments of its ``step`` (η and the generator of
    DDIM's noise, ``dysen.diffusion.sampling.step_kwargs``). ``callback`` sees every step; ``progress`` shows a
    tqdm bar. ``guide(x_t, index, t) -> x_t'`` (optional) changes the latents before each step's model call (energy
guidance: ``dysen.backbones.energy``). Latents that stop being finite raise ``NonFiniteLatentsError`` naming the
step.
    """
    extra = dict(step_kwargs or {})
    latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # x_T [1, C, T, h, w]; flow matching: x_1 = ε
    shape = latents.shape[1:]
    finite = []  # per step, kept on the device: reading each one would sync a GPU every step
    for index, t in enumerate(tqdm(scheduler.timesteps, desc="denoising", disable=not progress)):
        if guide is not None:
            latents = guide(latents, index, t)  # x_t moved before it is denoised
        model_input = scale_model_input(scheduler, latents, t).expand(len(passes), *shape)  # [P, C, T, h, w]
        prediction = model_fn(model_input, t.to(latents.device), conditions)  # [P, C, T, h, w]
        guided = combine(prediction.split(1), passes)  # [1, C, T, h, w], CFG (Ho & Salimans 2022, eq. 6)
        latents = scheduler.step(guided, t, latents, **extra).prev_sample  # x_{t-1} [1, C, T, h, w]
        finite.append(torch.isfinite(latents).all())
        if callback is not None:
            callback(DenoisingStep(index, t, latents, guided))
    bad = (~torch.stack(finite)).nonzero() if finite else ()  # [K, 1] indices of non-finite steps
    if len(bad):
        index = int(bad[0])
        raise NonFiniteLatentsError(
            f"the latents are not finite after denoising step {index + 1} of {len(scheduler.timesteps)} "
            f"(t = {int(scheduler.timesteps[index])}): the model's weights hold NaN/inf or the guidance scales are "
            "too large"
        )
    return latents


def scale_model_input(scheduler: Any, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The scheduler's model input at ``t`` (σ-scaled for Euler); flow-matching schedulers
    (``FlowMatchEulerDiscreteScheduler``) have no ``scale_model_input``: their input is x_t itself."""
    scale = getattr(scheduler, "scale_model_input", None)
    return latents if scale is None else scale(latents, t)
