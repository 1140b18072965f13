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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dysen.diffusion.schedules import DiffusionConfig, alphas_cumprod, make_betas

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
    """L_simple (DDPM eq. 14) of ``model_fn(x_t, t, cond)`` on clean latents x0 [B, C, T, h, w]; a scalar.

    ``cond`` is passed through untouched (apply ``condition_dropout`` before); ``generator`` draws t and ε
    and must live on x0's device. The latents, the noise and the loss are float32 whatever the autocast
    (mixed-precision) dtype of the model: a bf16 ε would round the regression target itself.
    """
    x0 = x0.float()  # an autoencoder under autocast returns bf16/fp16 latents
    abar = alphas_cumprod(make_betas(config)).to(x0.device)  # [T]
    batch = x0.shape[0]
    t = torch.randint(0, config.num_train_timesteps, (batch,), generator=generator, device=x0.device)  # [B]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)  # [B, C, T, h, w]
    x_t = q_sample(x0, t, noise, abar)  # [B, C, T, h, w]
    target = noise if config.prediction_type == "epsilon" else v_target(x0, t, noise, abar)
    error = model_fn(x_t, t, cond).float() - target  # [B, C, T, h, w]
    per_sample = (error.abs() if config.loss == "l1" else error.square()).flatten(1).mean(1)  # [B]
    if config.snr_gamma is not None:
        per_sample = per_sample * min_snr_weight(abar[t], config.snr_gamma, config.prediction_type)
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
