"""WebVid as downloaded today: video2dataset's webdataset output read in place (``dysen.data.video2dataset``).

The fixture (``data_fixtures.video2dataset``) is written the way video2dataset writes it: ``NNNNN.tar`` by
webdataset's ``TarWriter`` with ``KEY.json`` / ``KEY.mp4`` / ``KEY.txt``, a failed row with no video,
``NNNNN_stats.json`` for the finished shard, and a second shard cut short mid-mp4 with no stats file.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import data_fixtures as fx
from dysen.cli import main
from dysen.config import save_config
from dysen.data.datasets import ClipSampling, DatasetError, SkipTally, collate, load_records, open_dataset
from dysen.data.shards import ShardDataset, ShardError, open_shards
from dysen.data.video import model_to_frames, read_video, write_video
from dysen.data.video2dataset import Video2DatasetStream, find_download, parse_sample, tar_samples
from dysen.dsg import DynamicSceneGraph, Event
from pipeline_fixtures import TINY
from test_train_latents import _wide
from test_video import REAL, needs_real

EVAL = ClipSampling(num_frames=4, stride=2, size=16)  # centred in 20 frames: frames 6, 8, 10, 12
GOOD = {"1066683": "Aerial shot of a beach, waves", "31353427": "A cat, sleeping", "5641526": "Horse grazing"}
BAD = {"20", "21", "22"}  # no caption, an mp4 that is not a video, cut short by the end of its tar


@pytest.fixture
def download(tmp_path: Path) -> Path:
    return fx.video2dataset(tmp_path / "webvid")


def sampled_frames(video: torch.Tensor) -> list[int]:
    """Which fixture frames a model-layout clip holds (each fixture frame is flat at its own brightness)."""
    step = fx.level(1) - fx.level(0)
    return [round((float(frame.float().mean()) - fx.level(0)) / step) for frame in model_to_frames(video)]


def tally(dataset, batch_size: int = 2) -> tuple[SkipTally, dict[str, dict]]:
    counts, items = SkipTally(), {}
    for batch in DataLoader(dataset, batch_size, collate_fn=collate):
        counts.update(batch)
        for i, id_ in enumerate(batch["id"]):
            items[id_] = {"video": batch["video"][i], "caption": batch["caption"][i], "dsg": batch["dsg"][i]}
    return counts, items


def test_webvid_root_reads_the_download_in_place_and_counts_what_it_skips(download, caplog):
    with caplog.at_level(logging.WARNING):
        records = load_records("webvid", download)
    assert "failed_to_download 1" in caplog.text and "no _stats.json for 1 tars" in caplog.text
    assert [r.id for r in records] == ["1066683", "31353427", "20", "21", "5641526", "22"]  # 1053841541 left out
    by_id = {r.id: r for r in records}
    assert {id_: by_id[id_].captions for id_ in GOOD} == {id_: (caption,) for id_, caption in GOOD.items()}
    assert by_id["1066683"].path == download / "00000.tar" and by_id["1066683"].member.suffix == ".mp4"
    assert "no caption" in by_id["20"].problem and "cut short by the end of 00001.tar" in by_id["22"].problem
    assert by_id["21"].problem is None  # only decoding finds it out

    counts, items = tally(open_dataset("webvid", download, sampling=EVAL))
    assert (counts.seen, counts.skipped) == (6, 3) and items.keys() == GOOD.keys()
    assert all(sampled_frames(item["video"]) == [6, 8, 10, 12] for item in items.values())
    assert {id_: item["caption"] for id_, item in items.items()} == GOOD


def test_shards_stream_the_download_with_the_same_clips_counts_and_gold(download, caplog):
    gold = {"31353427": DynamicSceneGraph.from_events([Event(agent="cat", predicate="jumps", start=0, end=2)])}
    with caplog.at_level(logging.WARNING):
        stream = open_shards(download, EVAL, gold=gold)
    assert isinstance(stream, Video2DatasetStream)
    assert "4 downloaded, 1 failed to download" in caplog.text and "no _stats.json for 00001.tar" in caplog.text
    counts, items = tally(stream)
    assert (counts.seen, counts.skipped) == (6, 3) and items.keys() == GOOD.keys()
    _, indexed = tally(open_dataset("webvid", download, sampling=EVAL))
    for id_, item in items.items():
        assert torch.equal(item["video"], indexed[id_]["video"]) and item["caption"] == GOOD[id_]
    assert items["31353427"]["dsg"] == gold["31353427"] and items["1066683"]["dsg"] is None
    # training windows are drawn per (seed, epoch, id): reproducible, and redrawn by the epoch
    train = Video2DatasetStream(download, ClipSampling(num_frames=4, stride=2, size=16, train=True, seed=5))
    windows = []
    for epoch in (0, 0, 1):
        train.set_epoch(epoch)
        windows.append([sampled_frames(item["video"]) for item in train if item is not None])
    assert windows[0] == windows[1] != windows[2]


def test_ids_captions_and_statuses_are_read_as_video2dataset_writes_them(tmp_path):
    def sample(meta: dict | None, **members) -> dict:
        raw = {"__key__": "00000007", "__url__": str(tmp_path / "00000.tar"), **members}
        return {**raw, "json": json.dumps(meta).encode()} if meta is not None else raw

    status = {"status": "success"}
    assert parse_sample(sample({"videoid": 42, **status}, mp4=b"v", txt=b"a dog\n")).id == "42"
    assert parse_sample(sample({"videoid": 42.0, **status}, mp4=b"v", txt=b"x")).id == "42"  # a float column
    clipped = parse_sample(sample({"videoid": 42, "key": "00000007_00002", **status}, mp4=b"v", txt=b"x"))
    assert clipped.id == "42_00002"  # clipping: one sample per clip, keyed KEY_{clip:05d}
    plain = parse_sample(sample({"key": "00000007", "caption": "a cat", **status}, mp4=b"v"))
    assert (plain.id, plain.caption, plain.problem) == ("00000007", "a cat", None)  # no videoid: the key
    assert parse_sample(sample(None, mp4=b"v", txt=b"a dog")).id == "00000007"  # no json at all
    failed = parse_sample(sample({"videoid": 1, "status": "failed_to_subsample", "caption": "x"}, txt=b"x"))
    assert not failed.downloaded and failed.status == "failed_to_subsample"
    assert "not JSON" in parse_sample({**sample(None, mp4=b"v", txt=b"x"), "json": b"{not json"}).problem
    assert "no video member" in parse_sample(sample({"videoid": 1, **status}, txt=b"x")).problem
    assert "no caption" in parse_sample(sample({"videoid": 1, "caption": None, **status}, mp4=b"v", txt=b"")).problem


def test_a_file_that_is_no_tar_is_one_counted_skip(download):
    (download / "00002.tar").write_bytes(b"not a tar file at all" * 40)
    samples = [parse_sample(raw) for raw in tar_samples(download / "00002.tar")]
    assert len(samples) == 1 and "00002.tar cannot be read" in samples[0].problem
    counts, items = tally(Video2DatasetStream(download, EVAL))
    assert (counts.seen, counts.skipped) == (7, 4) and items.keys() == GOOD.keys()


def test_webvid_layouts_are_told_apart_and_a_download_of_nothing_is_refused(tmp_path):
    assert [r.id for r in load_records("webvid", fx.webvid(tmp_path / "csv"), split="val")] == ["1066683", "31353427"]
    fx.video2dataset_shard(tmp_path / "two" / "val", 0, [{"videoid": 7, "caption": "x", "video": fx.mp4_bytes(4)}])
    assert find_download(tmp_path / "two", "val") == tmp_path / "two" / "val"  # root/<split>
    assert [r.id for r in load_records("webvid", tmp_path / "two", split="val")] == ["7"]
    with pytest.raises(DatasetError, match="video2dataset's output .* or WebVid's CSV"):
        load_records("webvid", tmp_path / "two", split="train")
    fx.video2dataset_shard(tmp_path / "none", 0, [{"videoid": 7, "caption": "x", "video": None}])
    with pytest.raises(ShardError, match="downloaded no video"):
        open_shards(tmp_path / "none", EVAL)
    with pytest.raises(DatasetError, match="no downloaded video"):
        load_records("webvid", tmp_path / "none")
    with pytest.raises(ShardError, match="neither dysen's .* nor video2dataset's"):
        open_shards(tmp_path / "csv", EVAL)


def test_data_shards_cuts_the_download_into_dysen_shards(download, tmp_path, capsys):
    out = tmp_path / "shards"
    argv = ["data", "shards", "--dataset", "webvid", "--root", str(download), "--out", str(out), "--frames", "4",
            "--stride", "2", "--size", "16", "--format", "npy"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 3 clips (3 bad videos skipped, 0 done before)" in capsys.readouterr().out
    shards = open_shards(out, EVAL)
    assert type(shards) is ShardDataset and {item["id"] for item in shards} == GOOD.keys()


def test_one_training_step_each_from_the_download(download, tmp_path, capsys):
    """annotate the captions -> train-vae on --data webvid --root -> train-vdm on --shards with --gold."""
    gold = tmp_path / "gold.jsonl"
    annotate = ["dsg", "annotate", "--dataset", "webvid", "--root", str(download), "--out", str(gold)]
    assert main([*annotate, "--planner", "rules", "--no-cache"]) == 1  # 20 has no caption: its one failure
    assert {json.loads(line)["id"] for line in gold.read_text().splitlines() if '"dsg": null' not in line} == (
        GOOD.keys() | {"21", "22"}
    )
    step = ["--batch-size", "6", "--steps", "1", "--save-every", "100", "--lr", "1e-3"]  # the whole download
    vae = ["train-vae", "--config", str(save_config(TINY, tmp_path / "tiny.yaml")), *step]
    assert main([*vae, "--data", "webvid", "--root", str(download), "--out", str(tmp_path / "vae")]) == 0
    assert "skipped 3 bad items (3 draws)" in capsys.readouterr().out
    config = save_config(_wide(TINY), tmp_path / "text.yaml")  # the CLI builds the real text encoder
    vdm = ["train-vdm", "--config", str(config), *step, "--vae", str(tmp_path / "vae"), "--out", str(tmp_path / "vdm")]
    assert main([*vdm, "--shards", str(download), "--gold", str(gold)]) == 0
    (metrics,) = [json.loads(line) for line in (tmp_path / "vdm" / "metrics.jsonl").read_text().splitlines()]
    assert metrics["step"] == 1 and metrics["skipped"] == 3 and math.isfinite(metrics["loss"])
    assert (tmp_path / "vdm" / "model" / "model_index.json").is_file()


@needs_real
def test_real_clips_cut_short_read_back_from_a_download(tmp_path):
    """cup.mp4 and box.mp4 (640x480 H.264), their first 24 frames at 64 px, in a tar: the stream decodes exactly
    the centred window of each mp4 it holds, and that is the real clip within the codec's error."""
    clips, originals, rows = {}, {}, []
    for videoid, name in (("1", "cup.mp4"), ("2", "box.mp4")):
        frames = read_video(REAL / name, num_frames=24, size=64)  # [24, 64, 64, 3] uint8, centre-cropped
        clips[videoid] = write_video(tmp_path / name, frames.numpy(), fps=25)
        originals[videoid] = frames.numpy().astype(np.int16)
        rows.append({"videoid": int(videoid), "caption": f"a {name[:3]}", "video": clips[videoid].read_bytes()})
    fx.video2dataset_shard(tmp_path / "real", 0, rows)
    sampling = ClipSampling(num_frames=8, stride=3, size=64)  # the centred window of 24 frames: 1, 4, ..., 22
    items = list(Video2DatasetStream(tmp_path / "real", sampling))
    assert sorted(item["id"] for item in items) == ["1", "2"]
    for item in items:
        window = read_video(clips[item["id"]], start=1, num_frames=8, stride=3, output="float")  # [3, 8, 64, 64]
        assert torch.equal(item["video"], window)
        got = model_to_frames(item["video"]).numpy().astype(np.int16)  # [8, 64, 64, 3]
        assert np.abs(got - originals[item["id"]][1::3]).mean() < 5  # H.264 at crf 18 of real, textured frames
