"""Energy guidance on the cross-attention maps (``dysen.backbones.energy``): the maps it differentiates are the
ones the backbone's attention computes, one guided step lowers the energy, and the run is the backbone's own when
it is off. Tiny random Wan and UNet3D folders (``backbone_fixtures``), as in ``test_backbone_control``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dysen.backbone_pipeline import BackbonePipeline
from dysen.backbones.control import ControlSettings
from dysen.backbones.energy import AttentionRecorder, guided_latents, layout_energy, recording
from dysen.diffusion.guidance import guidance_passes, stack_text
from test_backbone_control import PROMPT, SIZES, AttentionSpy, two_step_plan, unet3d, unet3d_folder, wan  # noqa: F401


def test_the_energy_is_0_inside_the_box_and_1_outside() -> None:
    regions = torch.zeros(1, 2, 2, 2, dtype=torch.bool)  # one object in frame 0 only, top-left cell
    regions[0, 0, 0, 0] = True
    tokens = torch.tensor([[0.0, 1.0, 1.0]])  # its phrase: tokens 1 and 2
    inside = torch.zeros(2, 4, 3)  # [F, h·w, L]
    inside[0, 0, 1:] = 1.0  # its tokens attended only from its cell
    inside[1, :, 0] = 1.0  # frame 1: it is absent, whatever attends there does not count
    outside = torch.zeros(2, 4, 3)
    outside[0, 3, 1:] = 1.0
    assert float(layout_energy([inside], regions, tokens, "frames")) == 0.0
    assert float(layout_energy([outside], regions, tokens, "frames")) == 1.0
    half = (inside + outside) / 2
    assert float(layout_energy([half.reshape(1, 8, 3)], regions, tokens, "video")) == pytest.approx(0.25)
    assert float(layout_energy([inside], regions[:0], tokens[:0], "frames")) == 0.0  # no objects: nothing to do


def _text_pass(pipe: BackbonePipeline, eta: float) -> tuple:
    backbone, size = pipe.backbone, SIZES[pipe.backbone.name]
    plan = pipe.plan_control(PROMPT, two_step_plan(), 0, size["num_frames"], size["height"], size["width"])
    passes = guidance_passes(4.0, 0.0)
    states, mask = backbone.encode_prompt([plan.phrased.text, ""])
    conditions = stack_text(passes, (states[:1], mask[:1]), (states[1:], mask[1:]))
    state = pipe.control_state(plan, ControlSettings(0.0, 1.0, energy=eta), passes, 2)
    c, t, h, w = backbone.latent_shape(size["num_frames"], size["height"], size["width"])
    x = torch.randn(1, c, t, h, w, generator=torch.Generator().manual_seed(0))
    return plan, passes, conditions, state, x


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_the_maps_are_the_ones_the_backbone_attends_with(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    backbone = pipe.backbone
    _, _, conditions, _, x = _text_pass(pipe, 1.0)
    text = tuple(part[1:] for part in conditions)
    recorder = AttentionRecorder(backbone.cross_attention_probs)
    spy = AttentionSpy(backbone.max_text_tokens, monkeypatch)
    with recording(backbone.cross_attentions(), recorder), torch.no_grad():
        recorder.on = True
        backbone.denoise_fn(x, torch.tensor(500.0), text)  # type: ignore[arg-type]
    monkeypatch.undo()
    assert len(recorder.maps) == len(spy.probs) == len(backbone.cross_attentions())
    for ours, theirs in zip(recorder.maps, spy.probs, strict=True):
        torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_one_guided_step_lowers_the_energy(name: str, request: pytest.FixtureRequest) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    backbone = pipe.backbone
    _, passes, conditions, state, x = _text_pass(pipe, 0.5)
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(2)
    guide = pipe.energy_guide(state, 0.5, scheduler, conditions, passes)
    assert guide is not None and pipe.energy_guide(state, 0.0, scheduler, conditions, passes) is None
    t = scheduler.timesteps[0]
    text = tuple(part[1:] for part in conditions)
    count = len(state.regions)

    def energy(latents: torch.Tensor) -> float:
        recorder = AttentionRecorder(backbone.cross_attention_probs)
        with recording(backbone.cross_attentions(), recorder), torch.no_grad():
            recorder.on = True
            backbone.denoise_fn(latents, t, text)  # type: ignore[arg-type]
        return float(layout_energy(recorder.maps, state.regions, state.tokens[:count], backbone.token_layout))

    before = {key: module.processor for key, module in backbone.cross_attentions().items()}
    with torch.no_grad():
        moved = guide(x, 0, t)
    assert {key: module.processor for key, module in backbone.cross_attentions().items()} == before
    step = (moved - x).pow(2).mean().sqrt()
    assert float(step) == pytest.approx(0.5, rel=1e-4)  # a normalised step of η in the latents' rms
    assert energy(moved) < energy(x)
    assert torch.equal(guide(x, state.active_steps, t), x)  # after the steered steps: untouched


def test_guided_latents_keep_a_flat_energy() -> None:
    x = torch.randn(1, 2, 3)
    assert torch.equal(guided_latents(x, lambda z: (z * 0).sum(), 1.0), x)


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_energy_guidance_steers_the_video_and_off_it_is_the_backbone(
    name: str, request: pytest.FixtureRequest
) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    run = {**SIZES[name], "steps": 2, "guidance": 4.0, "seed": 2, "progress": False}
    plain = pipe(PROMPT, **run).frames
    assert np.array_equal(pipe(PROMPT, dsg=two_step_plan(), control=ControlSettings(energy=0.0), **run).frames, plain)
    guided = pipe(PROMPT, dsg=two_step_plan(), control=ControlSettings(0.0, 1.0, energy=1.0), **run)
    assert guided.dsg is not None and not np.array_equal(guided.frames, plain)
    again = pipe(PROMPT, dsg=two_step_plan(), control=ControlSettings(0.0, 1.0, energy=1.0), **run)
    assert np.array_equal(again.frames, guided.frames)  # same seed, same video
    everything = ControlSettings(2.0, 1.0, self_strength=4.0, energy=1.0)  # with the biases: its probe runs unbiased
    both = pipe(PROMPT, dsg=two_step_plan(), control=everything, **run)
    assert not np.array_equal(both.frames, guided.frames)
