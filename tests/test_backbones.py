"""Pretrained backbones (``dysen.backbones``, ``dysen.backbone_pipeline``, ``dysen generate --backbone``).

Tiny random Wan and ModelScope-style UNet3D models are saved as diffusers folders (``backbone_fixtures``) and loaded
back through dysen; nothing touches the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backbone_fixtures import save_unet3d, save_wan, wan_components
from dysen.backbone_pipeline import BackbonePipeline
from dysen.backbones import folder as backbone_folders
from dysen.backbones.base import BackboneDefaults, BackboneError, BackboneGeometry, BackboneOptions, BackboneSizeError
from dysen.backbones.components import BackboneFolderError
from dysen.backbones.folder import load_backbone, read_geometry
from dysen.backbones.wan import WAN21_T2V_1_3B_TRANSFORMER
from dysen.cli import main
from dysen.data.video import read_video
from dysen.errors import DysenError

PROMPT = "a red circle moves right"
SMALL = {"num_frames": 5, "height": 16, "width": 16, "steps": 3, "guidance": 4.0, "progress": False}


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_wan(tmp_path_factory.mktemp("backbones") / "wan")


@pytest.fixture(scope="module")
def unet3d_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_unet3d(tmp_path_factory.mktemp("backbones") / "unet3d")


@pytest.fixture(scope="module")
def wan(wan_folder: Path) -> BackbonePipeline:
    return BackbonePipeline.from_folder(wan_folder, BackboneOptions(device="cpu"))


@pytest.fixture(scope="module")
def unet3d(unet3d_folder: Path) -> BackbonePipeline:
    return BackbonePipeline.from_folder(unet3d_folder, BackboneOptions(device="cpu"))


def copy_folder(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


# -- geometry: latent frames and the token grid ------------------------------------------------------------------

WAN = BackboneGeometry("wan", 16, 8, 4, (2, 2), BackboneDefaults(480, 832, 81, 16, 50, 5.0))
PER_FRAME = BackboneGeometry("unet3d", 4, 8, 1, (1, 1), BackboneDefaults(256, 256, 16, 8, 50, 9.0))


@pytest.mark.parametrize(("frames", "latent"), [(1, 1), (5, 2), (9, 3), (17, 5), (81, 21)])
def test_causal_4x_vae_maps_1_plus_4m_frames(frames: int, latent: int) -> None:
    assert WAN.latent_frames(frames) == latent
    assert PER_FRAME.latent_frames(frames) == frames  # a per-frame VAE keeps every frame


@pytest.mark.parametrize("frames", [2, 4, 6, 16, 80])
def test_causal_vae_refuses_other_frame_counts(frames: int) -> None:
    low = (frames - 1) // 4 * 4 + 1
    with pytest.raises(BackboneSizeError, match=rf"1 \+ 4·m frames.*use {low} or {low + 4}"):
        WAN.latent_frames(frames)
    assert PER_FRAME.latent_frames(frames) == frames


@pytest.mark.parametrize("frames", [0, -3, 2.0, True])
def test_frame_count_must_be_a_positive_whole_number(frames: object) -> None:
    for geometry in (WAN, PER_FRAME):
        with pytest.raises(BackboneSizeError, match="whole number"):
            geometry.latent_frames(frames)  # type: ignore[arg-type]


def test_token_grid_and_latent_shape() -> None:
    assert WAN.token_grid(480, 832) == (30, 52)  # 16 px per token: 8x VAE, patch 2
    assert WAN.latent_shape(81, 480, 832) == (16, 21, 60, 104)
    assert PER_FRAME.token_grid(256, 256) == (32, 32)
    assert PER_FRAME.latent_shape(16, 256, 256) == (4, 16, 32, 32)
    with pytest.raises(BackboneSizeError, match="height must be a positive multiple of 16.*use 480 or 496"):
        WAN.token_grid(488, 832)
    with pytest.raises(BackboneSizeError, match="width must be a positive multiple of 8"):
        PER_FRAME.latent_shape(16, 256, 100)
    assert WAN.video_size() == (81, 480, 832) and WAN.video_size(5, None, 16) == (5, 480, 16)


def test_geometry_is_read_from_the_configs(wan_folder: Path, unet3d_folder: Path) -> None:
    wan = read_geometry(wan_folder)
    assert (wan.latent_channels, wan.spatial_factor, wan.temporal_factor, wan.patch) == (4, 8, 4, (2, 2))
    assert wan.defaults.num_frames == 81 and wan.defaults.fps == 16
    unet = read_geometry(unet3d_folder)
    assert (unet.latent_channels, unet.spatial_factor, unet.temporal_factor, unet.patch) == (4, 2, 1, (1, 1))


# -- loading and sampling --------------------------------------------------------------------------------------


def test_a_shipped_backbone_is_found_by_name_and_a_folder_here_wins(
    wan_folder: Path, unet3d_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(backbone_folders.SHIPPED_BACKBONES, "tiny-shipped", wan_folder)
    monkeypatch.chdir(tmp_path)
    assert backbone_folders.backbone_folder("tiny-shipped") == wan_folder
    assert read_geometry("tiny-shipped").name == "wan"
    shutil.copytree(unet3d_folder, tmp_path / "tiny-shipped")  # a folder of that name here: it is what is meant
    assert backbone_folders.backbone_folder("tiny-shipped") == Path("tiny-shipped")
    assert read_geometry("tiny-shipped").name == "unet3d"
    assert backbone_folders.backbone_folder("elsewhere") == Path("elsewhere")  # not shipped: the path as given


def test_wan_loads_with_its_parts(wan: BackbonePipeline) -> None:
    backbone = wan.backbone
    assert backbone.name == "wan" and backbone.prediction_type == "flow"
    assert type(backbone.make_scheduler()).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert backbone.make_scheduler() is not backbone.make_scheduler()  # fresh: schedulers keep per-run state
    states, mask = backbone.encode_prompt([PROMPT, ""])
    assert states.shape == (2, 512, 8) and mask.shape == (2, 512)
    assert mask[0].sum() == 6 and mask[1].sum() == 1  # five words + </s>; the empty prompt: </s>
    assert torch.all(states[~mask] == 0)  # zero past each prompt, as WanPipeline pads


def test_unet3d_loads_with_its_parts(unet3d: BackbonePipeline) -> None:
    backbone = unet3d.backbone
    assert backbone.name == "unet3d" and backbone.prediction_type == "epsilon"
    assert type(backbone.make_scheduler()).__name__ == "DDIMScheduler"
    states, mask = backbone.encode_prompt([PROMPT, ""])
    assert states.shape == (2, 8, 8) and mask.shape == (2, 8)  # the tokenizer's model_max_length


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_same_seed_same_video_other_seed_other_video(name: str, request: pytest.FixtureRequest) -> None:
    pipe: BackbonePipeline = request.getfixturevalue(name)
    first, again, other = (pipe(PROMPT, seed=seed, **SMALL) for seed in (1, 1, 2))
    assert first.frames.shape == (5, 16, 16, 3) and first.frames.dtype == np.uint8
    assert np.array_equal(first.frames, again.frames)
    assert not np.array_equal(first.frames, other.frames)


@pytest.mark.parametrize("name", ["wan", "unet3d"])
def test_vae_round_trip_shapes(name: str, request: pytest.FixtureRequest) -> None:
    backbone = request.getfixturevalue(name).backbone
    frames = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    latents = backbone.encode_video(frames)
    assert latents.shape == (1, 4, *backbone.latent_shape(5, 16, 16)[1:])  # Wan: 2 latent frames; per-frame: 5
    assert backbone.decode_latents(latents).shape == (5, 16, 16, 3)


def test_wan_latents_are_normalised_with_the_vae_statistics(wan: BackbonePipeline) -> None:
    backbone = wan.backbone
    frames = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    video = frames.permute(3, 0, 1, 2).float()[None] / 127.5 - 1.0  # [1, 3, 1, 16, 16]
    raw = backbone.vae.encode(video).latent_dist.mode()  # [1, 4, 1, 2, 2]
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 4, 1, 1, 1)
    std = torch.tensor([1.5, 2.0, 0.5, 1.0]).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(backbone.encode_video(frames), (raw - mean) / std)


def test_guidance_passes_and_callbacks(wan: BackbonePipeline) -> None:
    batches, steps = [], []
    denoise_fn = wan.backbone.denoise_fn
    wan.backbone.denoise_fn = lambda x, t, c: batches.append(x.shape[0]) or denoise_fn(x, t, c)  # type: ignore[method-assign]
    try:
        wan(PROMPT, **{**SMALL, "guidance": 1.0}, callback=steps.append)  # the prompt alone: one pass
        wan(PROMPT, **SMALL)  # CFG: the negative prompt's pass and the prompt's, as one batch
    finally:
        del wan.backbone.denoise_fn
    assert batches == [1, 1, 1, 2, 2, 2]
    assert [s.index for s in steps] == [0, 1, 2] and steps[-1].latents.shape == (1, 4, 2, 2, 2)


def test_wan_matches_diffusers_wan_pipeline(wan_folder: Path, wan: BackbonePipeline) -> None:
    """The one sampler with Wan's parts gives WanPipeline.__call__'s latents (same noise, same guidance)."""
    from diffusers import WanPipeline

    reference = WanPipeline.from_pretrained(wan_folder, local_files_only=True)
    generator = torch.Generator("cpu").manual_seed(3)
    expected = reference(
        PROMPT, height=16, width=16, num_frames=5, num_inference_steps=3, guidance_scale=4.0,
        max_sequence_length=512, generator=generator, output_type="latent",
    ).frames  # fmt: skip
    steps = []
    wan(PROMPT, seed=3, callback=steps.append, **SMALL)
    torch.testing.assert_close(steps[-1].latents, expected, rtol=1e-4, atol=1e-5)


def test_wan_samples_with_unipc_flow_scheduler(wan_folder: Path, tmp_path: Path) -> None:
    """Wan2.1's released folders ship UniPC in flow mode: it runs through the same loop (its step takes no
    generator), deterministically."""
    from diffusers import UniPCMultistepScheduler

    folder = copy_folder(wan_folder, tmp_path)
    shutil.rmtree(folder / "scheduler")
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    scheduler.save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "UniPCMultistepScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    pipe = BackbonePipeline.from_folder(folder, BackboneOptions(device="cpu"))
    assert pipe.backbone.prediction_type == "flow"
    first, again = (pipe(PROMPT, seed=0, **SMALL).frames for _ in range(2))
    assert np.array_equal(first, again)


def test_bfloat16_weights(wan_folder: Path) -> None:
    pipe = BackbonePipeline.from_folder(wan_folder, BackboneOptions(dtype="bfloat16", device="cpu"))
    assert pipe.backbone.transformer.dtype == torch.bfloat16 and pipe.backbone.vae.dtype == torch.float32
    assert pipe(PROMPT, seed=0, **SMALL).frames.shape == (5, 16, 16, 3)


# -- the command line -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fps"), [("wan", 16), ("unet3d", 8)])
def test_cli_generate_with_backbone(
    name: str, fps: int, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = request.getfixturevalue(f"{name}_folder")
    videos = {}
    for label, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / f"{label}.gif"
        argv = ["generate", PROMPT, "--backbone", str(folder), "--out", str(out), "--seed", seed]
        argv += ["--frames", "5", "--height", "16", "--width", "16", "--steps", "2", "--device", "cpu"]
        assert main(argv) == 0
        videos[label] = read_video(out)
    assert f"(5 frames, 16x16, {fps} fps)" in capsys.readouterr().out
    assert videos["a"].shape == (5, 16, 16, 3)
    assert np.array_equal(videos["a"], videos["b"]) and not np.array_equal(videos["a"], videos["c"])


def test_cli_refuses_bad_sizes_before_loading(
    wan_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights loaded before the size was checked")

    monkeypatch.setattr(BackbonePipeline, "from_folder", no_loading)
    base = ["generate", PROMPT, "--backbone", str(wan_folder), "--out", str(tmp_path / "x.mp4"), "--device", "cpu"]
    assert main([*base, "--frames", "6", "--height", "16", "--width", "16"]) != 0
    assert "1 + 4·m frames" in capsys.readouterr().err
    assert main([*base, "--frames", "5", "--height", "20", "--width", "16"]) != 0
    assert "height must be a positive multiple of 16" in capsys.readouterr().err


def test_cli_refuses_flags_that_do_not_apply(wan_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = ["--out", str(tmp_path / "x.mp4")]
    assert main(["generate", PROMPT, "--backbone", str(wan_folder), "--sampler", "ddim", *out]) != 0
    assert "--sampler do not apply with --backbone" in capsys.readouterr().err
    assert main(["generate", PROMPT, "--height", "16", *out]) != 0
    assert "--height: only with --backbone" in capsys.readouterr().err


# -- options and errors -----------------------------------------------------------------------------------------


def test_offload_is_refused_without_a_gpu(wan_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackboneError, match="--offload .* needs a CUDA GPU"):
        load_backbone(wan_folder, BackboneOptions(offload=True))
    with pytest.raises(BackboneError, match="float16 is for GPUs"):
        load_backbone(wan_folder, BackboneOptions(dtype="float16"))
    with pytest.raises(BackboneError, match="dtype must be one of"):
        BackboneOptions(dtype="float64")  # type: ignore[arg-type]


def test_missing_index_and_hub_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BackboneFolderError, match="has no model_index.json"):
        load_backbone(tmp_path)
    with pytest.raises(BackboneFolderError, match="not a local folder.*hub id.*hf download"):
        load_backbone("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(BackboneFolderError, match="cannot read"):
        load_backbone(tmp_path)


def test_unsupported_pipeline_class_names_what_was_found(wan_folder: Path, tmp_path: Path) -> None:
    folder = copy_folder(wan_folder, tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "CogVideoXPipeline"}))
    with pytest.raises(BackboneFolderError, match="describes a CogVideoXPipeline.*transformer=WanTransformer3DModel"):
        load_backbone(folder)
    (folder / "model_index.json").write_text(json.dumps({**index, "vae": ["diffusers", "AutoencoderKLLTXVideo"]}))
    with pytest.raises(BackboneFolderError, match="'vae' component .* is a AutoencoderKLLTXVideo"):
        load_backbone(folder)
    (folder / "model_index.json").write_text(json.dumps({**index, "text_encoder": [None, None]}))
    with pytest.raises(BackboneFolderError, match="names no 'text_encoder' component"):
        load_backbone(folder)


def test_pickle_only_weights_are_refused(wan_folder: Path, tmp_path: Path) -> None:
    folder = copy_folder(wan_folder, tmp_path)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    torch.save({"weight": torch.zeros(1)}, weights.with_suffix(".bin"))
    weights.unlink()
    with pytest.raises(
        BackboneFolderError, match=r"only pickled weights \(diffusion_pytorch_model.bin\).*safetensors"
    ):
        load_backbone(folder)
    shutil.rmtree(folder / "vae")
    with pytest.raises(BackboneFolderError, match="cannot read the 'vae' component's config"):
        read_geometry(folder)


def test_error_family() -> None:
    assert issubclass(BackboneFolderError, DysenError) and issubclass(BackboneSizeError, BackboneError)


# -- the real Wan2.1-T2V-1.3B, without its weights --------------------------------------------------------------

WAN21_T2V_1_3B = WAN21_T2V_1_3B_TRANSFORMER  # transformer/config.json of Wan-AI/Wan2.1-T2V-1.3B-Diffusers


def test_wan21_1_3b_config_builds_on_the_meta_device() -> None:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        model = WanTransformer3DModel(**WAN21_T2V_1_3B)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.config.num_attention_heads * model.config.attention_head_dim == 1536  # dim
    assert sum(p.numel() for p in model.parameters()) == 1_418_996_800  # "1.3B"


def test_fixture_components_are_tiny() -> None:
    parts = wan_components()
    for name in ("transformer", "text_encoder"):
        assert sum(p.numel() for p in parts[name].parameters()) < 5_000
    assert sum(p.numel() for p in parts["vae"].parameters()) < 20_000


def test_unet3d_matches_diffusers_text_to_video_pipeline(unet3d_folder: Path, unet3d: BackbonePipeline) -> None:
    """The one sampler with ModelScope's parts gives TextToVideoSDPipeline.__call__'s latents (DDIM, CFG)."""
    pytest.importorskip("diffusers.pipelines.deprecated.text_to_video_synthesis")
    from diffusers import TextToVideoSDPipeline

    reference = TextToVideoSDPipeline.from_pretrained(unet3d_folder, local_files_only=True)
    expected = reference(
        PROMPT, height=16, width=16, num_frames=5, num_inference_steps=3, guidance_scale=4.0,
        generator=torch.Generator("cpu").manual_seed(3), output_type="latent",
    ).frames  # fmt: skip
    steps = []
    unet3d(PROMPT, seed=3, callback=steps.append, **SMALL)
    torch.testing.assert_close(steps[-1].latents, expected, rtol=1e-4, atol=1e-5)


def test_wan22_second_expert_and_per_token_timesteps(wan_folder: Path, wan: BackbonePipeline, tmp_path: Path) -> None:
    """Wan 2.2 A14B: ``transformer_2`` denoises below boundary_ratio · 1000; TI2V: one timestep per token gives
    the same video as one per sample."""
    folder = copy_folder(wan_folder, tmp_path)
    shutil.copytree(folder / "transformer", folder / "transformer_2")
    index = json.loads((folder / "model_index.json").read_text())
    index.update(transformer_2=["diffusers", "WanTransformer3DModel"], boundary_ratio=0.5, expand_timesteps=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    pipe = BackbonePipeline.from_folder(folder, BackboneOptions(device="cpu"))
    calls: list[tuple[str, float]] = []
    for name in ("transformer", "transformer_2"):
        module = getattr(pipe.backbone, name)
        module.register_forward_pre_hook(
            lambda m, a, kw, name=name: calls.append((name, float(kw["timestep"].flatten()[0]))), with_kwargs=True
        )
    frames = pipe(PROMPT, seed=4, **SMALL).frames
    assert [name for name, _ in calls] == ["transformer", "transformer", "transformer_2"]
    assert all((t >= 500) == (name == "transformer") for name, t in calls)
    assert np.abs(frames.astype(int) - wan(PROMPT, seed=4, **SMALL).frames.astype(int)).max() <= 1  # same weights
