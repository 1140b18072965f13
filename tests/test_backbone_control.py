"""Training-free DSG control of pretrained backbones (``dysen.backbones.schedule``, ``phrases``, ``control``).

Tiny random Wan and UNet3D folders (``backbone_fixtures``); the cross-attention probabilities are recomputed by
the tests alone (a spy on ``scaled_dot_product_attention``), never by the control itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backbone_fixtures import save_unet3d, save_wan, t5_tokenizer
from dysen.backbone_pipeline import BackbonePipeline
from dysen.backbones.base import BackboneDefaults, BackboneGeometry, BackboneOptions
from dysen.backbones.control import (
    ControlledCrossAttention,
    ControlSettings,
    ControlState,
    MaskedSelfAttention,
    controlled,
    phrase_values,
    same_region,
)
from dysen.backbones.phrases import phrase_prompt
from dysen.backbones.schedule import ControlError, box_mask, build_schedule, latent_frame_spans
from dysen.cli import main
from dysen.data.video import read_video
from dysen.diffusion.guidance import guidance_passes, stack_text
from dysen.dsg.convert import events_to_dsg
from dysen.dsg.types import Box, DynamicSceneGraph, Event
from dysen.errors import DysenError

PROMPT = "a red circle moves right then a blue square jumps"
WAN = BackboneGeometry("wan", 16, 8, 4, (2, 2), BackboneDefaults(480, 832, 81, 16, 50, 5.0))
PER_FRAME = BackboneGeometry("unet3d", 4, 2, 1, (1, 1), BackboneDefaults(16, 16, 5, 8, 50, 9.0))
SIZES = {"wan": {"num_frames": 17, "height": 64, "width": 64}, "unet3d": {"num_frames": 6, "height": 16, "width": 16}}
CLIP_TOKENS = 160  # the tiny CLIP's context: letters are its tokens, so the phrases need room


def two_step_plan() -> DynamicSceneGraph:
    """The red circle moves right (step 0, top-left quarter), then the blue square jumps (step 1, bottom-right);
    each is present only in its own step."""
    dsg = events_to_dsg(
        [Event(agent="red circle", predicate="moves right", start=0, end=1),
         Event(agent="blue square", predicate="jumps", start=1, end=2)]
    )  # fmt: skip
    boxes = [
        [Box(object="red circle", x0=0, y0=0, x1=0.5, y1=0.5).model_dump()],
        [Box(object="blue square", x0=0.5, y0=0.5, x1=1, y1=1).model_dump()],
    ]
    return DynamicSceneGraph.from_dict({**dsg.to_dict(), "boxes": boxes})  # validated


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> BackbonePipeline:
    folder = save_wan(tmp_path_factory.mktemp("control") / "wan")
    return BackbonePipeline.from_folder(folder, BackboneOptions(device="cpu"))


@pytest.fixture(scope="module")
def unet3d_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_unet3d(tmp_path_factory.mktemp("control") / "unet3d", text_tokens=CLIP_TOKENS)


@pytest.fixture(scope="module")
def unet3d(unet3d_folder: Path) -> BackbonePipeline:
    return BackbonePipeline.from_folder(unet3d_folder, BackboneOptions(device="cpu"))


# -- the schedule: time and space ------------------------------------------------------------------------------


def test_latent_frames_of_a_causal_4x_vae_and_a_per_frame_vae() -> None:
    assert latent_frame_spans(17, 4) == ((0, 1), (1, 5), (5, 9), (9, 13), (13, 17))  # 1 + 4k: 5 latent frames
    assert latent_frame_spans(1, 4) == ((0, 1),)
    assert latent_frame_spans(3, 1) == ((0, 1), (1, 2), (2, 3))
    with pytest.raises(ControlError, match="1 \\+ 4·m"):
        latent_frame_spans(16, 4)


def test_dsg_steps_map_to_latent_frames_of_a_causal_vae() -> None:
    schedule = build_schedule(two_step_plan(), WAN, 17, 64, 64)  # step 0: frames 0-8, step 1: frames 9-16
    assert (schedule.latent_frames, schedule.grid) == (5, (4, 4))
    assert [e.window for e in schedule.events] == [(0, 3), (3, 5)]  # latent 2 = frames 5-8, latent 3 = 9-12
    circle, square = schedule.objects
    assert circle.name == "red circle" and circle.masks.shape == (5, 4, 4)
    assert circle.masks[:3].any(dim=(1, 2)).all() and not circle.masks[3:].any()  # present in its step only
    assert square.masks[3:].all(dim=0)[2:, 2:].all() and not square.masks[:3].any()
    moves, jumps = schedule.events
    assert torch.equal(moves.masks[:3], circle.masks[:3]) and not moves.masks[3:].any()
    assert torch.equal(jumps.masks[3:], square.masks[3:]) and not jumps.masks[:3].any()


def test_dsg_steps_map_to_latent_frames_of_a_per_frame_vae() -> None:
    schedule = build_schedule(two_step_plan(), PER_FRAME, 6, 16, 16)
    assert (schedule.latent_frames, schedule.grid) == (6, (8, 8))
    assert schedule.frames_of_latent == tuple((i, i + 1) for i in range(6))
    assert [e.window for e in schedule.events] == [(0, 3), (3, 6)]
    assert schedule.objects[0].masks[:3, :4, :4].all() and not schedule.objects[0].masks[:3, 4:].any()


def test_boxes_become_token_cells() -> None:
    """A 64x64 Wan video has 4x4 tokens (8x VAE, patch 2): each cell is a quarter of the frame's side."""
    grid = WAN.token_grid(64, 64)
    assert grid == (4, 4)
    quarter = box_mask((0.0, 0.0, 0.5, 0.5), grid)
    assert quarter[:2, :2].all() and quarter.sum() == 4
    band = box_mask((0.2, 0.0, 0.8, 0.25), grid)  # columns 0 and 3 are covered by a fifth only
    assert band.nonzero().tolist() == [[0, 1], [0, 2]]
    tiny = box_mask((0.3, 0.3, 0.45, 0.45), grid)  # under half of any cell: the cell of its centre
    assert tiny.nonzero().tolist() == [[1, 1]]
    assert box_mask((0.55, 0.55, 1.2, 1.0), grid).nonzero().tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]


def test_a_plan_without_boxes_is_refused() -> None:
    with pytest.raises(ControlError, match="no boxes"):
        build_schedule(events_to_dsg([Event(agent="red circle", predicate="jumps", start=0, end=1)]), WAN, 5, 16, 16)


# -- phrases and their token spans -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_phrase_spans_point_at_their_tokens(name: str, request: pytest.FixtureRequest) -> None:
    backbone = request.getfixturevalue(name).backbone
    plan = two_step_plan()
    phrased = phrase_prompt(
        PROMPT, ["red circle", "blue square"], list(enumerate(plan.events)), backbone.tokenizer,
        backbone.max_text_tokens,
    )  # fmt: skip
    assert phrased.text.startswith(PROMPT + "; a red circle; a blue square; the red circle moves right")
    ids = backbone.tokenizer(phrased.text).input_ids
    alone = backbone.tokenizer(PROMPT).input_ids

    def decoded(span: tuple[int, int]) -> str:
        return backbone.tokenizer.decode(ids[span[0] : span[1]]).replace(" ", "")

    start, stop = phrased.prompt_tokens
    assert start <= 1 and ids[:stop] == alone[:stop]  # the prompt's tokens come first (after a BOS), as alone
    assert decoded(phrased.prompt_tokens) == PROMPT.replace(" ", "")
    assert decoded(phrased.objects["red circle"]) == "aredcircle"
    assert decoded(phrased.objects["blue square"]) == "abluesquare"
    assert decoded(phrased.events[0]) == "theredcirclemovesright"
    assert decoded(phrased.events[1]) == "thebluesquarejumps"
    spans = sorted([phrased.prompt_tokens, *phrased.objects.values(), *phrased.events.values()])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # disjoint, in order


def test_phrases_cut_off_by_the_text_window_are_refused() -> None:
    """The phrases put the plan's objects into the prompt's tokens, unless the encoder's window cuts them off."""
    tokenizer = t5_tokenizer()
    phrase_prompt(PROMPT, ["red circle", "blue square"], [], tokenizer, 24)  # 10 + 1 + 4 + 1 + 4 + </s> fits
    with pytest.raises(ControlError, match=r"reads 14 tokens.*'a blue square' would be cut off.*shorten the prompt"):
        phrase_prompt(PROMPT, ["red circle", "blue square"], [], tokenizer, 14)
    kept = phrase_prompt(PROMPT, ["red circle", "blue square"], [], tokenizer, 18, drop_cut=True)
    assert kept.dropped == ("a blue square",) and set(kept.objects) == {"red circle"}
    assert kept.text.endswith("a red circle")


def test_a_benchmark_steers_what_fits_and_names_the_rest(unet3d_folder: Path, tmp_path: Path) -> None:
    """Where ``generate`` refuses a plan the text encoder cannot read, an eval row drops the phrases it cannot."""
    short = BackbonePipeline.from_folder(save_unet3d(tmp_path / "short"), BackboneOptions(device="cpu"))
    run = {**SIZES["unet3d"], "steps": 1, "progress": False, "dsg": two_step_plan(), "control": ControlSettings(1.0)}
    video = short(PROMPT, drop_cut_phrases=True, **run)
    assert video.dropped_phrases and video.dsg is not None


def test_a_plan_the_text_encoder_cannot_hold_is_refused(unet3d_folder: Path, tmp_path: Path) -> None:
    """The same tiny UNet3D with CLIP's 8 tokens: the phrases of the plan cannot be read."""
    short = BackbonePipeline.from_folder(save_unet3d(tmp_path / "short"), BackboneOptions(device="cpu"))
    with pytest.raises(ControlError, match="reads 8 tokens.*would be cut off"):
        short(PROMPT, dsg=two_step_plan(), control=ControlSettings(1.0), **SIZES["unet3d"], steps=1, progress=False)


# -- strength 0 is the backbone itself; processors come and go ----------------------------------------------------


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_strength_zero_is_the_uncontrolled_backbone_bit_for_bit(name: str, request: pytest.FixtureRequest) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    run = {**SIZES[name], "steps": 3, "guidance": 4.0, "seed": 5, "progress": False}
    plain = pipe(PROMPT, **run).frames
    off = pipe(PROMPT, dsg=two_step_plan(), control=ControlSettings(strength=0.0, steps=1.0), **run)
    assert off.dsg is None and off.text is None and np.array_equal(off.frames, plain)
    modules = pipe.backbone.cross_attentions()
    before = {key: module.processor for key, module in modules.items()}
    steered = pipe(PROMPT, dsg=two_step_plan(), control=ControlSettings(strength=3.0, steps=1.0), **run)
    assert steered.dsg is not None and steered.text.startswith(PROMPT + "; a red circle")
    assert not np.array_equal(steered.frames, plain)
    assert {key: module.processor for key, module in modules.items()} == before  # removed after the run
    assert np.array_equal(pipe(PROMPT, **run).frames, plain)


def test_control_settings_are_checked() -> None:
    assert not ControlSettings().enabled and ControlSettings(1.0).active_steps(50) == 20
    assert ControlSettings(1.0, 0.01).active_steps(50) == 1 and ControlSettings(1.0, 0.0).active_steps(50) == 0
    assert ControlSettings(self_strength=2.0).enabled and not ControlSettings(self_strength=2.0, steps=0.0).enabled
    for bad in ({"strength": -1.0}, {"strength": math.inf}, {"steps": 1.5}, {"strength": True}, {"self_strength": -1}):
        with pytest.raises(ControlError, match="control"):
            ControlSettings(**bad)  # type: ignore[arg-type]


# -- the bias on the cross-attention, measured ---------------------------------------------------------------------


class AttentionSpy:
    """Records softmax(QKᵀ/√d + mask) of every SDPA call of video queries over ``keys`` text tokens (for the
    test only; the text encoder's own self-attention, ``keys`` queries over ``keys`` keys, is left out)."""

    def __init__(self, keys: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys, self.probs, self.masked = keys, [], []
        original = torch.nn.functional.scaled_dot_product_attention

        def spy(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):  # noqa: ANN001
            if key.shape[-2] == keys != query.shape[-2]:
                logits = query @ key.transpose(-1, -2) * (scale or query.shape[-1] ** -0.5)  # [B, H, N, L]
                self.probs.append((logits if attn_mask is None else logits + attn_mask).softmax(-1).mean(1))
                self.masked.append(attn_mask is not None)
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, **kw)  # fmt: skip

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)


def measure(pipe: BackbonePipeline, strength: float, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """One model call of the two CFG passes on the phrased plan under ``strength``: the text pass's attention
    probabilities [F, gh, gw, L] at the full-resolution cross-attention, the unconditional pass's, the plan."""
    backbone, size = pipe.backbone, SIZES[pipe.backbone.name]
    plan = pipe.plan_control(PROMPT, two_step_plan(), 0, size["num_frames"], size["height"], size["width"])
    passes = guidance_passes(4.0, 0.0)  # (∅), (text)
    states, mask = backbone.encode_prompt([plan.phrased.text, ""])
    conditions = stack_text(passes, (states[:1], mask[:1]), (states[1:], mask[1:]))
    state = pipe.control_state(plan, ControlSettings(1.0, 1.0), passes, 1)
    state.strength = strength  # 0: the same text, installed, without bias (the baseline of the measurement)
    c, t, h, w = backbone.latent_shape(size["num_frames"], size["height"], size["width"])
    x = torch.randn(2, c, t, h, w, generator=torch.Generator().manual_seed(0))
    spy = AttentionSpy(backbone.max_text_tokens, monkeypatch)
    with controlled(backbone.cross_attentions(), state), torch.no_grad():
        state.begin_step()
        backbone.denoise_fn(x, torch.tensor(500.0), conditions)
    monkeypatch.undo()
    frames, (gh, gw) = plan.schedule.latent_frames, plan.schedule.grid
    full = [p for p in spy.probs if p.shape[-2] in (frames * gh * gw, gh * gw)][0]  # [B, N, L]
    full = full.reshape(2, frames, gh, gw, -1)  # [P, F, gh, gw, L]
    return full[1], full[0], plan


def mass(probs: torch.Tensor, span: tuple[int, int], where: torch.Tensor) -> float:
    """Mean attention probability mass of the tokens of ``span`` over the video tokens ``where`` [F, gh, gw]."""
    return float(probs[..., span[0] : span[1]].sum(-1)[where].mean())


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_an_objects_tokens_gain_attention_inside_its_box_in_its_frames_only(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    base, base_uncond, plan = measure(pipe, 0.0, monkeypatch)
    steered, steered_uncond, _ = measure(pipe, 2.0, monkeypatch)
    assert torch.equal(steered_uncond, base_uncond)  # the unconditional pass is never biased
    report = {}
    for item in plan.schedule.objects:
        span = plan.phrased.objects[item.name]
        present = item.masks.any(dim=(1, 2))  # [F]
        regions = {
            "inside its box, its frames": item.masks,
            "outside its box, its frames": ~item.masks & present[:, None, None],
            "other frames": ~present[:, None, None].expand_as(item.masks),
        }
        ratios = {key: mass(steered, span, where) / mass(base, span, where) for key, where in regions.items()}
        report[item.name] = ratios
        assert ratios["inside its box, its frames"] > 2.0
        assert ratios["outside its box, its frames"] < 1.0 and ratios["other frames"] < 1.0
    print(f"\n{name} object-token attention mass, steered / unsteered (strength 2):", json.dumps(report, indent=1))


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_an_events_tokens_are_biased_only_in_its_window(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    base, _, plan = measure(pipe, 0.0, monkeypatch)
    steered, _, _ = measure(pipe, 2.0, monkeypatch)
    values, tokens = phrase_values(plan.schedule, plan.phrased, pipe.backbone.max_text_tokens)
    objects = len(plan.schedule.objects)
    for k, item in enumerate(plan.schedule.events):
        first, stop = item.window
        value = values[objects + k]  # [F, gh, gw]
        assert not value[:first].any() and not value[stop:].any()  # no bias outside its window
        assert (value[first:stop] == 1).any() and (value[first:stop] == -1).any()
        assert torch.equal(tokens[objects + k].nonzero().flatten(), torch.arange(*plan.phrased.events[item.index]))
        span = plan.phrased.events[item.index]
        assert mass(steered, span, item.masks) / mass(base, span, item.masks) > 2.0  # its agent's box, its window
    state = ControlState(values, tokens, 2.0, [False, True], 1, pipe.backbone.token_layout)
    state.begin_step()
    frames, (gh, gw) = plan.schedule.latent_frames, plan.schedule.grid
    per_frame = pipe.backbone.token_layout == "frames"
    bias = state.bias(2 * frames if per_frame else 2, gh * gw if per_frame else frames * gh * gw,
                      tokens.shape[1], torch.float32, torch.device("cpu"))  # fmt: skip
    bias = bias.reshape(2, frames, gh, gw, -1)  # [P, F, gh, gw, L]
    assert not bias[0].any()  # the unconditional pass
    jumps = plan.phrased.events[1]
    assert not bias[1, :3, ..., jumps[0] : jumps[1]].any() and bias[1, 3:, ..., jumps[0] : jumps[1]].abs().min() == 2
    assert not bias[1, ..., : plan.phrased.prompt_tokens[1]].any()  # the global prompt's tokens: never


def test_only_the_first_share_of_steps_is_steered(wan: BackbonePipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = AttentionSpy(512, monkeypatch)
    wan(PROMPT, dsg=two_step_plan(), control=ControlSettings(2.0, 0.4), steps=5, progress=False, **SIZES["wan"])
    assert spy.masked == [True, True, False, False, False]  # ceil(0.4 · 5) steps, one attn2 per step


# -- the optional self-attention masking, measured --------------------------------------------------------------


def test_tokens_share_a_region_or_the_background() -> None:
    labels = torch.tensor([[1.0, 0], [1, 1], [0, 1], [0, 0], [0, 0]])  # A, A∩B, B, background, background
    expected = torch.tensor(
        [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(same_region(labels), expected)


class SelfAttentionSpy:
    """Records softmax(QKᵀ/√d + mask) of every SDPA call of ``tokens`` video tokens over themselves."""

    def __init__(self, tokens: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.probs: list[torch.Tensor] = []
        original = torch.nn.functional.scaled_dot_product_attention

        def spy(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):  # noqa: ANN001
            if key.shape[-2] == query.shape[-2] == tokens:
                logits = query @ key.transpose(-1, -2) * (scale or query.shape[-1] ** -0.5)  # [B, H, N, N]
                self.probs.append((logits if attn_mask is None else logits + attn_mask).softmax(-1).mean(1))
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, **kw)  # fmt: skip

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)


def measure_self(pipe: BackbonePipeline, self_strength: float, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """One model call of the two CFG passes with the self-attention masked at ``self_strength`` (0: installed
    without bias): the probabilities [P, F, gh·gw, F, gh·gw] ("video") or [P, F, gh·gw, gh·gw] ("frames") of the
    first full-resolution self-attention, and the plan."""
    backbone, size = pipe.backbone, SIZES[pipe.backbone.name]
    plan = pipe.plan_control(PROMPT, two_step_plan(), 0, size["num_frames"], size["height"], size["width"])
    passes = guidance_passes(4.0, 0.0)
    states, mask = backbone.encode_prompt([plan.phrased.text, ""])
    conditions = stack_text(passes, (states[:1], mask[:1]), (states[1:], mask[1:]))
    state = pipe.control_state(plan, ControlSettings(0.0, 1.0, self_strength=1.0), passes, 1)
    state.self_strength = self_strength
    c, t, h, w = backbone.latent_shape(size["num_frames"], size["height"], size["width"])
    x = torch.randn(2, c, t, h, w, generator=torch.Generator().manual_seed(0))
    frames, (gh, gw) = plan.schedule.latent_frames, plan.schedule.grid
    video = backbone.token_layout == "video"
    spy = SelfAttentionSpy(frames * gh * gw if video else gh * gw, monkeypatch)
    with controlled({}, state, backbone.self_attentions()), torch.no_grad():
        state.begin_step()
        backbone.denoise_fn(x, torch.tensor(500.0), conditions)
    monkeypatch.undo()
    probs = spy.probs[0]  # [B, N, N]
    shape = (2, frames, gh * gw, frames, gh * gw) if video else (2, frames, gh * gw, gh * gw)
    return probs.reshape(shape), plan


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_self_attention_masking_keeps_an_objects_tokens_to_its_boxes(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    base, plan = measure_self(pipe, 0.0, monkeypatch)
    steered, _ = measure_self(pipe, 4.0, monkeypatch)
    video = pipe.backbone.token_layout == "video"
    report = {}
    for item in plan.schedule.objects:
        cells = item.masks.flatten(1)  # [F, gh·gw]
        frame = int(cells.any(1).nonzero()[0])  # a frame it is in
        inside = cells[frame]  # [gh·gw]
        own = cells if video else inside  # its tokens in every frame (one sequence), or in this frame
        # from its tokens in that frame: [P, n, F, gh·gw] ("video") or [P, n, gh·gw] ("frames")
        before = float(base[:, frame][:, inside][..., own].sum(-1).mean())
        after = float(steered[:, frame][:, inside][..., own].sum(-1).mean())
        report[item.name] = {"own": (before, after), "others": (1 - before, 1 - after)}
        assert after > before and 1 - after < 0.25 * (1 - before)
    for p in range(2):  # every pass is masked, the unconditional one too
        assert not torch.allclose(steered[p], base[p])
    print(f"\n{name} self-attention mass of an object's tokens (unmasked, masked at 4):", json.dumps(report, indent=1))


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_self_attention_masking_alone_steers_and_is_removed(name: str, request: pytest.FixtureRequest) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    run = {**SIZES[name], "steps": 2, "guidance": 4.0, "seed": 1, "progress": False}
    plain = pipe(PROMPT, **run).frames
    own = pipe.backbone.self_attentions()
    assert own and not set(own) & set(pipe.backbone.cross_attentions())
    before = {key: module.processor for key, module in own.items()}
    masked = pipe(PROMPT, dsg=two_step_plan(), control=ControlSettings(0.0, 1.0, self_strength=4.0), **run)
    assert masked.dsg is not None and not np.array_equal(masked.frames, plain)
    assert {key: module.processor for key, module in own.items()} == before
    if name == "unet3d":  # the spatial self-attentions only: the temporal ones attend across frames at one place
        assert all(".attentions." in f".{key}" for key in own) and not any("temp" in key for key in own)


# -- the real Wan2.1-T2V-1.3B, on the meta device -------------------------------------------------------------------


def test_processors_install_on_every_attn2_of_wan21_1_3b() -> None:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    from dysen.backbones.wan import WanBackbone
    from test_backbones import WAN21_T2V_1_3B

    with init_empty_weights():
        model = WanTransformer3DModel(**WAN21_T2V_1_3B)
    modules = WanBackbone.cross_attentions(SimpleNamespace(transformer=model, transformer_2=None))  # type: ignore[arg-type]
    assert len(modules) == 30 and all(key.endswith(".attn2") for key in modules)
    state = ControlState(torch.zeros(1, 21, 30, 52), torch.zeros(1, 512), 1.0, [False, True], 20, "video")
    with controlled(modules, state) as count:
        assert count == 30
        assert all(isinstance(m.processor, ControlledCrossAttention) for m in modules.values())
        assert all(isinstance(block.attn1.processor, WanAttnProcessor) for block in model.blocks)  # attn1 untouched
    assert all(isinstance(m.processor, WanAttnProcessor) for m in modules.values())
    own = WanBackbone.self_attentions(SimpleNamespace(transformer=model, transformer_2=None))  # type: ignore[arg-type]
    with controlled(modules, state, own) as count:
        assert count == 60 and all(isinstance(block.attn1.processor, MaskedSelfAttention) for block in model.blocks)
    assert all(isinstance(block.attn1.processor, WanAttnProcessor) for block in model.blocks)


def test_backends_without_a_bias_are_refused(wan: BackbonePipeline) -> None:
    modules = wan.backbone.cross_attentions()
    processor = next(iter(modules.values())).processor
    state = ControlState(torch.zeros(1, 1, 1, 1), torch.zeros(1, 512), 1.0, [True], 1, "video")
    processor._attention_backend = "flash"
    try:
        with pytest.raises(ControlError, match="'flash' attention backend"), controlled(modules, state):
            pass
    finally:
        del processor._attention_backend
    assert processor._attention_backend is None


# -- the command line -----------------------------------------------------------------------------------------------


def test_cli_generate_follows_a_plan_from_dysen_plan_layout(
    wan: BackbonePipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(wan.backbone.folder)
    plan = tmp_path / "plan.json"
    assert main(["plan", PROMPT, "--layout", "3", "--out", str(plan)]) == 0
    base = ["generate", "--backbone", folder, "--frames", "5", "--height", "32", "--width", "32", "--steps", "2"]
    out = tmp_path / "a.gif"
    assert main([*base, "--plan", str(plan), "--control-strength", "2", "--out", str(out)]) == 0
    assert read_video(out).shape == (5, 32, 32, 3)
    written = DynamicSceneGraph.from_json(out.with_suffix(".dsg.json").read_text())
    assert written.boxes == DynamicSceneGraph.from_json(plan.read_text()).boxes  # followed as given
    steered = ["--control-strength", "2", "--control-steps", "1"]
    assert main([*base, PROMPT, *steered, "--out", str(tmp_path / "b.gif")]) == 0
    assert "b.dsg.json" in capsys.readouterr().out
    assert main([*base, PROMPT, "--control-energy", "0.5", "--out", str(tmp_path / "e.gif")]) == 0  # energy alone
    assert "e.dsg.json" in capsys.readouterr().out
    assert main([*base, PROMPT, "--control-self", "4", "--out", str(tmp_path / "m.gif")]) == 0  # masking alone
    assert "m.dsg.json" in capsys.readouterr().out
    assert not np.array_equal(read_video(tmp_path / "m.gif"), read_video(tmp_path / "b.gif"))
    assert main([*base, PROMPT, "--plan", str(plan), "--out", str(tmp_path / "c.gif")]) != 0
    assert "only under DSG control; give --control-strength S > 0" in capsys.readouterr().err
    assert main([*base, PROMPT, "--control-steps", "0.5", "--out", str(tmp_path / "c.gif")]) != 0
    assert "--control-steps: a backbone follows a plan only under DSG control" in capsys.readouterr().err
    assert main(["generate", PROMPT, "--control-strength", "1", "--out", str(tmp_path / "d.gif")]) != 0
    assert "--control-strength: only with --backbone" in capsys.readouterr().err


def test_errors_are_dysen_errors() -> None:
    assert issubclass(ControlError, DysenError)
