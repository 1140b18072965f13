"""The paper's text-to-video recipe from the CLI (issue 26 §2): ``train-vdm`` on ``paper-t2v-256``'s per-frame
SD-VAE and CLIP text encoder, from local folders, keeps them (the run's config names them), caches their latents,
and refuses an autoencoder of the other kind instead of swapping it in.

The networks are ``paper-t2v-256`` with its UNet and RGTrm shrunk (the full 1.1B-parameter UNet at 256×256 does not
train on a CPU in a test); the SD-VAE and CLIP are tiny stand-ins built here from the real diffusers and transformers
classes, saved as the folders a user downloads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from backbone_fixtures import clip_tokenizer
from dysen.cli import main
from dysen.config import PRESETS, VideoSpec, load_config, save_config
from dysen.models.rgtrm import RGTrmConfig
from pipeline_fixtures import TINY

ARGS = ["--data", "shapes", "--num-clips", "4", "--batch-size", "2", "--steps", "2", "--save-every", "2"]
ARGS += ["--lr", "1e-3", "--ema-decay", "0", "--seed", "1"]
TEXT_DIM = 32


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SD-VAE (``AutoencoderKL``, 8x down, 4 latent channels) alone and inside an SD-style folder, a tiny CLIP
    text model with its tokenizer, and ``paper-t2v-256`` at test size as YAML."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("t2v")
    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[4, 4, 4, 4], layers_per_block=1, latent_channels=4, norm_num_groups=2, sample_size=32,
    )  # fmt: skip
    vae.save_pretrained(root / "sd-vae")
    vae.save_pretrained(root / "stable-diffusion" / "vae")
    tokenizer = clip_tokenizer(root / "clip", max_length=77)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    CLIPTextModel(text_config).save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    paper = PRESETS["paper-t2v-256"]()
    small = dataclasses.replace(
        paper,
        unet=dataclasses.replace(TINY.unet, text_dim=TEXT_DIM, in_channels=4, out_channels=4),
        rgtrm=RGTrmConfig(label_dim=TEXT_DIM, dim=TINY.unet.dsg_dim, num_layers=1, num_heads=2),
        text_encoder=dataclasses.replace(paper.text_encoder, dim=TEXT_DIM),
        video=VideoSpec(num_frames=8, height=32, width=32),
    )
    assert small.vae.kind == "frame" and small.text_encoder.kind == "clip"  # the paper's recipe, at test size
    save_config(small, root / "paper-t2v-test.yaml")
    return {"root": root, "config": root / "paper-t2v-test.yaml", "vae": root / "sd-vae", "clip": root / "clip"}


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_t2v_recipe_trains_on_the_sd_vae_and_clip_it_was_given(folders: dict[str, Path]) -> None:
    out = folders["root"] / "run"
    argv = ["train-vdm", "--config", str(folders["config"]), "--vae", str(folders["vae"])]
    argv += ["--text-encoder", str(folders["clip"]), "--out", str(out)]
    assert main([*argv, *ARGS]) == 0
    ran = load_config(out / "config.yaml")
    assert ran.vae.kind == "frame" and ran.vae.frame.source == str(folders["vae"].resolve())  # names the SD-VAE
    assert ran.text_encoder.model == str(folders["clip"].resolve())
    index = json.loads((out / "model" / "model_index.json").read_text())
    assert index["config"]["vae"]["frame"]["source"] == str(folders["vae"].resolve())
    assert len(_losses(out)) == 2 and all(math_ok(loss) for loss in _losses(out))

    cached = folders["root"] / "cached"
    extra = ["--cache-latents", str(folders["root"] / "latents"), "--gradient-checkpointing"]
    argv = ["train-vdm", "--config", str(folders["config"]), "--vae", str(folders["root"] / "stable-diffusion")]
    assert main([*argv, "--text-encoder", str(folders["clip"]), "--out", str(cached), *ARGS, *extra]) == 0
    ran = load_config(cached / "config.yaml")
    assert ran.vae.frame.subfolder == "vae" and ran.unet.gradient_checkpointing
    assert (folders["root"] / "latents" / "index.json").is_file()  # the SD-VAE latents, cached
    assert _losses(cached) == pytest.approx(_losses(out), rel=1e-4)  # the same draws from the cache


def math_ok(value: float) -> bool:
    return value == value and 0 < value < 100


def test_an_autoencoder_of_the_other_kind_is_refused(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dysen.models.vae import KLVideoAutoencoder

    KLVideoAutoencoder(TINY.vae.kl3d).save_pretrained(tmp_path / "ae")
    argv = ["train-vdm", "--config", str(folders["config"]), "--vae", str(tmp_path / "ae")]
    argv += ["--out", str(tmp_path / "a")]
    assert main([*argv, *ARGS]) == 1
    assert "trains on a pretrained per-frame VAE" in capsys.readouterr().err
    argv = ["train-vdm", "--config", "shapes-tiny", "--vae", str(folders["vae"]), "--out", str(tmp_path / "b")]
    assert main([*argv, *ARGS]) == 1
    assert "is a pretrained per-frame VAE" in capsys.readouterr().err
    assert main(["train-vdm", "--config", "shapes-tiny", "--out", str(tmp_path / "c"), *ARGS]) == 1
    assert "give it with --vae RUN" in capsys.readouterr().err
    assert main(["train-vdm", "--config", "shapes-tiny", "--vae", str(tmp_path), "--out", str(tmp_path / "d")]) == 1
    assert "no autoencoder in" in capsys.readouterr().err
