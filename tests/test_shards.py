"""WebDataset shards: written from a folder dataset, read back equal, resumable, split over ranks and workers."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch
from torch.utils.data import DataLoader

import data_fixtures as fx
from dysen.data.datasets import ClipSampling, SkipTally, VideoTextDataset, collate, open_dataset
from dysen.data.shards import ShardDataset, ShardError, ShardOptions, find_shards, write_shards
from dysen.dsg import DynamicSceneGraph, Event

SAMPLING = ClipSampling(num_frames=6, stride=2, size=32)


@pytest.fixture
def folder(tmp_path) -> VideoTextDataset:
    """Seven good clips (one with a gold DSG), a truncated mp4 and a text file named .mp4."""
    root = fx.broken_folder(tmp_path / "videos")
    for n in range(5):
        fx.mp4(root / f"e_more{n}.mp4", 16)
    dsg = DynamicSceneGraph.from_events([Event(agent="circle", predicate="jumps", start=0, end=2)])
    dataset = open_dataset("folder", root, sampling=SAMPLING)
    dataset.gold = {"a_good": dsg}
    return dataset


def items_by_id(dataset) -> dict:
    return {item["id"]: item for item in (dataset[i] for i in range(len(dataset))) if item is not None}


def test_npy_shards_give_back_exact_clips_captions_and_dsgs(folder, tmp_path):
    report = write_shards(folder, tmp_path / "shards", ShardOptions(max_count=3, video_format="npy"), progress=False)
    assert (report.written, report.skipped, report.already_done) == (7, 2, 0)
    assert [p.name for p in report.shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    read = {item["id"]: item for item in ShardDataset(tmp_path / "shards")}
    expected = items_by_id(folder)
    assert read.keys() == expected.keys()
    for id_, item in expected.items():
        assert torch.equal(read[id_]["video"], item["video"])
        assert read[id_]["caption"] == item["caption"] and read[id_]["dsg"] == item["dsg"]
    assert read["a_good"]["dsg"] is not None


def test_mp4_shards_are_within_codec_tolerance_and_carry_latents(folder, tmp_path):
    def latents(video: torch.Tensor) -> torch.Tensor:
        return video[:, :, ::8, ::8].clone()  # [3, T, 4, 4]: a stand-in encoder

    write_shards(folder, tmp_path / "shards", ShardOptions(max_count=4), latents=latents, progress=False)
    with tarfile.open(find_shards(tmp_path / "shards")[0]) as tar:
        names = tar.getnames()
    assert "000000-000000.mp4" in names and "000000-000000.latents.safetensors" in names
    assert "000000-000000.dsg.json" in names and "000000-000001.dsg.json" not in names
    expected = items_by_id(folder)
    batches = list(DataLoader(ShardDataset(tmp_path / "shards"), batch_size=4, collate_fn=collate))
    assert batches[0]["latents"].shape == (4, 3, 6, 4, 4)
    for batch in batches:
        for id_, video, lat in zip(batch["id"], batch["video"], batch["latents"], strict=True):
            assert (video - expected[id_]["video"]).abs().max() < 8 / 127.5  # within 4 grey levels
            assert torch.equal(lat, latents(expected[id_]["video"]))


def test_an_interrupted_write_resumes_without_rewriting_done_ids(folder, tmp_path):
    out = tmp_path / "shards"

    class Interrupted(VideoTextDataset):
        def __getitem__(self, index):
            if index >= 5:
                raise KeyboardInterrupt
            return super().__getitem__(index)

    broken = Interrupted(folder.records, SAMPLING, gold=folder.gold)
    with pytest.raises(KeyboardInterrupt):
        write_shards(broken, out, ShardOptions(max_count=2, video_format="npy"), progress=False)
    first = [json.loads(p.read_text())["ids"] for p in sorted(out.glob("shard-*[0-9].json"))]
    assert first == [["a_good", "b_good"], ["e_more0"]]  # the open shard was closed on the way out
    report = write_shards(folder, out, ShardOptions(max_count=2, video_format="npy"), progress=False)
    assert (report.written, report.skipped, report.already_done) == (4, 0, 5)  # 3 clips + 2 bad ones were done
    ids = [item["id"] for item in ShardDataset(out)]
    assert sorted(ids) == sorted(items_by_id(folder)) and len(ids) == len(set(ids))
    assert not list(out.glob(".*.tmp"))


def test_ranks_and_workers_cover_every_item_exactly_once(folder, tmp_path, monkeypatch):
    write_shards(folder, tmp_path / "shards", ShardOptions(max_count=1, video_format="npy"), progress=False)
    seen, tally = [], SkipTally("shards")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        dataset = ShardDataset(tmp_path / "shards", shuffle=4, seed=3)
        for batch in DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate):
            tally.update(batch)
            seen += batch["id"]
    assert sorted(seen) == sorted(items_by_id(folder)) and tally.skipped == 0


def test_shuffling_is_seeded_and_changes_with_the_epoch(folder, tmp_path):
    write_shards(folder, tmp_path / "shards", ShardOptions(max_count=2, video_format="npy"), progress=False)

    def order(seed: int, epoch: int) -> list[str]:
        dataset = ShardDataset(tmp_path / "shards", shuffle=8, seed=seed)
        dataset.set_epoch(epoch)
        return [item["id"] for item in dataset]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and sorted(order(1, 1)) == sorted(order(1, 0))
    assert [item["id"] for item in ShardDataset(tmp_path / "shards")] == sorted(items_by_id(folder))


def test_a_broken_sample_is_yielded_as_none_and_counted(folder, tmp_path):
    shards = tmp_path / "shards"
    write_shards(folder, shards, ShardOptions(max_count=10, video_format="npy"), progress=False)
    tar_path = find_shards(shards)[0]
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if not m.name.startswith("000000-000001.")]
    with tarfile.open(tar_path, "w") as tar:  # drop every member of the second sample but its caption
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
        extra = tarfile.TarInfo("000000-000001.txt")
        extra.size = 3
        tar.addfile(extra, io.BytesIO(b"cap"))
    tally = SkipTally()
    for batch in DataLoader(ShardDataset(shards), batch_size=4, collate_fn=collate):
        tally.update(batch)
    assert (tally.seen, tally.skipped) == (7, 1)


def test_missing_shards_say_what_to_do(tmp_path):
    with pytest.raises(ShardError, match="dysen data shards"):
        ShardDataset(tmp_path)


def test_cli_writes_shards_and_a_rerun_adds_nothing(folder, tmp_path, capsys):
    from dysen.cli import main

    argv = ["data", "shards", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(tmp_path / "s"),
            "--frames", "4", "--size", "32", "--format", "npy", "--max-count", "3"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 7 clips (2 bad videos skipped, 0 done before); 3 shards" in capsys.readouterr().out
    assert main(argv) == 0
    assert "wrote 0 clips (0 bad videos skipped, 9 done before)" in capsys.readouterr().out
    assert next(iter(ShardDataset(tmp_path / "s")))["video"].shape == (3, 4, 32, 32)


def test_clip_sampling_refuses_zero_sizes():
    from dysen.data.datasets import DatasetError

    with pytest.raises(DatasetError):
        ClipSampling(size=0)
