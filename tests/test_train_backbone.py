"""``dysen train-backbone`` (issue 24 §4) on the ``wan-test`` preset: flow matching, the folder it writes, resume.

The loss is checked on known cases; a 2-step run writes a ``DysenWanPipeline`` folder whose transformer and
scheduler are real diffusers classes, which ``load_backbone`` reads and ``dysen generate --backbone`` samples; a
run stopped after step 2 and resumed repeats the losses of an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dysen.backbones.dysen_wan import DysenWanBackbone
from dysen.backbones.folder import load_backbone, read_geometry
from dysen.cli import main
from dysen.diffusion.loss import FlowSigmas, flow_interpolate, flow_matching_loss, sample_sigmas, shift_sigmas

ARGS = ["--config", "wan-test", "--batch-size", "2", "--num-clips", "8", "--lr", "1e-3", "--save-every", "2"]
STEPS = 4


def _losses(run: Path) -> dict[int, float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {entry["step"]: entry["loss"] for entry in map(json.loads, lines)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 4-step run of the wan-test preset."""
    out = tmp_path_factory.mktemp("backbone") / "base"
    assert main(["train-backbone", "--out", str(out), "--steps", str(STEPS), *ARGS]) == 0
    return out


# -- flow matching -------------------------------------------------------------------------------------------------


def test_flow_matching_loss_of_the_exact_velocity_is_zero_and_of_zero_is_known() -> None:
    x0 = torch.randn(3, 4, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    config = FlowSigmas()
    # the draws the loss makes: σ (randn for the logit-normal), then ε
    gen = torch.Generator().manual_seed(7)
    sigma = sample_sigmas(3, config, gen)
    noise = torch.randn(x0.shape, generator=gen)
    x_t = flow_interpolate(x0, noise, sigma)

    def oracle(x: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        assert torch.allclose(x, x_t) and torch.allclose(t, 1000 * sigma) and cond == "c"
        return noise - x0  # v = ε − x_0: the exact velocity

    assert flow_matching_loss(oracle, x0, "c", config, torch.Generator().manual_seed(7)).item() == pytest.approx(0)
    zero = flow_matching_loss(lambda x, t, c: torch.zeros_like(x), x0, None, config, torch.Generator().manual_seed(7))
    assert zero.item() == pytest.approx((noise - x0).square().mean().item(), rel=1e-6)


def test_flow_path_endpoints_and_the_shift() -> None:
    x0, noise = torch.ones(2, 3), torch.full((2, 3), 5.0)
    assert torch.equal(flow_interpolate(x0, noise, torch.tensor([0.0, 1.0])), torch.tensor([[1.0] * 3, [5.0] * 3]))
    sigma = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(shift_sigmas(sigma, 3.0), torch.tensor([0.0, 0.75, 1.0]))  # 3·0.5 / (1 + 2·0.5)
    assert torch.equal(shift_sigmas(sigma, 1.0), sigma)
    drawn = sample_sigmas(10_000, FlowSigmas(shift=1.0), torch.Generator().manual_seed(0))
    assert 0 < drawn.min() and drawn.max() < 1 and drawn.median().item() == pytest.approx(0.5, abs=0.02)
    uniform = sample_sigmas(10_000, FlowSigmas(kind="uniform", shift=3.0), torch.Generator().manual_seed(0))
    assert uniform.median().item() == pytest.approx(0.75, abs=0.02)  # the shift of U(0, 1)'s median


def test_the_scheduler_gives_the_transformer_the_timesteps_it_was_trained_on(run: Path) -> None:
    """Sampling asks for t = 1000 σ' with the same shift as training (FlowMatchEulerDiscreteScheduler)."""
    backbone = load_backbone(run / "model")
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(4)
    assert torch.allclose(scheduler.timesteps / 1000, scheduler.sigmas[:-1])
    assert scheduler.config.shift == FlowSigmas().shift


# -- the folder ----------------------------------------------------------------------------------------------------


def test_the_folder_names_real_diffusers_classes_for_transformer_and_scheduler(run: Path) -> None:
    index = json.loads((run / "model" / "model_index.json").read_text())
    assert index["_class_name"] == "DysenWanPipeline"
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["vae"] == ["dysen", "KLVideoAutoencoder"] and index["text_encoder"] == ["dysen", "MiniLMTextEncoder"]
    from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    WanTransformer3DModel.from_pretrained(run / "model" / "transformer", local_files_only=True, use_safetensors=True)
    FlowMatchEulerDiscreteScheduler.from_pretrained(run / "model" / "scheduler")


def test_load_backbone_reads_the_run_with_its_ema_weights(run: Path) -> None:
    backbone = load_backbone(run / "model")
    assert isinstance(backbone, DysenWanBackbone) and backbone.prediction_type == "flow"
    geometry = read_geometry(run / "model")
    assert (geometry.latent_channels, geometry.spatial_factor, geometry.temporal_factor) == (4, 4, 1)
    assert backbone.latent_shape(8, 16, 16) == (4, 8, 4, 4)  # per-frame: latent frames = frames
    from dysen.train.checkpoint import latest_checkpoint, load_checkpoint

    checkpoint = load_checkpoint(latest_checkpoint(run))  # type: ignore[arg-type]
    assert checkpoint.ema is not None
    for key, value in backbone.transformer.state_dict().items():
        assert torch.equal(value, checkpoint.ema[f"transformer.{key}"]), key
    states, mask = backbone.encode_prompt(["a red circle moves right", ""])
    assert states.shape == (2, 32, 384) and mask[1].sum() == 2 and states[1, 2:].abs().sum() == 0


def test_generate_with_the_run_as_backbone_writes_a_video(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    assert main(["generate", "a red circle moves right", "--backbone", str(run / "model"), "--out", str(out)]) == 0
    from dysen.data.video import read_video

    frames = read_video(out)
    assert tuple(frames.shape) == (8, 16, 16, 3)


# -- the one loop's promises ---------------------------------------------------------------------------------------


def test_resume_repeats_the_uninterrupted_losses(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    assert main(["train-backbone", "--out", str(out), "--steps", "2", *ARGS]) == 0
    assert main(["train-backbone", "--out", str(out), "--steps", str(STEPS), *ARGS, "--resume", "latest"]) == 0
    base, resumed = _losses(run), _losses(out)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert resumed == pytest.approx(base, rel=1e-5, abs=1e-6)
    assert all(0 < loss < 10 for loss in base.values())


def test_a_fresh_run_refuses_a_folder_that_holds_one(run: Path) -> None:
    assert main(["train-backbone", "--out", str(run), "--steps", "1", *ARGS]) != 0


def test_dsg_control_steers_the_trained_backbone_like_a_real_wan(run: Path, tmp_path: Path) -> None:
    """The fast tokenizer's token offsets match MiniLM's states, so the plan's phrases land where control looks."""
    backbone = load_backbone(run / "model")
    text = "a red circle moves right"
    tokens = backbone.text_encoder.encoder._load()[0]([text])["input_ids"][0].tolist()  # what MiniLM reads
    assert backbone.tokenizer(text).input_ids == tokens
    out = tmp_path / "c.mp4"
    argv = ["generate", text, "--backbone", str(run / "model"), "--out", str(out), "--control-strength", "1"]
    assert main(argv) == 0 and out.is_file() and out.with_suffix(".dsg.json").is_file()


def test_the_shapes_wan_tiny_preset_is_the_shipped_models_recipe() -> None:
    import dataclasses

    from dysen.backbones.folder import SHIPPED_BACKBONES
    from dysen.train.backbone_task import BACKBONE_PRESETS

    preset = BACKBONE_PRESETS["shapes-wan-tiny"]
    shipped = json.loads((SHIPPED_BACKBONES["shapes-wan-tiny"] / "transformer" / "config.json").read_text())
    size = dataclasses.asdict(preset.transformer)
    assert {key: shipped[key] for key in size} == {**size, "patch_size": list(size["patch_size"])}
