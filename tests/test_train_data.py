"""The training loop on real data: bad videos are skipped and reported, and shards train like a folder.

A folder of good tiny videos plus a truncated mp4 and a text file named .mp4 trains to the end and reports
exactly 2 distinct bad items (each drawn once per epoch); shards written from it train through the
``IterableDataset`` path (no ``StepSampler``), from Python and from ``dysen train-vae --shards``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import data_fixtures as fx
from dysen.cli import main
from dysen.config import save_config
from dysen.data.datasets import ClipSampling, collate, open_dataset
from dysen.data.shards import ShardDataset, ShardOptions, write_shards
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.loop import TrainConfig, train
from dysen.train.stages import VAETask
from pipeline_fixtures import TINY

SAMPLING = ClipSampling(num_frames=8, size=16, train=True)  # TINY's video: 8 x 16 x 16


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _vae_task() -> VAETask:
    torch.manual_seed(0)
    return VAETask(KLVideoAutoencoder(TINY.vae.kl3d))


def test_a_run_over_bad_videos_finishes_and_reports_two_distinct_skipped(tmp_path: Path) -> None:
    dataset = open_dataset("folder", fx.broken_folder(tmp_path / "videos"), sampling=SAMPLING)
    assert len(dataset) == 4  # 2 good, a truncated mp4, a text file named .mp4
    config = TrainConfig(steps=6, batch_size=2, lr=1e-3, ema_decay=0.0, save_every=100)  # 3 epochs of 2 steps
    result = train(_vae_task(), dataset, collate, config, tmp_path / "run")
    assert result.step == 6 and result.skipped == 2 and result.skipped_draws == 6  # each bad file once per epoch
    lines = _metrics(tmp_path / "run")
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6] and lines[-1]["skipped"] == 6
    assert result.empty_steps == lines[-1]["empty_steps"] == sum(not math.isfinite(float(x["loss"])) for x in lines)
    assert result.empty_steps < 6 and result.nonfinite == 0  # an all-bad batch is no step, and not a NaN loss


def test_train_vae_cli_over_a_broken_folder_prints_the_skipped_count(tmp_path: Path, capsys) -> None:
    root = fx.broken_folder(tmp_path / "videos")
    config = save_config(TINY, tmp_path / "tiny.yaml")
    args = ["--batch-size", "2", "--steps", "4", "--lr", "1e-3", "--save-every", "100"]
    out = tmp_path / "vae"
    assert (
        main(["train-vae", "--config", str(config), "--data", "folder", "--root", str(root), "--out", str(out), *args])
        == 0
    )
    assert "skipped 2 bad items (4 draws)" in capsys.readouterr().out
    assert (out / "model" / "config.json").is_file()


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """Shards of 5 good clips (two shards) written from a folder that also holds 2 bad videos."""
    root = fx.broken_folder(tmp_path / "videos")
    for n in range(3):
        fx.mp4(root / f"e_more{n}.mp4", 16)
    dataset = open_dataset("folder", root, sampling=ClipSampling(num_frames=8, size=16))
    report = write_shards(dataset, tmp_path / "shards", ShardOptions(max_count=3, video_format="npy"), progress=False)
    assert (report.written, report.skipped, len(report.shards)) == (5, 2, 2)
    return tmp_path / "shards"


def test_the_loop_trains_from_shards(shards: Path, tmp_path: Path) -> None:
    config = TrainConfig(steps=5, batch_size=2, lr=1e-3, ema_decay=0.0, save_every=2)  # 5 clips: 3 batches an epoch
    result = train(_vae_task(), ShardDataset(shards, shuffle=4, seed=1), collate, config, tmp_path / "run")
    assert result.step == 5 and math.isfinite(result.loss) and result.skipped == 0
    lines = _metrics(tmp_path / "run")
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5] and all(math.isfinite(x["loss"]) for x in lines)
    # resuming a stream restores weights and step, and replays the epoch the checkpoint was in
    again = TrainConfig(steps=7, batch_size=2, lr=1e-3, ema_decay=0.0, save_every=2)
    resumed = train(_vae_task(), ShardDataset(shards, shuffle=4, seed=1), collate, again, tmp_path / "run", True)
    assert resumed.step == 7 and [x["step"] for x in _metrics(tmp_path / "run")] == list(range(1, 8))


def test_train_vae_cli_trains_from_shards(shards: Path, tmp_path: Path) -> None:
    config = save_config(TINY, tmp_path / "tiny.yaml")
    args = ["--batch-size", "2", "--steps", "3", "--lr", "1e-3", "--save-every", "100"]
    out = tmp_path / "vae"
    assert main(["train-vae", "--config", str(config), "--shards", str(shards), "--out", str(out), *args]) == 0
    assert [x["step"] for x in _metrics(out)] == [1, 2, 3] and (out / "model" / "config.json").is_file()
