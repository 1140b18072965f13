"""Pre-cached VAE latents (``dysen.train.latents``, ``dysen train-vdm --cache-latents``).

The cache holds each clip's posterior moments (equal to encoding it now), its caption and DSG; a restarted
encoding keeps the finished shards and encodes only the missing ones; a cache of another autoencoder is
refused; bad videos are listed, not cached; and training from the cache repeats training from the videos.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import data_fixtures as fx
from dysen.cli import main
from dysen.config import save_config
from dysen.data.datasets import ClipSampling, open_dataset
from dysen.data.datasets import collate as folder_collate
from dysen.data.shapes import ShapesConfig
from dysen.data.shapes.dataset import ShapesDataset, collate
from dysen.models.rgtrm import RGTrm
from dysen.models.unet3d import UNet3D
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.latents import LatentCacheError, LatentDataset, cache_latents, collate_latents
from dysen.train.loop import TrainConfig, train
from dysen.train.stages import VDMTask
from pipeline_fixtures import TINY, HashTextEncoder

SHAPES = ShapesConfig(size=16, num_frames=8)


class Counting(ShapesDataset):
    """Dynamic Shapes that records which clips were loaded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loaded: list[int] = []

    def __getitem__(self, index: int) -> dict[str, Any]:
        self.loaded.append(index)
        return super().__getitem__(index)


def _vae() -> KLVideoAutoencoder:
    torch.manual_seed(0)
    return KLVideoAutoencoder(TINY.vae.kl3d)


def test_the_cache_holds_each_clips_posterior_caption_and_dsg_and_resumes(tmp_path: Path) -> None:
    vae, dataset = _vae(), Counting(6, config=SHAPES)
    cache_latents(vae, dataset, collate, tmp_path, shard_size=4, batch_size=3, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.json", "shard-00000.safetensors", "shard-00001.safetensors", "source.json"
    ]  # fmt: skip
    cached = LatentDataset(tmp_path)
    assert len(cached) == 6 and sorted(dataset.loaded) == list(range(6))
    clip = dataset[5]
    with torch.no_grad():
        posterior = vae.posterior(clip["video"][None])
    assert torch.allclose(cached[5]["latent_mean"], posterior.mean[0], atol=1e-6)
    assert torch.allclose(cached[5]["latent_logvar"], posterior.logvar[0], atol=1e-6)
    assert [cached[5][key] for key in ("caption", "dsg", "id")] == [clip[key] for key in ("caption", "dsg", "id")]
    # a crash after the first shard: only the second is encoded again
    before = cached[5]["latent_mean"]
    (tmp_path / "index.json").unlink()
    (tmp_path / "shard-00001.safetensors").unlink()
    again = Counting(6, config=SHAPES)
    cache_latents(vae, again, collate, tmp_path, shard_size=4, batch_size=3, progress=False)
    assert again.loaded == [4, 5] and torch.equal(LatentDataset(tmp_path)[5]["latent_mean"], before)
    weight = vae.decoder[-1].weight.detach().clone()
    with torch.no_grad():
        vae.decoder[-1].weight.add_(1.0)  # another autoencoder
    with pytest.raises(LatentCacheError, match=r"caches other latents \(different \['vae'\]\)"):
        cache_latents(vae, again, collate, tmp_path, shard_size=4, progress=False)
    with torch.no_grad():
        vae.decoder[-1].weight.copy_(weight)
    for other in (ShapesDataset(6, seed=1, config=SHAPES), ShapesDataset(6, split="val", config=SHAPES)):
        with pytest.raises(LatentCacheError, match=r"caches other latents \(different \['data'\]\)"):
            cache_latents(vae, other, collate, tmp_path, shard_size=4, progress=False)  # the same count of other clips


def test_loader_workers_cache_the_same_shards_of_a_frame_wise_autoencoder(tmp_path: Path) -> None:
    dataset = ShapesDataset(7, config=SHAPES)
    frame_wise = dataclasses.replace(TINY.vae.kl3d, temporal_kernel=1, temporal_downsample=1)  # strided moments
    for workers in (0, 2):
        torch.manual_seed(0)
        cache_latents(KLVideoAutoencoder(frame_wise), dataset, collate, tmp_path / f"w{workers}", shard_size=3,
                      batch_size=2, progress=False, workers=workers)  # fmt: skip
    serial, parallel = LatentDataset(tmp_path / "w0"), LatentDataset(tmp_path / "w2")
    assert torch.equal(serial.mean, parallel.mean) and serial.records == parallel.records and len(parallel) == 7


def test_bad_videos_are_listed_not_cached(tmp_path: Path) -> None:
    dataset = open_dataset("folder", fx.broken_folder(tmp_path / "videos"), sampling=ClipSampling(8, size=16))
    cache_latents(_vae(), dataset, folder_collate, tmp_path / "cache", progress=False)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["count"] == 2 and len(index["skipped"]) == 2 and len(LatentDataset(tmp_path / "cache")) == 2


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("train_latents", ["sample", "mean"])
def test_training_from_the_cache_repeats_training_from_the_videos(tmp_path: Path, train_latents: str) -> None:
    dataset = ShapesDataset(8, config=SHAPES)
    cache_latents(_vae(), dataset, collate, tmp_path / "cache", shard_size=5, progress=False)
    config = TrainConfig(steps=3, batch_size=2, lr=1e-3, save_every=100, seed=4)
    model = dataclasses.replace(TINY, diffusion=dataclasses.replace(TINY.diffusion, train_latents=train_latents))
    for name, data, batches in (("videos", dataset, collate), ("cached", LatentDataset(tmp_path / "cache"),
                                                               collate_latents)):  # fmt: skip
        torch.manual_seed(0)
        task = VDMTask(UNet3D(TINY.unet), RGTrm(TINY.rgtrm), _vae(), HashTextEncoder(), model)
        train(task, data, batches, config, tmp_path / name)
    assert _losses(tmp_path / "cached") == pytest.approx(_losses(tmp_path / "videos"), rel=1e-5)


def test_mean_latents_are_the_normalised_posterior_means_and_draws_are_not(tmp_path: Path) -> None:
    vae = _vae()
    cache_latents(vae, ShapesDataset(2, config=SHAPES), collate, tmp_path, progress=False)
    batch = collate_latents([LatentDataset(tmp_path)[i] for i in range(2)])
    config = vae.config
    expected = (batch["latent_mean"] - config.shift_factor) * config.scaling_factor  # [2, c, t, h, w]
    for train_latents in ("mean", "sample"):
        model = dataclasses.replace(TINY, diffusion=dataclasses.replace(TINY.diffusion, train_latents=train_latents))
        task = VDMTask(UNet3D(TINY.unet), RGTrm(TINY.rgtrm), vae, HashTextEncoder(), model)
        x0 = task._latents(batch, torch.Generator().manual_seed(0))
        assert torch.allclose(x0, expected) == (train_latents == "mean")


def test_train_vdm_cli_caches_then_trains_and_refuses_shards(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = save_config(TINY, tmp_path / "tiny.yaml")
    args = ["--config", str(config), "--batch-size", "2", "--num-clips", "4", "--save-every", "100", "--steps", "1"]
    assert main(["train-vae", *args, "--out", str(tmp_path / "vae")]) == 0
    vdm = ["train-vdm", *args, "--vae", str(tmp_path / "vae"), "--cache-latents", str(tmp_path / "cache")]
    text = tmp_path / "text.yaml"  # the CLI builds the real text encoder: TINY at MiniLM's width
    save_config(_wide(TINY), text)
    vdm[2] = str(text)
    assert main([*vdm, "--out", str(tmp_path / "vdm")]) == 0
    assert len(LatentDataset(tmp_path / "cache")) == 4 and (tmp_path / "vdm" / "model" / "model_index.json").is_file()
    assert main([*vdm, "--out", str(tmp_path / "shards"), "--shards", str(tmp_path)]) == 1
    assert "--cache-latents and --oversample need a dataset with indices" in capsys.readouterr().err


def _wide(config: Any) -> Any:
    import dataclasses

    return dataclasses.replace(
        config,
        unet=dataclasses.replace(config.unet, text_dim=384),
        rgtrm=dataclasses.replace(config.rgtrm, label_dim=384),
        text_encoder=dataclasses.replace(config.text_encoder, dim=384),
    )
