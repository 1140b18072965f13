"""Tiny corpora in the real on-disk formats (eval_data.md §5), built by tests; nothing is downloaded.

Every video is 32x32 and flat grey, frame i at brightness ``level(i)``, so a test can tell from the
pixels which frames a loader sampled (H.264 keeps flat frames within a few levels).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

from dysen.data.video import write_video

SIZE = 32


def level(index: int) -> int:
    """Brightness of frame ``index`` of every fixture video."""
    return 20 + 4 * index


def frames(count: int) -> np.ndarray:
    """uint8 ``[count, 32, 32, 3]``, frame i flat at ``level(i)``."""
    return np.stack([np.full((SIZE, SIZE, 3), level(i), dtype=np.uint8) for i in range(count)])


def mp4(path: Path, count: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames(count), fps=8)


def avi(path: Path, count: int = 20) -> Path:
    """An MPEG-4 Part 2 AVI, like UCF-101's (which are XviD)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for image in frames(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def broken_folder(root: Path) -> Path:
    """Two good clips, a truncated mp4 and a text file named .mp4, each with a caption file."""
    for name in ("a_good", "b_good", "c_truncated"):
        mp4(root / f"{name}.mp4", 16)
        (root / f"{name}.txt").write_text(f"caption of {name}\n")
    data = (root / "c_truncated.mp4").read_bytes()
    (root / "c_truncated.mp4").write_bytes(data[: len(data) * 2 // 3])
    (root / "d_text.mp4").write_text("this is not a video\n")
    return root


def webvid(root: Path) -> Path:
    """``results_2M_val.csv`` with columns in another copy's order, videos at ``videos/{page_dir}/{id}.mp4``."""
    rows = [
        ("1066683", "Aerial shot of a beach, waves", "000001_000050"),
        ("31353427", "A cat, sleeping", "031351_031400"),
    ]
    lines = ["videoid,name,page_idx,page_dir,duration,contentUrl"]
    for videoid, name, page_dir in rows:
        lines.append(f'{videoid},"{name}",3,{page_dir},PT00H00M17S,https://example.invalid/{videoid}.mp4')
        mp4(root / "videos" / page_dir / f"{videoid}.mp4")
    (root / "results_2M_val.csv").write_text("\n".join(lines) + "\n")
    return root


def ucf101(root: Path, quirk_folder: str = "HandstandPushups") -> Path:
    """classInd, trainlist01/testlist01 and three .avi clips; ``quirk_folder`` is the folder name on disk."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g08_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\n")
    videos = root / "UCF-101"
    avi(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    avi(videos / quirk_folder / "v_HandStandPushups_g08_c01.avi")
    avi(videos / "YoYo" / "v_YoYo_g01_c01.avi")
    return root


def msrvtt(root: Path, schema: str = "original") -> Path:
    """MSR-VTT annotations (``original``: two *videodatainfo.json with split fields; ``retrieval``:
    MSRVTT_data.json without them) and videos at ``videos/all``; video7010 has 20 captions."""
    ids = ["video1", "video6600", "video7010", "video9999"]
    sentences = [
        {"caption": f"caption {k} of {vid}", "video_id": vid, "sen_id": 100 * n + k}
        for n, vid in enumerate(ids)
        for k in reversed(range(20 if vid == "video7010" else 2))
    ]
    splits = {"video1": "train", "video6600": "validate", "video7010": "test", "video9999": "test"}
    videos = [{"video_id": v, "category": 1, "url": "", "start time": 0, "end time": 1} for v in ids]
    files = {"train_val_videodatainfo.json": ("train", "validate"), "test_videodatainfo.json": ("test",)}
    if schema == "original":
        for name, keep in files.items():
            chosen = [dict(v, split=splits[v["video_id"]]) for v in videos if splits[v["video_id"]] in keep]
            names = {v["video_id"] for v in chosen}
            data = {"info": {}, "videos": chosen, "sentences": [s for s in sentences if s["video_id"] in names]}
            (root / name).write_text(json.dumps(data))
    else:
        (root / "annotation").mkdir(parents=True, exist_ok=True)
        (root / "annotation" / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    for vid in ids:
        mp4(root / "videos" / "all" / f"{vid}.mp4")
    return root


ACTIVITYNET = {
    "v_QOlSCBRmfWY": {
        "duration": 82.73,
        "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
        "sentences": [
            "A woman walks into a room.",
            "She throws a ball to a dog.",
            "The dog catches the ball.",
        ],
    },
    "v_ehGHCYKzyZ8": {
        "duration": 40.0,
        "timestamps": [[0.0, 40.0], [10.0, 20.0]],
        "sentences": ["A man plays the guitar.", "A woman dances on a stage."],
    },
}


def activitynet(root: Path) -> Path:
    """``captions/train.json`` (overlapping timestamps) and videos, one named without the ``v_`` prefix."""
    (root / "captions").mkdir(parents=True)
    (root / "captions" / "train.json").write_text(json.dumps(ACTIVITYNET))
    mp4(root / "videos" / "v_QOlSCBRmfWY.mp4", 48)
    mp4(root / "videos" / "ehGHCYKzyZ8.mp4", 48)
    return root


# -- video2dataset (WebVid as downloaded today) ---------------------------------------------------------


def video2dataset_shard(folder: Path, shard_id: int, rows: list[dict], *, finished: bool = True) -> Path:
    """``{shard:05d}.tar`` (+ ``.parquet``, + ``_stats.json`` when ``finished``) as video2dataset 1.x writes them
    for WebVid (``--url_col contentUrl --caption_col name --save_additional_columns [videoid,page_idx,page_dir,
    duration]``; data_writer.WebDatasetSampleWriter, workers/download_worker.py, logger.write_stats).

    Each row: ``videoid``, ``caption`` (None: a row without one), ``video`` (mp4 bytes, or None for a row that
    failed with ``status``); ``txt=False`` leaves its ``.txt`` out, ``json`` replaces its ``.json`` text."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    name = f"{shard_id:05d}"  # oom_shard_count 5
    with (folder / f"{name}.tar").open("wb") as file:
        writer = wds.TarWriter(file)  # default encoder: str -> UTF-8, as video2dataset's
        for index, row in enumerate(rows):
            key = f"{10**3 * shard_id + index:08d}"  # compute_key: 1000 samples per shard -> 3 + 5 digits
            status = "success" if row["video"] is not None else row.get("status", "failed_to_download")
            meta = {
                "videoid": row["videoid"], "page_idx": 3, "page_dir": "000001_000050", "duration": "PT00H00M17S",
                "caption": row["caption"], "url": f"https://ak.picdn.net/shutterstock/videos/{row['videoid']}.mp4",
                "key": key, "status": status, "error_message": None if row["video"] is not None else "HTTP 403",
                "yt_meta_dict": None,
            }  # fmt: skip
            sample: dict = {"__key__": key}
            if row["video"] is not None:
                sample["mp4"] = row["video"]
            if row.get("txt", True):
                sample["txt"] = str(row["caption"]) if row["caption"] is not None else ""
            sample["json"] = row.get("json", json.dumps(meta, indent=4))
            writer.write(sample)
        writer.close()
    # video2dataset writes a parquet of the same metadata; dysen never reads it (and pyarrow is not installed)
    (folder / f"{name}.parquet").write_bytes(b"PAR1 not read by dysen PAR1")
    if finished:
        done = sum(r["video"] is not None for r in rows)
        stats = {
            "count": len(rows), "successes": done, "failed_to_download": len(rows) - done, "failed_to_subsample": 0,
            "duration": 1.0, "bytes_downloaded": 0, "start_time": 0.0, "end_time": 1.0,
            "status_dict": {"success": done},
        }  # fmt: skip
        (folder / f"{name}_stats.json").write_text(json.dumps(stats, indent=4))
    return folder / f"{name}.tar"


def mp4_bytes(count: int = 20) -> bytes:
    """An mp4 of ``frames(count)``, as bytes."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        return write_video(Path(scratch) / "clip.mp4", frames(count), fps=8).read_bytes()


def video2dataset(root: Path) -> Path:
    """A WebVid download by video2dataset in ``root``: shard 00000 (finished) and 00001 (cut short, no stats).

    Usable: 1066683 (.txt caption), 31353427 (no .txt: the caption of its .json), 5641526 (shard 1).
    Not downloaded (left out): 1053841541. Skipped and counted: 20 (no caption at all), 21 (an mp4 that is not
    a video), 22 (its mp4 cut short by the end of 00001.tar)."""
    clip = mp4_bytes(20)
    video2dataset_shard(root, 0, [
        {"videoid": 1066683, "caption": "Aerial shot of a beach, waves", "video": clip},
        {"videoid": 1053841541, "caption": "Travel blogger on top of mountains", "video": None},
        {"videoid": 31353427, "caption": "A cat, sleeping", "video": clip, "txt": False},
        {"videoid": 20, "caption": None, "video": clip},
        {"videoid": 21, "caption": "A text file named .mp4", "video": b"this is not a video\n"},
    ])  # fmt: skip
    tar = video2dataset_shard(root, 1, [
        {"videoid": 5641526, "caption": "Horse grazing", "video": clip},
        {"videoid": 22, "caption": "Cut short", "video": clip},
    ], finished=False)  # fmt: skip
    data = tar.read_bytes()
    tar.write_bytes(data[: data.index(clip, data.index(b"00001001.mp4")) + len(clip) // 2])  # mid 22's mp4
    return root
