"""Noise schedules as pure functions, and the one config of the diffusion process.

Forward process (DDPM, Ho et al. 2020, eq. 4): q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), with
ᾱ_t = Π_{s≤t} (1 − β_s). The schedules give β_1..β_T:

* ``scaled_linear`` (LDM/LVDM's "linear"): β_t = (linspace(√β_start, √β_end, T))², LVDM UCF-101
  uses 0.0015 → 0.0155 and the LVDM/SD text-to-video models 0.00085 → 0.012 (dysen_spec.md §5.1, §5.2);
* ``linear`` (DDPM): β_t = linspace(β_start, β_end, T);
* ``cosine`` (Nichol & Dhariwal 2021, eq. 17): ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β ≤ 0.999.

Each matches the diffusers scheduler of the same name bit for bit (float32), so the samplers built in
``dysen.diffusion.sampling`` from these betas reproduce LVDM's (backbones.md §2.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from dysen.errors import DysenError

BetaSchedule = Literal["scaled_linear", "linear", "cosine"]
PredictionType = Literal["epsilon", "v_prediction"]
LossType = Literal["l2", "l1"]
SamplerName = Literal["ddim", "dpmpp", "euler"]
TrainLatents = Literal["sample", "mean"]


class DiffusionConfigError(DysenError, ValueError):
    """A diffusion setting is out of range or names an unknown schedule, loss or sampler."""


@dataclass(frozen=True)
class DiffusionConfig:
    """The diffusion process, its training loss and the default sampler (LVDM T2V defaults)."""

    num_train_timesteps: int = 1000  # T, number of discrete noise levels
    beta_schedule: BetaSchedule = "scaled_linear"  # how β_1..β_T are spaced (module docstring)
    beta_start: float = 0.00085  # β_1 (ignored by "cosine")
    beta_end: float = 0.012  # β_T (ignored by "cosine")
    prediction_type: PredictionType = "epsilon"  # what the network predicts: ε or v = √ᾱ ε − √(1−ᾱ) x_0
    loss: LossType = "l2"  # distance between prediction and target (LVDM UCF uses l1)
    text_dropout: float = 0.1  # P(text replaced by the null prompt) in training, for classifier-free guidance
    dsg_dropout: float = 0.1  # P(DSG dropped), drawn independently of the text dropout
    snr_gamma: float | None = None  # Min-SNR-γ loss weighting (Hang et al. 2023; 5 is theirs); None: uniform
    train_latents: TrainLatents = "sample"  # x_0 in training: a posterior draw (LDM/LVDM) or the posterior mean
    sampler: SamplerName = "ddim"  # default sampler of the pipeline
    eta: float = 0.0  # DDIM stochasticity (0: deterministic ODE; 1: DDPM-like, LVDM's default)
    steps: int = 50  # default number of denoising steps of the pipeline (a small model may need fewer)
    guidance: float = 7.5  # default text guidance scale s_text of the pipeline (a small model may want less)
    dsg_guidance: float | None = None  # default DSG guidance scale s_dsg (None: = guidance)

    def __post_init__(self) -> None:
        checks = {
            "num_train_timesteps": self.num_train_timesteps >= 2,
            "beta_schedule": self.beta_schedule in ("scaled_linear", "linear", "cosine"),
            "beta_start/beta_end": 0.0 < self.beta_start < self.beta_end < 1.0,
            "prediction_type": self.prediction_type in ("epsilon", "v_prediction"),
            "loss": self.loss in ("l2", "l1"),
            "text_dropout": 0.0 <= self.text_dropout <= 1.0,
            "dsg_dropout": 0.0 <= self.dsg_dropout <= 1.0,
            "snr_gamma": self.snr_gamma is None or self.snr_gamma > 0.0,
            "train_latents": self.train_latents in ("sample", "mean"),
            "sampler": self.sampler in ("ddim", "dpmpp", "euler"),
            "eta": 0.0 <= self.eta <= 1.0,
            "steps": 1 <= self.steps <= self.num_train_timesteps,  # no scheduler spaces more steps than levels
            "guidance": 0.0 <= self.guidance < math.inf,  # also refuses NaN
            "dsg_guidance": self.dsg_guidance is None or 0.0 <= self.dsg_guidance < math.inf,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise DiffusionConfigError(f"invalid DiffusionConfig {bad}: {self}")


def scaled_linear_betas(num_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_t = (linspace(√β_start, √β_end, T))² — LDM/LVDM's "linear" schedule; [T] float32."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float32) ** 2


def linear_betas(num_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_t = linspace(β_start, β_end, T) (DDPM); [T] float32."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """β_t = min(1 − ᾱ(t/T)/ᾱ((t−1)/T), max_beta) with Nichol & Dhariwal's ᾱ (eq. 17); [T] float32."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float32)


def make_betas(config: DiffusionConfig) -> torch.Tensor:
    """The β_1..β_T of ``config``; [T] float32, increasing."""
    if config.beta_schedule == "scaled_linear":
        return scaled_linear_betas(config.num_train_timesteps, config.beta_start, config.beta_end)
    if config.beta_schedule == "linear":
        return linear_betas(config.num_train_timesteps, config.beta_start, config.beta_end)
    return cosine_betas(config.num_train_timesteps)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = Π_{s≤t} (1 − β_s); [T], decreasing from ≈1 towards 0."""
    return torch.cumprod(1.0 - betas, dim=0)
