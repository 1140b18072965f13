"""Sample videos every N steps (``TrainConfig.sample_every``, ``--sample-every``) on tiny models.

Samples land in ``RUN/samples/step-<n>/`` at exactly the multiples of N; the VAE's show the clip beside its
reconstruction by the weights of that step; the VDM's are generated from the fixed clips' captions and gold
DSGs; and sampling changes nothing in training: a run with it (interrupted and resumed, or not) repeats the
losses of a run without it, with UNet dropout on (so a sampler that left the UNet in eval mode would show).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dysen.cli import build_parser, main
from dysen.config import save_config
from dysen.data.shapes import ShapesConfig
from dysen.data.shapes.dataset import ShapesDataset, collate
from dysen.data.video import model_to_frames, read_video
from dysen.diffusion import SamplingSettings
from dysen.models.rgtrm import RGTrm
from dysen.models.unet3d import UNet3D
from dysen.models.vae import KLVideoAutoencoder
from dysen.pipeline import DysenVDMPipeline
from dysen.planner.rules import RulesPlanner
from dysen.train.loop import TrainConfig, train
from dysen.train.stages import GraphCollate, VAETask, VDMTask
from pipeline_fixtures import TINY, HashTextEncoder

SHAPES = ShapesConfig(size=16, num_frames=8)
DROPOUT = dataclasses.replace(TINY, unet=dataclasses.replace(TINY.unet, dropout=0.3))


def _steps(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "samples").iterdir())


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_vae_samples_are_the_clip_beside_its_reconstruction_at_every_nth_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = KLVideoAutoencoder(TINY.vae.kl3d)
    config = TrainConfig(steps=5, batch_size=2, lr=3e-3, ema_decay=0.0, save_every=100, sample_every=2)
    dataset = ShapesDataset(4, config=SHAPES)
    train(VAETask(vae), dataset, collate, config, tmp_path)
    assert _steps(tmp_path) == ["step-00000002", "step-00000004"]
    assert sorted(p.name for p in (tmp_path / "samples" / "step-00000004").iterdir()) == ["clip-0.mp4", "clip-1.mp4"]
    # step 4's video: clip 1 | its reconstruction by the weights after step 4 (training changed them at step 5)
    video = read_video(tmp_path / "samples" / "step-00000004" / "clip-1.mp4").numpy()  # uint8 [T, H, 2W, 3]
    assert video.shape == (8, 16, 32, 3)
    clip = model_to_frames(dataset[1]["video"]).numpy().astype(float)  # [T, H, W, 3]
    assert np.abs(video[:, :, :16].astype(float) - clip).mean() < 6  # lossy H.264 of the input
    with torch.no_grad():
        final = model_to_frames(vae.decode(vae.encode(dataset[1]["video"][None]))[0]).numpy().astype(float)
    before, after = (np.abs(read_video(tmp_path / "samples" / s / "clip-1.mp4").numpy()[:, :, 16:] - final).mean()
                     for s in ("step-00000002", "step-00000004"))  # fmt: skip
    assert after < before  # the right half follows the weights of its step


def _vdm_task() -> VDMTask:
    torch.manual_seed(0)
    unet, rgtrm, vae = UNet3D(DROPOUT.unet), RGTrm(DROPOUT.rgtrm), KLVideoAutoencoder(DROPOUT.vae.kl3d)
    return VDMTask(unet, rgtrm, vae, HashTextEncoder(), DROPOUT, sample_steps=2)


@pytest.mark.slow
def test_vdm_samples_leave_the_training_losses_and_resume_unchanged(tmp_path: Path) -> None:
    dataset = ShapesDataset(8, config=SHAPES)

    def config(steps: int, sample_every: int) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=2, lr=1e-3, save_every=2, seed=1, sample_every=sample_every)

    train(_vdm_task(), dataset, collate, config(4, 0), tmp_path / "plain")
    train(_vdm_task(), dataset, collate, config(4, 1), tmp_path / "sampled")
    train(_vdm_task(), dataset, collate, config(2, 0), tmp_path / "resumed")  # sampling switched on at resume
    train(_vdm_task(), dataset, collate, config(4, 3), tmp_path / "resumed", resume=True)
    plain = _losses(tmp_path / "plain")
    assert _losses(tmp_path / "sampled") == plain and _losses(tmp_path / "resumed") == plain
    assert _steps(tmp_path / "sampled") == [f"step-{n:08d}" for n in (1, 2, 3, 4)]
    assert _steps(tmp_path / "resumed") == ["step-00000003"]
    first = read_video(tmp_path / "sampled" / "samples" / "step-00000001" / "clip-1.mp4").numpy()
    last = read_video(tmp_path / "sampled" / "samples" / "step-00000004" / "clip-1.mp4").numpy()
    assert first.shape == (8, 16, 16, 3) and not np.array_equal(first, last)


def test_vdm_sample_follows_caption_and_dsg_and_is_deterministic() -> None:
    task = _vdm_task()
    batch = collate([ShapesDataset(2, config=SHAPES)[i] for i in range(2)])
    with torch.no_grad():
        task.unet.eval(), task.rgtrm.eval()
        first, again = task.sample(batch), task.sample(batch)
        swapped = task.sample({**batch, "caption": batch["caption"][::-1], "dsg": batch["dsg"][::-1]})
    assert sorted(first) == ["clip-0", "clip-1"] and first["clip-0"].dtype == torch.uint8
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["clip-0"], swapped["clip-0"])  # same noise (seed 0), other caption and DSG
    frames = task.vae.latent_shape(SHAPES.num_frames, SHAPES.size, SHAPES.size)[1]
    with torch.no_grad():
        from_graphs = task.sample(
            GraphCollate(collate, frames)([ShapesDataset(2, config=SHAPES)[i] for i in range(2)])
        )
    for name, video in from_graphs.items():  # the batch's padded graphs, one by one: the same videos
        assert (video.int() - first[name].int()).abs().max() <= 1


def test_vdm_samples_are_the_pipelines_videos_by_the_same_sampler_and_settings() -> None:
    """One denoising loop (``dysen.diffusion.denoise``) and one settings rule: a training sample is the video the
    pipeline makes of the same caption and DSG with the same weights, steps and seed (the model's guidance)."""
    task = _vdm_task()
    batch = collate([ShapesDataset(1, config=SHAPES)[0]])
    pipe = DysenVDMPipeline(RulesPlanner(), task.text_encoder, task.rgtrm, task.unet, task.vae, DROPOUT)  # eval()
    with torch.no_grad():
        sample = task.sample(batch)["clip-0"].numpy()  # seed 0
    assert task.sampling == SamplingSettings.resolve(DROPOUT.diffusion, steps=2)
    video = pipe(batch["caption"][0], dsg=batch["dsg"][0], steps=2, seed=0, progress=False).frames
    assert np.array_equal(sample, video)


def test_sample_flags_reach_the_train_config_and_the_task(tmp_path: Path) -> None:
    config = save_config(TINY, tmp_path / "tiny.yaml")
    out = tmp_path / "vae"
    args = ["--batch-size", "2", "--num-clips", "4", "--steps", "3", "--save-every", "100"]
    assert main(["train-vae", "--config", str(config), "--out", str(out), *args, "--sample-every", "2",
                 "--sample-count", "1"]) == 0  # fmt: skip
    saved = json.loads((out / "train_config.json").read_text())
    assert (saved["sample_every"], saved["sample_count"]) == (2, 1)
    assert _steps(out) == ["step-00000002"] and [p.name for p in (out / "samples" / "step-00000002").iterdir()] == [
        "clip-0.mp4"
    ]
    flags = ["--sample-every", "5", "--sample-steps", "4", "--sample-guidance", "2"]
    parsed = build_parser().parse_args(["train-vdm", "--vae", "v", "--out", "o", *flags])
    assert (parsed.sample_every, parsed.sample_steps, parsed.sample_guidance) == (5, 4, 2.0)
    parsed = build_parser().parse_args(["finetune", "--init", "i", "--out", "o", "--sample-steps", "3"])
    assert (parsed.sample_every, parsed.sample_steps) == (0, 3)
