"""Oversampling by action (``dysen.data.oversample``, ``--oversample PREDICATE=K`` of train-vdm / finetune).

A clip whose gold DSG shows an oversampled predicate appears K times per epoch, the others once; the gold DSGs
come from the on-the-fly generator or a latent cache without loading videos; bad flags and datasets without
gold DSGs get clear errors; and the CLI trains on the repeated clips.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from dysen.cli import main
from dysen.config import save_config
from dysen.data.oversample import OversampledDataset, oversample, parse_oversample, repeat_counts
from dysen.data.shapes import ShapesConfig
from dysen.data.shapes.dataset import ShapesDataset, collate
from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.errors import DysenError
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.latents import LatentDataset, cache_latents
from pipeline_fixtures import TINY
from test_train_latents import _wide

SHAPES = ShapesConfig(size=16, num_frames=8)


def _dsg(*predicates: str) -> DynamicSceneGraph:
    events = [Event(agent=f"shape{i}", predicate=p, start=0, end=1) for i, p in enumerate(predicates)]
    return DynamicSceneGraph.from_events(events)


def test_parse_oversample_reads_predicate_counts_and_refuses_the_rest() -> None:
    assert parse_oversample(["rotates=3", "moves left=2"]) == {"rotates": 3, "moves left": 2}
    assert parse_oversample([]) == {}
    for bad in ("rotates", "rotates=0", "rotates=1.5", "=3", "rotates=x"):
        with pytest.raises(DysenError, match="PREDICATE=K"):
            parse_oversample([bad])
    with pytest.raises(DysenError, match="twice"):
        parse_oversample(["rotates=2", "rotates=3"])


def test_a_clip_repeats_by_its_largest_weight_and_others_once() -> None:
    dsgs = [_dsg("rotates"), _dsg("jumps"), _dsg("jumps", "rotates", "shrinks"), None, _dsg("shrinks")]
    assert repeat_counts(dsgs, {"rotates": 3, "shrinks": 2}) == [3, 1, 3, 1, 2]


def test_oversampled_shapes_repeat_the_rotating_clips() -> None:
    dataset = ShapesDataset(40, config=SHAPES)
    rotating = {i for i in range(40) if any(e.predicate == "rotates" for e in dataset.gold_dsg(i).events)}
    assert 0 < len(rotating) < 40
    repeated = oversample(dataset, {"rotates": 3}, progress=False)
    assert len(repeated) == 40 + 2 * len(rotating)
    seen = Counter(repeated[i]["id"] for i in range(len(repeated)))
    assert seen == {dataset[i]["id"]: 3 if i in rotating else 1 for i in range(40)}
    assert torch.equal(repeated[0]["video"], dataset[repeated.sources[0]]["video"])


def test_a_latent_cache_tells_the_same_gold_dsgs(tmp_path: Path) -> None:
    dataset = ShapesDataset(5, config=SHAPES)
    torch.manual_seed(0)
    cache_latents(KLVideoAutoencoder(TINY.vae.kl3d), dataset, collate, tmp_path, progress=False)
    cached = LatentDataset(tmp_path)
    assert [cached.gold_dsg(i) for i in range(5)] == [dataset.gold_dsg(i) for i in range(5)]


def test_unknown_predicates_and_datasets_without_gold_dsgs_are_refused() -> None:
    with pytest.raises(DysenError, match=r"no clip has an event \['spins'\]; the clips' predicates are"):
        oversample(ShapesDataset(10, config=SHAPES), {"spins": 2}, progress=False)

    class NoGold(Dataset):
        def __len__(self) -> int:
            return 3

    with pytest.raises(DysenError, match="--oversample reads each clip's gold DSG"):
        oversample(NoGold(), {"rotates": 2}, progress=False)
    with pytest.raises(DysenError, match="3 repeat counts for a dataset of 10"):
        OversampledDataset(ShapesDataset(10, config=SHAPES), [1, 1, 1])


def test_train_vdm_and_finetune_oversample_from_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    vae_config = save_config(TINY, tmp_path / "tiny.yaml")
    args = ["--batch-size", "2", "--num-clips", "6", "--save-every", "100", "--steps", "1"]
    assert main(["train-vae", "--config", str(vae_config), *args, "--out", str(tmp_path / "vae")]) == 0
    config = save_config(_wide(TINY), tmp_path / "text.yaml")  # the CLI builds the real text encoder
    cache = ["--cache-latents", str(tmp_path / "cache"), "--oversample", "grows=4"]
    vdm = ["train-vdm", "--config", str(config), *args, "--vae", str(tmp_path / "vae"), *cache]
    assert main([*vdm, "--out", str(tmp_path / "vdm")]) == 0  # clips 0 and 5 of the 6 grow
    assert "oversampled 'grows' x4: 6 clips -> 12 per epoch" in capsys.readouterr().out
    fine = ["finetune", "--init", str(tmp_path / "vdm" / "model"), *args, *cache]
    assert main([*fine, "--out", str(tmp_path / "fine")]) == 0
    assert "oversampled 'grows' x4: 6 clips -> 12 per epoch" in capsys.readouterr().out
    assert (tmp_path / "fine" / "model" / "model_index.json").is_file()

    assert main([*fine, "--out", str(tmp_path / "bad"), "--oversample", "rotates"]) == 1
    assert "PREDICATE=K" in capsys.readouterr().err
    assert main([*fine, "--out", str(tmp_path / "shards"), "--shards", str(tmp_path)]) == 1
    assert "--cache-latents and --oversample need a dataset with indices" in capsys.readouterr().err
