"""``dysen convert lvdm``: LVDM's checkpoints, by their exact tensor names and shapes, into dysen pipeline folders.

The full-size checks run on the meta device. The digests are SHA-256 of the state-dict listings (sorted
``name:[shape]`` lines) of LVDM's own modules (its ``UNetModel``s, AEs; transformers 4.24's CLIP, which LVDM pins),
computed once outside the repository from LVDM's code with its released configs.
The tiny checkpoints are built here from the key maps, with random values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from dysen.cli import main
from dysen.config import DysenVDMConfig, TextEncoderSpec, VAESpec, VideoSpec, load_config
from dysen.convert.lvdm import (
    LVDM_LATENT_STATS,
    SCHEDULE_BUFFERS,
    ConversionError,
    T2VParts,
    ae_slots_and_drops,
    convert_t2v,
    lvdm_ae_config,
    t2v_networks,
    t2v_slots,
)
from dysen.convert.lvdm_keys import CLIP_POSITION_IDS, unet_key_map
from dysen.diffusion.schedules import DiffusionConfig, alphas_cumprod, make_betas
from dysen.models.rgtrm import RGTrmConfig
from dysen.models.unet3d import UNet3D, UNet3DConfig
from dysen.models.vae import KLVideoAutoencoder, KLVideoAutoencoderConfig
from dysen.pipeline import DysenVDMPipeline, read_pipeline_config
from pipeline_fixtures import DSG_A, FixedPlanner, HashTextEncoder

LVDM_T2V_UNET = (974, 958_924_964, "2912737aefcdfd36d409fa6e691da8d40e4124545a59df2750dac27a3f3870a2")
LVDM_SHORT_UNET = (668, 548_904_580, "88142db245b973d0b00a8f1ba32bc50900f32d6544cdc559f68d62207ce59286")
LVDM_SHORT_UNET_CONFIG = UNet3DConfig(
    model_channels=256, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_resolutions=(2, 4, 8), num_heads=4,
    use_text_cross_attention=False, dsg_dim=768, temporal_max_distance=4, arch="lvdm-short",
)  # fmt: skip


def _listing(shapes: dict[str, tuple[int, ...]]) -> tuple[int, int, str]:
    text = "\n".join(f"{name}:{list(shape)}" for name, shape in sorted(shapes.items()))
    count = sum(torch.Size(shape).numel() for shape in shapes.values())
    return len(shapes), count, hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    "config,expected", [(load_config("lvdm-t2v").unet, LVDM_T2V_UNET), (LVDM_SHORT_UNET_CONFIG, LVDM_SHORT_UNET)]
)
def test_full_size_unets_have_lvdm_names_shapes_and_counts(config: UNet3DConfig, expected: tuple) -> None:
    with torch.device("meta"):
        unet = UNet3D(config)
    key_map = unet_key_map(unet)
    assert _listing(dict(key_map.values())) == expected
    dsg = [name for name in unet.state_dict() if name not in key_map]  # dysen's own: the DSG path only
    assert dsg and all("dsg" in name for name in dsg)


LVDM_T2V_VAE = (248, 83_653_863, "743d8d2ea2d77ed8fefb1dac9b9fac31c7742ecd38c6175d053612de6962ecd3")
"""``first_stage_model.``: LVDM's LDM ``Encoder``/``Decoder`` + quant convs built from its text2video.yaml."""
LVDM_T2V_CLIP = (197, 123_060_557, "95a676c27999763328789b20c96e3283c44359e8b10ba267fe148486dd429cc9")
"""``cond_stage_model.``: transformers 4.24's (LVDM's pin) ``CLIPTextModel`` of CLIP-L, ``position_ids`` included."""


def test_full_size_t2v_checkpoint_layout() -> None:
    with torch.device("meta"):
        slots = t2v_slots(t2v_networks(T2VParts()))
    by_part = {part: [s for s in slots.values() if s.component == part] for part in ("unet", "vae", "text_encoder")}
    counts = {part: (len(s), sum(torch.Size(x.file_shape).numel() for x in s)) for part, s in by_part.items()}
    assert counts == {"unet": (974, 958_924_964), "vae": (248, 83_653_863), "text_encoder": (196, 123_060_480)}
    listings = {part: {n: s.file_shape for n, s in slots.items() if s.component == part} for part in by_part}
    assert _listing(listings["vae"]) == LVDM_T2V_VAE
    assert _listing({**listings["text_encoder"], "cond_stage_model." + CLIP_POSITION_IDS: (1, 77)}) == LVDM_T2V_CLIP
    assert "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight" in slots  # the LDM level order, reversed
    assert slots["first_stage_model.encoder.mid.attn_1.q.weight"].file_shape == (512, 512, 1, 1)
    assert "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight" in slots


# -- a tiny text-to-video checkpoint ----------------------------------------------------------------------------------

TINY = T2VParts(
    config=DysenVDMConfig(
        unet=UNet3DConfig(
            model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2), num_heads=2,
            norm_groups=4, text_dim=16, dsg_dim=8, temporal_max_distance=4, arch="lvdm-t2v",
        ),
        rgtrm=RGTrmConfig(label_dim=16, dim=8, num_layers=1, num_heads=2),
        vae=VAESpec(kind="frame"),
        text_encoder=TextEncoderSpec(kind="clip", model="unused", dim=16),
        diffusion=DiffusionConfig(eta=1.0, guidance=15.0),
        video=VideoSpec(num_frames=4, height=16, width=16),
    ),
    vae={"block_out_channels": (8, 8), "layers_per_block": 1, "norm_num_groups": 4, "latent_channels": 4,
         "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2,
         "scaling_factor": 0.18215},
    clip={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "quick_gelu"},
    tokenizer="openai/clip-vit-large-patch14",
)  # fmt: skip


def lvdm_t2v_state(parts: T2VParts, seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint as LVDM writes it for ``parts``: its exact names and shapes, random values, the schedule
    buffers and CLIP's persistent position ids."""
    with torch.device("meta"):
        slots = t2v_slots(t2v_networks(parts))
    generator = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(slot.file_shape, generator=generator) * 0.2 for name, slot in sorted(slots.items())}
    betas = make_betas(parts.config.diffusion).double()
    state.update({name: betas.clone() for name in SCHEDULE_BUFFERS})
    state["alphas_cumprod"] = alphas_cumprod(betas)
    state["cond_stage_model." + CLIP_POSITION_IDS] = torch.arange(77)[None]
    return state


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], dict]:
    folder = tmp_path_factory.mktemp("lvdm")
    state = lvdm_t2v_state(TINY)
    torch.save({"state_dict": state, "global_step": 7}, folder / "t2v.ckpt")
    report = convert_t2v(folder / "t2v.ckpt", folder / "model", parts=TINY)
    return folder, state, report


def test_a_tiny_t2v_checkpoint_converts_with_every_tensor_placed(converted: tuple) -> None:
    folder, state, report = converted
    assert report["dropped"] == {"clip position_ids": 1, "schedule": len(SCHEDULE_BUFFERS)}
    assert sum(report["converted"].values()) + 1 + len(SCHEDULE_BUFFERS) == len(state)
    assert json.loads((folder / "model" / "conversion.json").read_text())["sha256"] == report["sha256"]

    unet = UNet3D.from_pretrained(folder / "model" / "unet")
    for name, (lvdm_name, _) in unet_key_map(unet).items():  # every LVDM tensor, value for value
        file_tensor = state["model.diffusion_model." + lvdm_name]
        assert torch.equal(unet.state_dict()[name], file_tensor.reshape(unet.state_dict()[name].shape)), name
    dsg_out = [t for n, t in unet.state_dict().items() if "attn_dsg.attn.to_out" in n]
    assert dsg_out and all(not t.any() for t in dsg_out)  # the DSG path starts as nothing


def test_converted_vae_and_clip_match_diffusers_and_the_file(converted: tuple) -> None:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from transformers import CLIPTextModel

    folder, state, _ = converted
    vae = AutoencoderKL.from_pretrained(folder / "model" / "vae")
    reference = convert_ldm_vae_checkpoint(state, dict(vae.config))  # diffusers' own LDM -> diffusers mapping
    assert set(reference) == set(vae.state_dict())
    assert all(torch.equal(vae.state_dict()[k], v.reshape(vae.state_dict()[k].shape)) for k, v in reference.items())
    assert vae.config.scaling_factor == 0.18215
    clip = CLIPTextModel.from_pretrained(folder / "model" / "text_encoder")
    prefix = "cond_stage_model.transformer.text_model."
    assert all(torch.equal(t, state[prefix + n]) for n, t in clip.state_dict().items())


def test_the_converted_folder_is_a_pipeline_with_lvdm_sampling(converted: tuple) -> None:
    folder, _, _ = converted
    config = read_pipeline_config(folder / "model")
    assert config.text_encoder.model == str(folder / "model" / "text_encoder")
    assert config.text_encoder.tokenizer == "openai/clip-vit-large-patch14"  # by reference
    assert config.vae.frame.source == str(folder / "model" / "vae")
    assert (config.diffusion.eta, config.diffusion.steps, config.diffusion.guidance) == (1.0, 50, 15.0)
    pipe = DysenVDMPipeline.from_pretrained(
        folder / "model", planner=FixedPlanner(DSG_A), text_encoder=HashTextEncoder()
    )
    result = pipe("a red circle moves right", steps=2, progress=False)
    assert result.frames.shape == (4, 16, 16, 3)


def test_the_dsg_path_changes_nothing_until_trained(converted: tuple) -> None:
    folder, _, _ = converted
    unet = UNet3D.from_pretrained(folder / "model" / "unet")
    z = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    text = (torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool))
    graph = (torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 4, 3, dtype=torch.bool))
    with torch.no_grad():
        plain, grounded = unet(z, torch.tensor([500]), text), unet(z, torch.tensor([500]), text, graph)
    assert torch.equal(plain, grounded) and plain.abs().sum() > 0


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save({"state_dict": state}, path)
    return path


def test_unknown_missing_and_misshaped_tensors_are_named(tmp_path: Path) -> None:
    state = lvdm_t2v_state(TINY)
    bad = dict(state)
    bad["model.diffusion_model.extra.weight"] = torch.zeros(2)
    del bad["model.diffusion_model.out.2.bias"]
    bad["first_stage_model.quant_conv.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(ConversionError) as err:
        convert_t2v(_save(bad, tmp_path / "bad.ckpt"), tmp_path / "out", parts=TINY)
    message = str(err.value)
    assert "model.diffusion_model.extra.weight" in message and "model.diffusion_model.out.2.bias" in message
    assert "first_stage_model.quant_conv.weight [3, 3, 1, 1]" in message and not (tmp_path / "out").exists()
    listing = json.loads((tmp_path / "out.problems.json").read_text())  # every name, however many
    assert listing["unknown"] == ["model.diffusion_model.extra.weight"] and len(listing["misshaped"]) == 1

    extra = {**state, "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(3)}
    report = convert_t2v(_save(extra, tmp_path / "ema.ckpt"), tmp_path / "out", parts=TINY, drop=["model_ema."])
    assert report["dropped"]["--drop model_ema."] == 2


def test_a_wrong_schedule_is_refused(tmp_path: Path) -> None:
    state = lvdm_t2v_state(TINY)
    state["betas"] = make_betas(DiffusionConfig(beta_start=0.0015, beta_end=0.0155)).double()
    with pytest.raises(ConversionError, match="noise schedule"):
        convert_t2v(_save(state, tmp_path / "ucf.ckpt"), tmp_path / "out", parts=TINY)


class Pickled:
    """Not a tensor: makes ``weights_only`` loading refuse the file."""


def test_a_pickled_checkpoint_needs_trust_and_is_warned(tmp_path: Path) -> None:
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": lvdm_t2v_state(TINY), "callbacks": Pickled()}, path)
    with pytest.raises(ConversionError, match="--trust-checkpoint"):
        convert_t2v(path, tmp_path / "out", parts=TINY)
    warnings: list[str] = []
    convert_t2v(path, tmp_path / "out", parts=TINY, trust=True, warn=warnings.append)
    assert len(warnings) == 1 and "weights_only=False" in warnings[0]


def test_cli_refuses_a_pickled_file_and_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "callbacks": Pickled()}, path)
    assert main(["convert", "lvdm", str(path), "--kind", "t2v", "--out", str(tmp_path / "o")]) == 1
    assert "--trust-checkpoint" in capsys.readouterr().err


# -- the short-video 3D autoencoder -----------------------------------------------------------------------------------

LVDM_AE = (122, 19_446_759, "8f09e388b0043aae85cec879f7c59de059632e478dda28f90fe02ea44157a190")  # with its aliases


def lvdm_ae_state(config: KLVideoAutoencoderConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """An ``ae_*.ckpt`` state as LVDM writes it: the AE's tensors, each same-padded conv kernel under a second name
    too, and the training loss's own weights."""
    ae = KLVideoAutoencoder(config)
    expected, aliases, _ = ae_slots_and_drops(ae, "")
    generator = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(slot.file_shape, generator=generator) * 0.1 for name, slot in sorted(expected.items())}
    state.update({alias: state[original] for alias, original in aliases.items()})
    state.update({"loss.logvar": torch.zeros(()), "loss.discriminator.main.0.weight": torch.zeros(2, 3, 4, 4)})
    return state


def test_full_size_ae_has_lvdm_names_shapes_and_count() -> None:
    with torch.device("meta"):
        ae = KLVideoAutoencoder(lvdm_ae_config(*LVDM_LATENT_STATS["sky"]))
    expected, aliases, _ = ae_slots_and_drops(ae, "")
    shapes = {name: slot.file_shape for name, slot in expected.items()}
    shapes.update({alias: shapes[original] for alias, original in aliases.items()})
    assert _listing(shapes)[0::2] == LVDM_AE[0::2]
    assert sum(p.numel() for p in ae.parameters()) == LVDM_AE[1]


TINY_AE = KLVideoAutoencoderConfig(
    base_channels=4, channel_mult=(2, 4), spatial_downsample=4, temporal_downsample=2, norm_groups=4, arch="lvdm"
)


def test_a_tiny_ae_converts_by_cli_with_the_dataset_scale(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    state = lvdm_ae_state(TINY_AE)
    torch.save({"state_dict": state}, tmp_path / "ae_sky.ckpt")
    from dysen.convert.lvdm import convert_short_ae

    config = dataclasses.replace(TINY_AE, scaling_factor=0.33422927, shift_factor=-1.4606637)
    report = convert_short_ae(tmp_path / "ae_sky.ckpt", tmp_path / "ae", config=config)
    aliases = (1 + 2 * (1 + 2) + 1) + (2 * (2 + 2) + 1) + 2  # encoder, decoder (transposed convs have none), quant
    assert report["dropped"] == {"alias": aliases, "loss": 2}
    ae = KLVideoAutoencoder.from_pretrained(tmp_path / "ae" / "vae")
    assert all(
        torch.equal(t, state[re.sub(r"^(post_)?quant_conv\.", r"\g<0>conv.", n)]) for n, t in ae.state_dict().items()
    )
    video = torch.rand(1, 3, 4, 8, 8) * 2 - 1
    z = ae.posterior(video).mean
    assert torch.allclose(ae.encode(video), 0.33422927 * (z + 1.4606637))  # LVDM's z' = scale * (z + shift)

    args = ["convert", "lvdm", str(tmp_path / "ae_sky.ckpt"), "--kind", "short-ae", "--out", str(tmp_path / "cli")]
    assert main(args) == 1 and "--dataset" in capsys.readouterr().err  # no scale/shift: refused, named
    state["encoder.conv_first.weight"] = state["encoder.conv_first.weight"] + 1.0  # an alias that differs
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(ConversionError, match="encoder.conv_first.weight"):
        convert_short_ae(tmp_path / "bad.ckpt", tmp_path / "bad", config=config)


class WideHashTextEncoder(HashTextEncoder):
    """The hashing stand-in at MiniLM's width (the CLI's default text encoder, which ``train-vdm --init`` builds)."""

    dim = 384


def tiny_short_checkpoint(path: Path) -> tuple[DysenVDMConfig, int]:
    """A tiny ``short_*.ckpt`` as LVDM writes it (UNet, its AE under ``first_stage_model.``, the EMA copy with
    dot-less names, the schedule) for a tiny ``lvdm-short-ucf101``; returns that config and the UNet's LVDM count."""
    base = load_config("lvdm-short-ucf101")
    config = dataclasses.replace(
        base,
        unet=dataclasses.replace(
            base.unet, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
            num_heads=2, norm_groups=4, text_dim=384, dsg_dim=8,
        ),
        rgtrm=RGTrmConfig(label_dim=384, dim=8, num_layers=1, num_heads=2),
        vae=dataclasses.replace(base.vae, kl3d=dataclasses.replace(TINY_AE, scaling_factor=0.5, shift_factor=-0.1)),
        text_encoder=TextEncoderSpec(kind="minilm", dim=384),
        video=VideoSpec(num_frames=8, height=16, width=16),
    )  # fmt: skip
    with torch.device("meta"):
        key_map = unet_key_map(UNet3D(config.unet))
    generator = torch.Generator().manual_seed(3)
    state = {"model.diffusion_model." + name: torch.randn(shape, generator=generator) * 0.2
             for name, shape in key_map.values()}  # fmt: skip
    state.update({"first_stage_model." + name: tensor for name, tensor in lvdm_ae_state(TINY_AE).items()
                  if not name.startswith("loss.")})  # fmt: skip
    state.update({"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(5)})
    state.update(
        {"model_ema." + name.replace(".", ""): tensor for name, tensor in state.items() if "diffusion" in name}
    )
    state["betas"] = make_betas(config.diffusion).double()
    torch.save({"state_dict": state}, path)
    return config, len(key_map)


def test_a_tiny_short_checkpoint_with_its_ema_converts_into_a_pipeline(tmp_path: Path) -> None:
    from dysen.convert.lvdm import convert_short_unet

    config, unet_tensors = tiny_short_checkpoint(tmp_path / "short_sky.ckpt")
    report = convert_short_unet(tmp_path / "short_sky.ckpt", tmp_path / "model", config=config)
    assert report["dropped"]["ema"] == 2 + unet_tensors and report["dropped"]["schedule"] == 1
    assert report["converted"] == {"unet": unet_tensors, "vae": len(KLVideoAutoencoder(TINY_AE).state_dict())}
    pipe = DysenVDMPipeline.from_pretrained(
        tmp_path / "model", planner=FixedPlanner(DSG_A), text_encoder=WideHashTextEncoder()
    )
    assert pipe.vae.config.scaling_factor == 0.5 and pipe.config.diffusion.steps == 1000
    assert pipe("a red circle moves right", steps=2, progress=False).frames.shape == (8, 16, 16, 3)


def test_train_vdm_starts_from_a_converted_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dysen.convert.lvdm import convert_short_unet

    config, _ = tiny_short_checkpoint(tmp_path / "short.ckpt")
    convert_short_unet(tmp_path / "short.ckpt", tmp_path / "model", config=config)
    before = UNet3D.from_pretrained(tmp_path / "model" / "unet").state_dict()
    common = ["--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2", "--num-clips", "4", "--seed", "1"]
    assert main(["train-vdm", "--init", str(tmp_path / "model"), "--vae", "x", *common]) == 1
    assert "drop --config, --vae and --text-encoder" in capsys.readouterr().err
    assert main(["train-vdm", "--init", str(tmp_path / "model"), "--ema-decay", "0", *common]) == 0
    after = UNet3D.from_pretrained(tmp_path / "run" / "model" / "unet").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained on from LVDM's weights
