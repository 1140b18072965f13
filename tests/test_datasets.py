"""Real-format loaders on tiny fixture trees: records, clips, captions, gold DSGs, and skipping bad videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import data_fixtures as fx
from dysen.cli import main
from dysen.data.datasets import (
    ClipSampling,
    DatasetError,
    SkipTally,
    VideoTextDataset,
    class_prompt,
    clip_window,
    collate,
    load_records,
    open_dataset,
    read_gold,
)
from dysen.data.video import model_to_frames
from dysen.dsg import DynamicSceneGraph, Event

REAL_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_videos"
SMALL = ClipSampling(num_frames=4, stride=2, size=32)


def levels(video: torch.Tensor) -> list[int]:
    """Mean brightness of each frame of a model-layout clip (the fixtures encode the frame index in it)."""
    return [int(frame.float().mean().round()) for frame in model_to_frames(video)]


def frame_of(brightness: int) -> int:
    return round((brightness - fx.level(0)) / (fx.level(1) - fx.level(0)))


def test_webvid_reads_columns_by_name_and_finds_videos_by_page_dir(tmp_path):
    dataset = open_dataset("webvid", fx.webvid(tmp_path), split="val", sampling=SMALL)
    assert [r.id for r in dataset.records] == ["1066683", "31353427"]
    item = dataset[0]
    assert item["caption"] == "Aerial shot of a beach, waves" and item["dsg"] is None and item["id"] == "1066683"
    assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.float32
    assert -1.0 <= item["video"].min() and item["video"].max() <= 1.0


def test_webvid_csv_without_the_caption_column_is_refused(tmp_path):
    (tmp_path / "results_2M_val.csv").write_text("videoid,page_dir\n1,000001_000050\n")
    with pytest.raises(DatasetError, match="name"):
        load_records("webvid", tmp_path, "val")


@pytest.mark.parametrize("quirk_folder", ["HandstandPushups", "HandStandPushups"])
def test_ucf101_splits_labels_prompts_and_the_handstand_quirk(tmp_path, quirk_folder):
    root = fx.ucf101(tmp_path, quirk_folder)
    train, test = load_records("ucf101", root, "train"), load_records("ucf101", root, "test")
    assert [(r.id, r.label, r.captions) for r in train] == [
        ("v_ApplyEyeMakeup_g08_c01", 0, ("apply eye makeup",)),
        ("v_HandStandPushups_g08_c01", 1, ("handstand pushups",)),
    ]
    assert [(r.id, r.label, r.captions) for r in test] == [("v_YoYo_g01_c01", 2, ("yo yo",))]
    assert all(r.path.is_file() for r in train + test)
    assert len(load_records("ucf101", root, "all")) == 3
    item = VideoTextDataset(train, SMALL)[1]
    assert item["video"].shape == (3, 4, 32, 32) and item["caption"] == "handstand pushups"


def test_class_prompt_splits_camel_case():
    assert class_prompt("ApplyEyeMakeup") == "apply eye makeup"
    assert class_prompt("YoYo") == "yo yo" and class_prompt("PlayingDaf") == "playing daf"


@pytest.mark.parametrize("schema", ["original", "retrieval"])
def test_msrvtt_both_schemas_give_the_test_split_with_every_caption(tmp_path, schema):
    root = fx.msrvtt(tmp_path, schema)
    test = load_records("msrvtt", root, "test")
    assert [r.id for r in test] == ["video7010", "video9999"]
    assert test[0].captions == tuple(f"caption {k} of video7010" for k in range(20))  # sen_id order
    assert [r.id for r in load_records("msrvtt", root, "train")] == ["video1"]
    assert [r.id for r in load_records("msrvtt", root, "validate")] == ["video6600"]


def test_msrvtt_caption_is_fixed_per_seed_in_eval_and_redrawn_per_epoch_in_training(tmp_path):
    records = load_records("msrvtt", fx.msrvtt(tmp_path), "test")[:1]
    eval_captions = {VideoTextDataset(records, SMALL)[0]["caption"] for _ in range(3)}
    assert len(eval_captions) == 1 and eval_captions <= set(records[0].captions)
    by_seed = {VideoTextDataset(records, ClipSampling(4, 2, 32, seed=s))[0]["caption"] for s in range(8)}
    assert len(by_seed) > 1
    training = VideoTextDataset(records, ClipSampling(4, 2, 32, train=True))
    per_epoch = []
    for epoch in range(6):
        training.set_epoch(epoch)
        per_epoch.append(training[0]["caption"])
    assert len(set(per_epoch)) > 1


def test_activitynet_paragraph_whole_video_clip_and_gold_events_from_timestamps(tmp_path):
    root = fx.activitynet(tmp_path)
    assert open_dataset("activitynet", root, "train")[0]["dsg"] is None  # datasets read gold DSGs, never plan them
    gold = tmp_path / "gold.jsonl"
    assert main(["dsg", "annotate", "--dataset", "activitynet", "--root", str(root), "--out", str(gold)]) == 0
    dataset = open_dataset("activitynet", root, "train", sampling=None, gold=gold)
    assert dataset.sampling.stride is None
    assert [r.id for r in dataset.records] == ["v_QOlSCBRmfWY", "v_ehGHCYKzyZ8"]
    assert all(r.path.is_file() for r in dataset.records)
    item = dataset[0]
    entry = fx.ACTIVITYNET["v_QOlSCBRmfWY"]
    assert item["caption"] == " ".join(entry["sentences"])
    assert [(e.start, e.end) for e in item["dsg"].events] == [(0, 2), (2, 6), (5, 8)]
    assert item["dsg"].num_steps == 8
    picked = [frame_of(b) for b in levels(dataset[0]["video"])]
    assert picked == list(range(1, 48, 3))  # 16 frames spread over all 48


def test_shapes_manifest_records_carry_their_gold_dsgs(tmp_path):
    from dysen.data.shapes import ShapesConfig, write_dataset

    manifest = write_dataset(tmp_path, num=2, config=ShapesConfig(size=32), workers=1, progress=False)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    dataset = open_dataset("shapes", tmp_path, sampling=ClipSampling(num_frames=16, size=None))
    item = dataset[1]
    assert item["id"] == rows[1]["id"] and item["caption"] == rows[1]["caption"]
    assert item["dsg"] == DynamicSceneGraph.from_dict(rows[1]["dsg"])
    assert item["video"].shape == (3, 16, 32, 32)


def test_eval_window_is_centred_and_training_window_is_seeded(tmp_path):
    fx.mp4(tmp_path / "clip.mp4", 20)
    records = load_records("folder", tmp_path)
    centred = VideoTextDataset(records, ClipSampling(num_frames=4, stride=3, size=None))[0]
    assert [frame_of(b) for b in levels(centred["video"])] == [5, 8, 11, 14]  # a 10-frame window in 20: start 5
    sampling = ClipSampling(num_frames=4, stride=3, train=True, seed=7)
    starts = {clip_window(20, sampling, np.random.default_rng((7, epoch, 0)))[0] for epoch in range(20)}
    assert len(starts) > 3 and max(starts) <= 10
    train = VideoTextDataset(records, sampling)
    first, again = train[0]["video"], train[0]["video"]
    assert torch.equal(first, again)


def test_clip_window_pads_short_videos_and_spreads_whole_video_clips():
    rng = np.random.default_rng(0)
    assert clip_window(5, ClipSampling(num_frames=16, stride=2), rng) == (0, 2)
    assert clip_window(160, ClipSampling(num_frames=16, stride=None), rng) == (4, 10)


def test_gold_side_file_overrides_and_joins_by_id(tmp_path):
    records = load_records("webvid", fx.webvid(tmp_path), "val")
    dsg = DynamicSceneGraph.from_events([Event(agent="cat", predicate="sleeps", start=0, end=2)])
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps({"id": "31353427", "dsg": dsg.to_dict(), "source": "captions:rules"}) + "\n"
        + json.dumps({"id": "1066683", "dsg": None, "source": "vlm:x", "error": "LLMError: down"}) + "\n"
        + '{"id": "cut sho'
    )  # fmt: skip
    assert set(read_gold(gold)) == {"31353427"}
    dataset = VideoTextDataset(records, SMALL, gold=gold)
    assert dataset[1]["dsg"] == dsg and dataset[0]["dsg"] is None


def test_bad_videos_are_skipped_through_a_dataloader_and_counted(tmp_path):
    dataset = open_dataset("folder", fx.broken_folder(tmp_path), sampling=SMALL)
    assert [r.id for r in dataset.records] == ["a_good", "b_good", "c_truncated", "d_text"]
    tally = SkipTally("folder")
    # forkserver: a worker forked from a pytest process that has decoded video with PyAV's threads can hang in
    # its first decode (seen once in CI after the suite grew); a clean server process forks the workers instead
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate, multiprocessing_context="forkserver")
    ids = []
    for batch in loader:
        tally.update(batch)
        ids += batch["id"]
        if batch["id"]:
            assert batch["video"].shape[0] == len(batch["id"])
    assert ids == ["a_good", "b_good"] and tally.skipped == 2 and tally.seen == 4
    assert tally.summary() == "folder: 2 of 4 items loaded, 2 skipped"


def test_scan_drops_bad_videos_before_loading(tmp_path):
    dataset = open_dataset("folder", fx.broken_folder(tmp_path), sampling=SMALL)
    bad = dataset.scan(progress=False)
    assert [id_ for id_, _ in bad] == ["c_truncated", "d_text"] and "truncated" in bad[0][1]
    assert len(dataset) == 2 and collate([dataset[0], dataset[1]])["skipped"] == 0


def test_a_batch_of_only_bad_videos_has_no_video_but_counts_them(tmp_path):
    batch = collate([None, None])
    assert batch["video"] is None and batch["id"] == [] and batch["skipped"] == 2


def test_real_video_copies_load(tmp_path):
    if not REAL_VIDEOS.is_dir():
        pytest.skip(f"no real test videos at {REAL_VIDEOS}")
    shutil.copy(REAL_VIDEOS / "tree.avi", tmp_path / "tree.avi")
    item = open_dataset("folder", tmp_path, sampling=ClipSampling(num_frames=8, stride=4, size=64))[0]
    assert item["video"].shape == (3, 8, 64, 64) and item["caption"] == "tree"
