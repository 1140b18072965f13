"""dysen.diffusion: schedules against diffusers, closed forms, the loss, guidance and the samplers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from dysen.diffusion import (
    PASSES,
    DenoisingStep,
    DiffusionConfig,
    GuidancePass,
    SamplingSettings,
    alphas_cumprod,
    combine,
    compositional_cfg,
    condition_dropout,
    denoise,
    diffusion_loss,
    guidance_passes,
    make_betas,
    make_scheduler,
    min_snr_weight,
    q_sample,
    stack_passes,
    step_kwargs,
    v_target,
)
from dysen.errors import DysenError

DIFFUSERS_NAMES = {"scaled_linear": "scaled_linear", "linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("schedule", ["scaled_linear", "linear", "cosine"])
@pytest.mark.parametrize("start,end", [(0.0015, 0.0155), (0.00085, 0.012)])
def test_betas_match_diffusers_exactly_and_are_monotone(schedule: str, start: float, end: float) -> None:
    config = DiffusionConfig(beta_schedule=schedule, beta_start=start, beta_end=end)
    betas = make_betas(config)
    reference = DDPMScheduler(beta_schedule=DIFFUSERS_NAMES[schedule], beta_start=start, beta_end=end).betas
    assert betas.dtype == torch.float32 and betas.shape == (1000,)
    assert torch.equal(betas, reference)
    assert (betas.diff() >= 0).all()
    abar = alphas_cumprod(betas)
    assert (abar.diff() < 0).all() and 0 < abar[-1] < abar[0] < 1


def test_lvdm_ucf_schedule_end_points() -> None:
    betas = make_betas(DiffusionConfig(beta_start=0.0015, beta_end=0.0155))
    assert betas[0].item() == pytest.approx(0.0015) and betas[-1].item() == pytest.approx(0.0155)


def test_bad_config_is_a_dysen_error() -> None:
    with pytest.raises(DysenError, match="loss"):
        DiffusionConfig(loss="l3")  # type: ignore[arg-type]
    with pytest.raises(DysenError, match="beta_start"):
        DiffusionConfig(beta_start=0.02, beta_end=0.01)


def test_q_sample_and_v_target_closed_forms() -> None:
    config = DiffusionConfig()
    abar = alphas_cumprod(make_betas(config))
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
    t = torch.tensor([0, 500, 999])
    x_t, v = q_sample(x0, t, noise, abar), v_target(x0, t, noise, abar)
    a, b = abar[t].sqrt().view(3, 1, 1, 1, 1), (1 - abar[t]).sqrt().view(3, 1, 1, 1, 1)
    torch.testing.assert_close(x_t, a * x0 + b * noise)
    torch.testing.assert_close(a * x_t - b * v, x0)  # x_0 = √ᾱ x_t − √(1−ᾱ) v
    torch.testing.assert_close(b * x_t + a * v, noise)  # ε = √(1−ᾱ) x_t + √ᾱ v
    reference = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    torch.testing.assert_close(x_t, reference.add_noise(x0, noise, t))
    torch.testing.assert_close(v, reference.get_velocity(x0, noise, t))


@pytest.mark.parametrize("prediction_type,loss", [("epsilon", "l2"), ("v_prediction", "l1")])
def test_loss_is_finite_and_decreases_on_a_one_parameter_model(prediction_type: str, loss: str) -> None:
    config = DiffusionConfig(prediction_type=prediction_type, loss=loss)
    theta = torch.zeros((), requires_grad=True)
    x0 = 0.1 * torch.randn(64, 1, 2, 4, 4, generator=torch.Generator().manual_seed(1))  # for σ_data = 1, v ⟂ x_t

    def model_fn(x_t: torch.Tensor, t: torch.Tensor, cond: None) -> torch.Tensor:
        return theta * x_t

    def loss_at(seed: int) -> torch.Tensor:
        return diffusion_loss(model_fn, x0, None, config, torch.Generator().manual_seed(seed))

    before = loss_at(0).item()
    optimizer = torch.optim.SGD([theta], lr=0.5)
    for step in range(10):
        optimizer.zero_grad()
        value = loss_at(100 + step)
        assert torch.isfinite(value)
        value.backward()
        optimizer.step()
    assert loss_at(0).item() < 0.9 * before


def test_min_snr_weight_closed_form_and_loss_weighting() -> None:
    abar = torch.tensor([0.99, 0.5, 0.01])  # SNR 99, 1, 1/99
    snr = abar / (1 - abar)
    torch.testing.assert_close(min_snr_weight(abar, 5.0, "epsilon"), torch.tensor([5 / 99, 1.0, 1.0]))
    v_weights = torch.minimum(snr, torch.tensor(5.0)) / (snr + 1)
    torch.testing.assert_close(min_snr_weight(abar, 5.0, "v_prediction"), v_weights)
    # The weighted loss is the per-sample weight times the per-sample error, averaged: a model that predicts
    # zeros has error |ε|² per sample, so the two losses differ exactly by the weights of the drawn t.
    config, weighted = DiffusionConfig(), DiffusionConfig(snr_gamma=5.0)
    x0 = torch.randn(6, 2, 2, 3, 3, generator=torch.Generator().manual_seed(0))

    def zeros(x_t: torch.Tensor, t: torch.Tensor, cond: None) -> torch.Tensor:
        return torch.zeros_like(x_t)

    plain = diffusion_loss(zeros, x0, None, config, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (6,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    weights = min_snr_weight(alphas_cumprod(make_betas(config))[t], 5.0, "epsilon")
    torch.testing.assert_close(plain, noise.square().mean())
    expected = (noise.square().flatten(1).mean(1) * weights).mean()
    torch.testing.assert_close(diffusion_loss(zeros, x0, None, weighted, torch.Generator().manual_seed(3)), expected)
    with pytest.raises(DysenError, match="snr_gamma"):
        DiffusionConfig(snr_gamma=0.0)


def test_condition_dropout_is_independent_and_seeded() -> None:
    config = DiffusionConfig(text_dropout=0.3, dsg_dropout=0.5)
    text, dsg = condition_dropout(20000, config, torch.Generator().manual_seed(0))
    assert text.float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert dsg.float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert (text & dsg).float().mean().item() == pytest.approx(0.15, abs=0.02)
    again = condition_dropout(20000, config, torch.Generator().manual_seed(0))
    assert torch.equal(text, again[0]) and torch.equal(dsg, again[1])


def test_guidance_against_a_hand_computation() -> None:
    uncond, text, full = torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([4.0])
    # 1 + 7.5·(3 − 1) + 2·(4 − 3) = 18
    assert compositional_cfg(uncond, text, full, 7.5, 2.0).item() == pytest.approx(18.0)
    predictions = {"uncond": uncond, "text": text, "full": full}
    passes = guidance_passes(7.5, 2.0)
    assert combine([predictions[p.name] for p in passes], passes).item() == pytest.approx(18.0)


@pytest.mark.parametrize(
    "text_scale,dsg_scale,passes",
    [
        (7.5, 2.0, {"uncond", "text", "full"}),
        (7.5, 7.5, {"uncond", "full"}),
        (7.5, 0.0, {"uncond", "text"}),
        (1.0, 1.0, {"full"}),
        (1.0, 3.0, {"text", "full"}),
        (0.0, 0.0, {"uncond"}),
    ],
)
def test_guidance_skips_zero_weight_passes(text_scale: float, dsg_scale: float, passes: set[str]) -> None:
    weights = guidance_passes(text_scale, dsg_scale)
    assert {p.name for p in weights} == passes and sum(p.weight for p in weights) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    predictions = {name: torch.randn(2, 3, generator=g) for name in ("uncond", "text", "full")}
    expected = compositional_cfg(
        predictions["uncond"], predictions["text"], predictions["full"], text_scale, dsg_scale
    )
    torch.testing.assert_close(combine([predictions[p.name] for p in weights], weights), expected)


def _sample(model_fn, scheduler, noise: torch.Tensor, steps: int, eta: float, seed: int) -> torch.Tensor:
    """The loop of ``dysen.diffusion.denoise`` without guidance."""
    generator = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        prediction = model_fn(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(prediction, t, x, **step_kwargs(scheduler, eta, generator)).prev_sample
    return x


def _gaussian_denoiser(config: DiffusionConfig, mu: float, sigma: float):
    """The exact ε (or v) prediction for data x_0 ~ N(μ, σ²): with a = √ᾱ, b = √(1−ᾱ), x_t ~ N(aμ, a²σ² + b²),
    E[ε | x_t] = b (x_t − aμ) / (a²σ² + b²) and E[x_0 | x_t] = μ + aσ² (x_t − aμ) / (a²σ² + b²)."""
    abar = alphas_cumprod(make_betas(config)).double()
    train_sigmas = ((1 - abar) / abar).sqrt().numpy()

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = float(np.interp(float(t), np.arange(len(train_sigmas)), train_sigmas))  # fractional t (Euler)
        a2 = 1.0 / (1.0 + s * s)
        a, b = a2**0.5, (1.0 - a2) ** 0.5
        var = a2 * sigma**2 + b * b
        eps = b * (x_t - a * mu) / var
        if config.prediction_type == "epsilon":
            return eps
        x0 = mu + a * sigma**2 * (x_t - a * mu) / var
        return a * eps - b * x0

    return model_fn


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "euler"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ode_samplers_recover_a_gaussian(sampler: str, prediction_type: str) -> None:
    config = DiffusionConfig(prediction_type=prediction_type)
    mu, sigma = 0.7, 0.5
    noise = torch.randn(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = _sample(_gaussian_denoiser(config, mu, sigma), make_scheduler(config, sampler), noise, 50, 0.0, 0)
    # ᾱ_T = 0.0047 > 0, so N(0, I) is not quite the marginal at T; the exact probability-flow ODE maps x_T
    # affinely, x_0 = μ + σ (x_T − a_T μ) / √(a_T² σ² + b_T²), which moves the mean by −σ a_T μ / √(…).
    a2 = alphas_cumprod(make_betas(config))[-1].item()
    expected_mean = mu - sigma * a2**0.5 * mu / (a2 * sigma**2 + 1 - a2) ** 0.5
    assert x.mean().item() == pytest.approx(expected_mean, abs=0.015)
    assert x.std().item() == pytest.approx(sigma, rel=0.05)  # 50 steps: within 5% (1000 steps: 0.1%)


def test_stochastic_ddim_recovers_a_gaussian() -> None:
    config = DiffusionConfig()
    noise = torch.randn(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = _sample(_gaussian_denoiser(config, 0.7, 0.5), make_scheduler(config, "ddim"), noise, 200, 1.0, 0)
    assert x.mean().item() == pytest.approx(0.7, abs=0.015)  # η = 1 forgets x_T, so no shift of the mean
    assert x.std().item() == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("sampler,eta", [("ddim", 1.0), ("ddim", 0.0), ("dpmpp", 0.0), ("euler", 0.0)])
def test_samplers_are_deterministic_given_a_seed(sampler: str, eta: float) -> None:
    config = DiffusionConfig()
    model_fn = _gaussian_denoiser(config, 0.0, 1.0)
    noise = torch.randn(256, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    first = _sample(model_fn, make_scheduler(config, sampler), noise, 8, eta, seed=5)
    second = _sample(model_fn, make_scheduler(config, sampler), noise, 8, eta, seed=5)
    assert torch.equal(first, second)
    if eta > 0:  # the step noise comes from the generator
        assert not torch.equal(first, _sample(model_fn, make_scheduler(config, sampler), noise, 8, eta, seed=6))


def test_ddim_reproduces_lvdm_timesteps_and_betas() -> None:
    config = DiffusionConfig()
    ours = make_scheduler(config, "ddim")
    ours.set_timesteps(50)
    assert ours.timesteps.tolist() == list(range(981, 0, -20))
    lvdm = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    torch.testing.assert_close(ours.alphas_cumprod, lvdm.alphas_cumprod, rtol=0, atol=0)


def test_eta_outside_ddim_is_refused() -> None:
    with pytest.raises(DysenError, match="eta"):
        step_kwargs(make_scheduler(DiffusionConfig(), "euler"), 0.5, None)


def test_loss_targets_and_reduction_stay_float32_under_bf16_latents_and_outputs() -> None:
    """Mixed precision: an autoencoder under autocast hands over bf16 latents and the UNet returns bf16; the
    noise target and the loss must still be float32 (the same draw as for float32 latents)."""
    x0 = torch.randn(4, 2, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    seen = {}

    def bf16_model(x_t: torch.Tensor, t: torch.Tensor, cond: None) -> torch.Tensor:
        seen["x_t"] = x_t.dtype
        return (0.5 * x_t).to(torch.bfloat16)

    config = DiffusionConfig()
    loss = diffusion_loss(bf16_model, x0.to(torch.bfloat16), None, config, torch.Generator().manual_seed(1))
    assert loss.dtype == torch.float32 and seen["x_t"] == torch.float32
    reference = diffusion_loss(lambda x, t, c: 0.5 * x, x0.to(torch.bfloat16).float(), None, config,
                               torch.Generator().manual_seed(1))  # fmt: skip
    torch.testing.assert_close(loss, reference, rtol=1e-2, atol=0)  # only the model's output is rounded


# -- the one denoising loop and its settings -------------------------------------------------------------------------


def _toy_denoiser(x: torch.Tensor, t: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """A model function whose passes differ: pass p predicts (x + c_p) · t / 1000; conditions [P]."""
    return (x + conditions[:, None, None, None, None]) * (float(t) / 1000.0)


def test_denoise_reproduces_a_hand_written_guided_ddim_loop() -> None:
    config = DiffusionConfig()
    passes = guidance_passes(4.0, 2.0)  # (∅, ∅), (text, ∅), (text, dsg)
    conditions = torch.tensor([0.0, 1.0, 3.0])  # one per pass
    noise = torch.randn(1, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0))

    scheduler = make_scheduler(config, "ddim")
    scheduler.set_timesteps(6)
    generator = torch.Generator().manual_seed(7)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:  # the loop written out by hand: 3 passes, weights 1 − 4, 4 − 2, 2
        eps = _toy_denoiser(scheduler.scale_model_input(x, t).expand(3, -1, -1, -1, -1), t, conditions)
        guided = -3.0 * eps[:1] + 2.0 * eps[1:2] + 2.0 * eps[2:]
        x = scheduler.step(guided, t, x, eta=1.0, generator=generator).prev_sample

    scheduler = make_scheduler(config, "ddim")
    scheduler.set_timesteps(6)
    generator = torch.Generator().manual_seed(7)
    seen: list[DenoisingStep] = []
    out = denoise(
        _toy_denoiser, scheduler, noise, conditions, passes,
        step_kwargs=step_kwargs(scheduler, 1.0, generator), callback=seen.append,
    )  # fmt: skip
    torch.testing.assert_close(out, x, rtol=1e-6, atol=1e-6)
    assert [s.index for s in seen] == list(range(6))  # the callback sees every step, in order
    assert [int(s.timestep) for s in seen] == scheduler.timesteps.tolist()
    assert torch.equal(seen[-1].latents, out) and seen[0].prediction.shape == noise.shape


def test_guidance_passes_come_in_one_fixed_order_as_frozen_records() -> None:
    assert PASSES == ("uncond", "text", "full")
    for text_scale, dsg_scale in [(7.5, 2.0), (2.0, 7.5), (1.0, 3.0), (7.5, 0.0)]:
        names = [p.name for p in guidance_passes(text_scale, dsg_scale)]
        assert names == [name for name in PASSES if name in names]
    full = guidance_passes(4.0, 4.0)
    assert full == (GuidancePass("uncond", -3.0), GuidancePass("full", 4.0))
    assert [(p.sees_text, p.sees_graph) for p in guidance_passes(7.5, 2.0)] == [
        (False, False), (True, False), (True, True)
    ]  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        full[0].weight = 1.0  # type: ignore[misc]


class _RecordingCondition:
    """A graph condition for ``stack_passes``: records ``expand`` and ``dropped`` (guidance imports no model)."""

    def __init__(self, rows: int = 1, drop: list[bool] | None = None) -> None:
        self.rows, self.drop = rows, drop

    def expand(self, count: int) -> _RecordingCondition:
        return _RecordingCondition(count)

    def dropped(self, drop: torch.Tensor) -> _RecordingCondition:
        return _RecordingCondition(self.rows, drop.tolist())


def test_stack_passes_batches_the_passes_in_their_order() -> None:
    text = (torch.ones(1, 2, 3), torch.tensor([[True, True]]))
    null = (torch.zeros(1, 2, 3), torch.tensor([[True, False]]))
    (tokens, mask), graph = stack_passes(guidance_passes(7.5, 2.0), text, null, _RecordingCondition())
    assert tokens[:, 0, 0].tolist() == [0.0, 1.0, 1.0] and mask[:, 1].tolist() == [False, True, True]
    assert graph.rows == 3 and graph.drop == [True, True, False]  # only (text, dsg) sees the DSG


def test_sampling_settings_resolve_unset_values_from_the_model() -> None:
    model = DiffusionConfig(steps=25, guidance=4.0, dsg_guidance=None, sampler="ddim", eta=0.0)
    assert SamplingSettings.resolve(model) == SamplingSettings(25, 4.0, 4.0, "ddim", 0.0)  # unset s_dsg = s_text
    assert SamplingSettings.resolve(model, guidance=6.0).dsg_guidance == 6.0  # ... the resolved s_text
    with_dsg = dataclasses.replace(model, dsg_guidance=1.5)
    assert SamplingSettings.resolve(with_dsg, guidance=6.0).dsg_guidance == 1.5  # the model's s_dsg
    given = SamplingSettings.resolve(with_dsg, steps=3, guidance=7.5, dsg_guidance=0.0, sampler="euler", eta=0.0)
    assert given == SamplingSettings(3, 7.5, 0.0, "euler", 0.0)  # explicit values win, 0 included
    assert [p.name for p in given.passes] == ["uncond", "text"]
    scheduler = given.scheduler(model)
    assert type(scheduler).__name__ == "EulerDiscreteScheduler" and len(scheduler.timesteps) == 3
    with pytest.raises(DysenError, match="steps must be >= 1"):
        SamplingSettings.resolve(model, steps=0)
