"""dysen.config presets and YAML, and DysenVDMPipeline on tiny components (8×16×16 videos, 2 steps)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dysen.cli import main
from dysen.config import (
    PRESETS,
    ConfigError,
    TextEncoderSpec,
    load_config,
    save_config,
)
from dysen.data.video import probe
from dysen.diffusion.guidance import guidance_passes, stack_passes
from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.errors import DysenError
from dysen.models.pretrained import CheckpointError
from dysen.models.rgtrm import RGTrm
from dysen.models.unet3d import UNet3D
from dysen.models.vae import KLVideoAutoencoder
from dysen.pipeline import DysenVDMPipeline
from dysen.planner.motion import with_motion
from pipeline_fixtures import DSG_A, TINY, FixedPlanner, HashTextEncoder

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PROMPT = "a red circle moves right, then a blue square jumps"


class NoPlanner:
    """A planner that must not be called."""

    def plan(self, prompt: str, demonstrations: object = None) -> DynamicSceneGraph:
        raise AssertionError("the planner was called although a DSG was given")


DSG_B = DynamicSceneGraph.from_events(
    [Event(agent="square", predicate="jumps", start=0, end=1), Event(agent="star", predicate="spins", start=1, end=2)]
)


def _tiny_pipeline(planner: object = None) -> DysenVDMPipeline:
    """A random tiny pipeline whose zero-initialised layers (temporal and DSG paths) are made non-zero."""
    pipe = DysenVDMPipeline.from_config(TINY, planner=planner or FixedPlanner(DSG_A), text_encoder=HashTextEncoder())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in pipe.unet.parameters():
            if not parameter.any():
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return pipe


@pytest.fixture(scope="module")
def pipe() -> DysenVDMPipeline:
    return _tiny_pipeline()


# -- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_yaml_config_loads_and_equals_its_preset(name: str) -> None:
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(PRESETS)
    assert load_config(CONFIGS / f"{name}.yaml") == PRESETS[name]()


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = save_config(TINY, tmp_path / "tiny.yaml")
    assert load_config(path) == TINY


@pytest.mark.parametrize(
    "text,match",
    [
        ("unet: {chanels: 3}", r"unknown key\(s\) \['chanels'\]"),
        ("bogus: 1", r"unknown key\(s\) \['bogus'\]"),
        ("diffusion: {sampler: heun}", "'heun' is not one of"),
        ("video: {num_frames: sixteen}", "video.num_frames: expected int"),
        ("video: {num_frames: 15}", "does not fit the kl3d VAE"),
        ("rgtrm: {dim: 128}", "unet.dsg_dim != rgtrm.dim"),
        ("rgtrm: {layout: false, orientation: true}", "rgtrm.orientation needs rgtrm.layout"),
        ("unet: {layout: false, layout_frames: true}", "layout_frames .* needs layout"),
        ("- 1\n- 2", "expected a mapping"),
    ],
)
def test_bad_yaml_is_a_clear_config_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config("shapes-huge")


# name: (UNet3D, RGTrm, 3D KL AE) parameters, exact; also written in configs/<name>.yaml
PARAMETERS = {
    "shapes-tiny": (1_918_061, 220_992, 95_383),
    "shapes-tiny-text-only": (1_843_116, 211_200, 95_383),  # the same, less the DSG cross-attention and layout maps
    "paper-t2v-256": (1_101_939_900, 50_262_528, 0),  # + the pretrained SD-VAE (83.7 M), by reference
    "lvdm-ucf101": (1_012_071_024, 50_262_528, 18_071_911),  # LVDM's own AE: about 19.5 M (backbones.md §6.2)
    "lvdm-t2v": (1_002_912_484, 50_262_528, 0),  # LVDM's UNet (958,924,964) + the DSG path; SD-VAE by reference
    "lvdm-short-ucf101": (604_006_276, 50_262_528, 19_446_759),  # LVDM's short UNet (548,904,580) + DSG; its AE
}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_presets_build_on_meta_with_the_documented_parameter_counts(name: str) -> None:
    config = load_config(name)
    with torch.device("meta"):
        modules = [UNet3D(config.unet), RGTrm(config.rgtrm)]
        modules.append(KLVideoAutoencoder(config.vae.kl3d) if config.vae.kind == "kl3d" else torch.nn.Identity())
    counts = tuple(sum(p.numel() for p in m.parameters()) for m in modules)
    assert counts == PARAMETERS[name]
    header = (CONFIGS / f"{name}.yaml").read_text()
    assert f"UNet3D {counts[0]:,}" in header and f"RGTrm {counts[1]:,}" in header


# -- pipeline ---------------------------------------------------------------------------------------


def test_tiny_pipeline_makes_a_video(pipe: DysenVDMPipeline) -> None:
    result = pipe(PROMPT, steps=2, progress=False)
    assert result.frames.shape == (8, 16, 16, 3) and result.frames.dtype == np.uint8
    assert result.dsg == with_motion(DSG_A) and result.prompt == PROMPT and result.seed == 0  # motions filled in
    assert set(result.timings) == {"plan", "encode", "sample", "decode"}
    assert all(seconds >= 0 for seconds in result.timings.values())


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("dpmpp", 0.0), ("euler", 0.0)])
def test_same_seed_same_video_other_seed_other_video(pipe: DysenVDMPipeline, sampler: str, eta: float) -> None:
    def run(seed: int) -> np.ndarray:
        return pipe(PROMPT, steps=2, seed=seed, sampler=sampler, eta=eta, progress=False).frames

    first = run(0)
    assert np.array_equal(first, run(0))
    assert not np.array_equal(first, run(1))


def test_a_given_dsg_skips_the_planner() -> None:
    pipe = _tiny_pipeline(planner=NoPlanner())
    result = pipe(dsg=DSG_B, steps=2, progress=False)
    assert result.dsg == with_motion(DSG_B) and result.prompt == "square jumps, then star spins"
    assert result.timings["plan"] < 0.01


def test_dsg_guidance_zero_ignores_the_dsg_and_nonzero_follows_it(pipe: DysenVDMPipeline) -> None:
    def run(dsg: DynamicSceneGraph, dsg_guidance: float) -> np.ndarray:
        return pipe(PROMPT, dsg=dsg, steps=2, dsg_guidance=dsg_guidance, progress=False).frames

    assert np.array_equal(run(DSG_A, 0.0), run(DSG_B, 0.0))
    assert not np.array_equal(run(DSG_A, 3.0), run(DSG_B, 3.0))


def test_unset_guidance_takes_the_models_defaults(pipe: DysenVDMPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(**kwargs: float) -> np.ndarray:
        return pipe(PROMPT, dsg=DSG_A, steps=2, progress=False, **kwargs).frames

    assert pipe.config.diffusion.guidance == 7.5 and pipe.config.diffusion.dsg_guidance is None
    assert np.array_equal(run(), run(guidance=7.5, dsg_guidance=7.5))
    diffusion = dataclasses.replace(pipe.config.diffusion, guidance=2.0, dsg_guidance=0.5)
    monkeypatch.setattr(pipe, "config", dataclasses.replace(pipe.config, diffusion=diffusion))
    assert np.array_equal(run(), run(guidance=2.0, dsg_guidance=0.5))
    assert np.array_equal(run(guidance=3.0), run(guidance=3.0, dsg_guidance=0.5))  # an unset s_dsg: the model's
    with pytest.raises(ValueError, match="guidance"):
        dataclasses.replace(diffusion, guidance=-1.0)


def test_unset_steps_take_the_models_default(pipe: DysenVDMPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(**kwargs: int) -> np.ndarray:
        return pipe(PROMPT, dsg=DSG_A, progress=False, **kwargs).frames

    assert pipe.config.diffusion.steps == 50  # the presets' default
    monkeypatch.setattr(pipe, "config", dataclasses.replace(pipe.config, diffusion=dataclasses.replace(
        pipe.config.diffusion, steps=2)))  # fmt: skip
    assert np.array_equal(run(), run(steps=2)) and not np.array_equal(run(), run(steps=3))
    with pytest.raises(ValueError, match="steps"):
        dataclasses.replace(pipe.config.diffusion, steps=0)


def test_the_batched_passes_equal_separate_passes(pipe: DysenVDMPipeline) -> None:
    text, null_text, graph_cond = pipe.encode_conditions(PROMPT, DSG_B, 4)
    stacked_text, stacked_graph = stack_passes(guidance_passes(7.5, 2.0), text, null_text, graph_cond)
    null_graph = (graph_cond[0], torch.zeros_like(graph_cond[1]), graph_cond[2])  # every DSG token masked out
    z = torch.randn(3, 4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(500)
    with torch.inference_mode():
        batched = pipe.unet(z, t, text=stacked_text, graph_cond=stacked_graph)  # [3, 4, 4, 4, 4]
        alone = [
            pipe.unet(z[:1], t, text=null_text, graph_cond=null_graph),
            pipe.unet(z[1:2], t, text=text, graph_cond=null_graph),
            pipe.unet(z[2:], t, text=text, graph_cond=graph_cond),
        ]
    torch.testing.assert_close(batched, torch.cat(alone), rtol=1e-4, atol=1e-5)


def test_save_and_load_give_the_same_video(pipe: DysenVDMPipeline, tmp_path: Path) -> None:
    folder = pipe.save_pretrained(tmp_path / "model")
    assert {p.name for p in folder.iterdir()} == {"model_index.json", "unet", "rgtrm", "vae"}
    index = json.loads((folder / "model_index.json").read_text())
    assert index["config"]["text_encoder"]["kind"] == "minilm" and index["config"]["planner"]["backend"] == "rules"
    loaded = DysenVDMPipeline.from_pretrained(folder, planner=FixedPlanner(DSG_A), text_encoder=HashTextEncoder())
    assert loaded.config == pipe.config
    assert np.array_equal(loaded(PROMPT, steps=2, progress=False).frames, pipe(PROMPT, steps=2, progress=False).frames)


def test_pickled_weights_are_refused(pipe: DysenVDMPipeline, tmp_path: Path) -> None:
    folder = pipe.save_pretrained(tmp_path / "model")
    (folder / "unet" / "model.safetensors").unlink()
    torch.save(pipe.unet.state_dict(), folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled"):
        DysenVDMPipeline.from_pretrained(folder, planner=FixedPlanner(DSG_A), text_encoder=HashTextEncoder())


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model_index.json is missing"):
        DysenVDMPipeline.from_pretrained(tmp_path)


def test_text_encoder_width_must_match_the_config() -> None:
    config = dataclasses.replace(TINY, text_encoder=TextEncoderSpec(dim=16))
    encoder = HashTextEncoder()
    encoder.dim = 32
    with pytest.raises(DysenError, match="32-d tokens"):
        DysenVDMPipeline.from_config(config, planner=NoPlanner(), text_encoder=encoder)


# -- dysen generate -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_generate_with_the_default_shapes_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "video.mp4"
    clock = time.perf_counter()
    code = main(["generate", PROMPT, "--out", str(out), "--steps", "4", "--seed", "3", "--config", "shapes-tiny"])
    elapsed = time.perf_counter() - clock
    assert code == 0
    info = probe(out, verify=True)
    assert (info.num_frames, info.height, info.width) == (16, 64, 64)
    dsg = DynamicSceneGraph.from_json((tmp_path / "video.dsg.json").read_text())
    assert [e.triplet for e in dsg.events] == [("circle", "moves right", None), ("square", "jumps", None)]
    assert (tmp_path / "video.dsg.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert str(out) in printed and "video.dsg.json" in printed
    assert dsg.boxes is not None  # the shipped shapes-tiny is layout-grounded: the plan got imagined boxes
    print(f"dysen generate, shapes-tiny, 4 steps: {elapsed:.1f} s")


def test_cli_generate_makes_the_output_folder(tmp_path: Path) -> None:
    """A new folder in --out is made, not an error after the video was sampled."""
    out = tmp_path / "new" / "deeper" / "video.mp4"
    assert main(["generate", PROMPT, "--out", str(out), "--steps", "1", "--config", "shapes-tiny"]) == 0
    assert probe(out).num_frames == 16 and (out.parent / "video.dsg.png").is_file()


def test_cli_generate_from_a_plan_file_and_a_model_folder(
    tmp_path: Path, pipe: DysenVDMPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = pipe.save_pretrained(tmp_path / "model")
    monkeypatch.setattr("dysen.pipeline.build_text_encoder", lambda spec: HashTextEncoder())
    plan = tmp_path / "plan.json"
    plan.write_text(DSG_B.to_json())
    out = tmp_path / "v.gif"
    assert main(["generate", "--plan", str(plan), "--model", str(folder), "--out", str(out), "--steps", "2"]) == 0
    assert probe(out).num_frames == 8
    assert DynamicSceneGraph.from_json((tmp_path / "v.dsg.json").read_text()) == with_motion(DSG_B)


def test_cli_generate_plans_with_an_llm_planner_when_asked(tmp_path: Path, fake_llm) -> None:
    from fake_llm_server import Reply

    answers = [
        "(circle, moves right, (0v, 2v))\n(square, jumps, (2v, 4v))",
        *["(circle, red), (square, blue)"] * 4,
        "\n".join(f"{m} SG: (circle, red), (square, blue)" for m in range(4)),
    ]
    fake_llm.push(*(Reply(text) for text in answers))
    out = tmp_path / "video.mp4"
    args = ["generate", PROMPT, "--out", str(out), "--steps", "2", "--planner", "openai"]
    assert main([*args, "--planner-model", "fake-model", "--base-url", fake_llm.base_url]) == 0
    assert len(fake_llm.requests) == len(answers)
    dsg = DynamicSceneGraph.from_json((tmp_path / "video.dsg.json").read_text())
    assert [(e.agent, e.start, e.end) for e in dsg.events] == [("circle", 0, 2), ("square", 2, 4)]
    assert ("circle", "red") in dsg.graphs[0].facts()


def test_cli_generate_needs_a_prompt_or_a_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--out", "v.mp4"]) == 1
    assert "give a PROMPT" in capsys.readouterr().err


def test_layout_model_imagines_boxes_for_a_planned_dsg_and_saves_its_config(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY,
        unet=dataclasses.replace(TINY.unet, layout=True),
        rgtrm=dataclasses.replace(TINY.rgtrm, layout=True),
    )
    pipe = DysenVDMPipeline.from_config(config, planner=FixedPlanner(DSG_A), text_encoder=HashTextEncoder())
    with torch.no_grad():
        for proj in pipe.unet.layout_in.proj:
            torch.nn.init.normal_(proj.weight)
    first = pipe("a circle moves right", steps=2, seed=4, progress=False)
    assert first.dsg.boxes is not None and DSG_A.boxes is None
    assert {b.object for step in first.dsg.boxes for b in step} == {"circle"}
    again = pipe("a circle moves right", steps=2, seed=4, progress=False)
    assert np.array_equal(first.frames, again.frames) and again.dsg == first.dsg
    other_seed = pipe("a circle moves right", steps=2, seed=5, progress=False)
    assert other_seed.dsg.boxes != first.dsg.boxes  # the layout is drawn with the generation seed
    pipe.save_pretrained(tmp_path / "model")
    loaded = DysenVDMPipeline.from_pretrained(
        tmp_path / "model", planner=FixedPlanner(DSG_A), text_encoder=HashTextEncoder()
    )
    assert loaded.unet.config.layout and loaded.rgtrm.config.layout
    assert loaded.unet.layout_in is not None
