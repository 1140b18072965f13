"""The denoising training loss (DDPM's L_simple) for ε- or v-prediction, and condition dropout masks.

* Forward sample (Ho et al. 2020, eq. 4): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, ε ~ N(0, I).
* L_simple (Ho et al. 2020, eq. 14): E_{t, x_0, ε} ‖target − f_θ(x_t, t, c)‖, t ~ U{0, …, T−1}, with
  target = ε (ε-prediction, LVDM) or v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022, eq. 9 / app. D).
  The norm is squared L2 (default) or L1 (LVDM UCF-101, dysen_spec.md §5.1), averaged over every element.
* Min-SNR-γ weighting (Hang et al. 2023, eq. 8 / table 1), optional: with SNR_t = ᾱ_t / (1 − ᾱ_t), each
  sample's error is weighted by min(SNR_t, γ) / SNR_t for ε-prediction and min(SNR_t, γ) / (SNR_t + 1)
  for v-prediction, i.e. x_0-space weights clipped at γ: the nearly clean steps stop dominating the
  gradient, which converges several times faster for small budgets.

Classifier-free guidance needs the network to also see null conditions in training. The loss does not
know what a condition looks like (text tokens, DSG tokens, a class id…), so **dropout is the caller's**:
``condition_dropout`` draws, per sample, whether its text and (independently) its DSG are dropped, and
the caller swaps in the null text / masks out the DSG before building ``cond``.

Flow matching (rectified flow; Liu et al. 2022; Esser et al. 2024 "SD3", §2), as Wan is trained:

* Forward path (SD3 eq. 3 with a_t = 1 − σ, b_t = σ): x_σ = (1 − σ) x_0 + σ ε, σ ∈ (0, 1).
* Target (SD3 eq. 6 / Lipman et al. 2023): the velocity v = dx_σ/dσ = ε − x_0; loss ‖v − f_θ(x_σ, 1000 σ, c)‖²,
  averaged over every element (uniform weighting of the conditional flow-matching loss, SD3 eq. 7 with w = 1).
* σ sampling (``FlowSigmas``): logit-normal, σ = sigmoid(m + s·n), n ~ N(0, 1) (SD3 eq. 19; their best
  "rf/lognorm(0.00, 1.00)"), then the timestep shift σ' = α σ / (1 + (α − 1) σ) (SD3 eq. 23; the ``shift`` of
  diffusers' ``FlowMatchEulerDiscreteScheduler`` and Wan's sampler, so training and sampling see the same σ'), or
  ``uniform``: σ ~ U(0, 1), shifted the same way (Wan's training code: shifted uniform timesteps).
  The denoiser is told t = 1000 σ', the timestep diffusers' flow-matching schedulers give it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from dysen.diffusion.schedules import DiffusionConfig, DiffusionConfigError, alphas_cumprod, make_betas

ModelFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] broadcast to ``like``'s rank: [B] -> [B, 1, 1, …]."""
    out = values.to(like.device)[t].to(like.dtype)  # [B]
    return out.reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4); x0, noise [B, …], t [B] long, abar [T]."""
    return _gather(abar.sqrt(), t, x0) * x0 + _gather((1 - abar).sqrt(), t, x0) * noise


def v_target(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022, eq. 9); same shape as x0."""
    return _gather(abar.sqrt(), t, x0) * noise - _gather((1 - abar).sqrt(), t, x0) * x0


def diffusion_loss(
    model_fn: ModelFn,
    x0: torch.Tensor,
    cond: Any,
    config: DiffusionConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_simple (DDPM eq. 14) of ``model_fn(x_t, t, cond)`` on clean latents x0 [B, C, T, h, w] under the schedule
    of ``config``; a scalar (``noise_prediction_loss``)."""
    abar = alphas_cumprod(make_betas(config))  # [T]
    return noise_prediction_loss(
        model_fn, x0, cond, abar, config.prediction_type, generator, norm=config.loss, snr_gamma=config.snr_gamma
    )


def noise_prediction_loss(
    model_fn: ModelFn,
    x0: torch.Tensor,
    cond: Any,
    abar: torch.Tensor,
    prediction_type: Literal["epsilon", "v_prediction"],
    generator: torch.Generator | None = None,
    norm: Literal["l2", "l1"] = "l2",
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """L_simple (DDPM eq. 14) of ``model_fn(x_t, t, cond)`` on clean latents x0 [B, C, T, h, w] under ᾱ ``abar``
    [T] (the project's schedule, or a pretrained backbone's scheduler's ``alphas_cumprod``); a scalar.

    ``cond`` is passed through untouched (apply ``condition_dropout`` before); ``generator`` draws t and ε
    and must live on x0's device. The latents, the noise and the loss are float32 whatever the autocast
    (mixed-precision) dtype of the model: a bf16 ε would round the regression target itself.
    """
    x0 = x0.float()  # an autoencoder under autocast returns bf16/fp16 latents
    abar = abar.to(x0.device)  # [T]
    batch = x0.shape[0]
    t = torch.randint(0, len(abar), (batch,), generator=generator, device=x0.device)  # [B]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)  # [B, C, T, h, w]
    x_t = q_sample(x0, t, noise, abar)  # [B, C, T, h, w]
    target = noise if prediction_type == "epsilon" else v_target(x0, t, noise, abar)
    error = model_fn(x_t, t, cond).float() - target  # [B, C, T, h, w]
    per_sample = (error.abs() if norm == "l1" else error.square()).flatten(1).mean(1)  # [B]
    if snr_gamma is not None:
        per_sample = per_sample * min_snr_weight(abar[t], snr_gamma, prediction_type)
    return per_sample.mean()


def min_snr_weight(abar_t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-γ weight per sample (Hang et al. 2023): min(SNR, γ)/SNR (ε) or min(SNR, γ)/(SNR + 1) (v); [B]."""
    snr = abar_t / (1 - abar_t)  # [B]
    clipped = snr.clamp(max=gamma)
    return clipped / snr if prediction_type == "epsilon" else clipped / (snr + 1)


def condition_dropout(
    batch: int, config: DiffusionConfig, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop_text [B] bool, drop_dsg [B] bool): independent Bernoulli(text_dropout) and Bernoulli(dsg_dropout).

    Independent drops give the network all four of (∅,∅), (text,∅), (∅,dsg), (text,dsg), which the
    compositional guidance of ``dysen.diffusion.guidance`` needs. The nulls the pipeline samples with:
    the text of the empty prompt "" (as LVDM), and the DSG tokens with their mask all False.
    """
    u = torch.rand((2, batch), generator=generator, device=device)  # [2, B]
    return u[0] < config.text_dropout, u[1] < config.dsg_dropout


# -- flow matching (rectified flow) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowSigmas:
    """How training draws the noise level σ of flow matching (see the module docstring)."""

    kind: Literal["logit_normal", "uniform"] = "logit_normal"  # SD3 eq. 19, or U(0, 1) (Wan's training code)
    mean: float = 0.0  # m of the logit-normal
    std: float = 1.0  # s of the logit-normal
    shift: float = 3.0  # α of the timestep shift (SD3 eq. 23); 1 = none. Wan 2.1 480p samples with 3
    num_train_timesteps: int = 1000  # the denoiser sees t = num_train_timesteps · σ

    def __post_init__(self) -> None:
        if self.kind not in ("logit_normal", "uniform") or self.std <= 0 or self.shift <= 0:
            raise DiffusionConfigError(f"invalid FlowSigmas (kind, std > 0, shift > 0): {self}")


def shift_sigmas(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """σ' = α σ / (1 + (α − 1) σ) (SD3 eq. 23), as ``FlowMatchEulerDiscreteScheduler(shift=α)``."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_sigmas(
    batch: int, config: FlowSigmas, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """σ' [B] in (0, 1): logit-normal (SD3 eq. 19) or uniform, then shifted (SD3 eq. 23)."""
    if config.kind == "logit_normal":
        n = torch.randn((batch,), generator=generator, device=device)  # [B]
        sigma = torch.sigmoid(config.mean + config.std * n)
    else:
        sigma = torch.rand((batch,), generator=generator, device=device)  # [B]
    return shift_sigmas(sigma, config.shift)


def flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 − σ) x_0 + σ ε (SD3 eq. 3, rectified flow); x0, noise [B, …], sigma [B]."""
    s = sigma.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))  # [B, 1, …]
    return (1 - s) * x0 + s * noise


def flow_matching_loss(
    model_fn: ModelFn,
    x0: torch.Tensor,
    cond: Any,
    config: FlowSigmas,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """‖(ε − x_0) − f_θ(x_σ, 1000 σ, cond)‖² averaged over every element (SD3 eq. 6–7, w = 1); a scalar.

    ``generator`` draws σ then ε (on x0's device); the target and the loss are float32 whatever the autocast.
    """
    x0 = x0.float()
    sigma = sample_sigmas(x0.shape[0], config, generator, x0.device)  # [B]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)  # [B, C, T, h, w]
    x_t = flow_interpolate(x0, noise, sigma)  # [B, C, T, h, w]
    t = sigma * config.num_train_timesteps  # [B] float timesteps, as diffusers' flow-matching schedulers
    error = model_fn(x_t, t, cond).float() - (noise - x0)  # [B, C, T, h, w]
    return error.square().mean()
