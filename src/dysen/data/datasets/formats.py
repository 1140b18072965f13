"""Readers of each corpus's layout on disk, each giving ``VideoRecord``s (formats: eval_data.md §5).

* WebVid (§5.1), either layout: video2dataset's webdataset output (``NNNNN.tar`` in ``root/<split>`` or
  ``root``; how WebVid is downloaded today, read in place by ``dysen.data.video2dataset``), else a CSV read
  by column name (``videoid``, ``name``, ``page_dir``; the column order differs between copies) with
  videos at ``{video_dir}/{page_dir}/{videoid}.mp4``.
* UCF-101 (§5.3): ``ucfTrainTestlist/classInd.txt`` (1-based) and ``trainlist0{k}``/``testlist0{k}``;
  videos at ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi``. Paths are matched case-insensitively, because
  class ``HandstandPushups`` holds ``v_HandStandPushups_*`` files. The caption is the class name in
  words: "ApplyEyeMakeup" -> "apply eye makeup".
* MSR-VTT (§5.2): ``train_val_videodatainfo.json`` + ``test_videodatainfo.json`` or ``MSRVTT_data.json``
  (same ``videos``/``sentences`` schema); the split is the video's ``split`` field, else its number
  (test = video7010-9999, the 2,990-video T2V test set). All 20 captions are kept, in ``sen_id`` order.
* ActivityNet Captions (§5.4): ``{split}.json`` mapping ``v_<YouTubeID>`` to duration, timestamps and
  sentences; the caption is the paragraph, the segments are what ``dysen dsg annotate`` turns into
  gold events (read back through ``gold``). Videos are found by the key with or without ``v_``, in any
  common container.
* Dynamic Shapes: the ``manifest.jsonl`` that ``dysen data shapes`` writes (gold DSGs included).
* A folder: every video under it, captioned by a ``<stem>.txt`` beside it, else by its name.

Annotations are read once, in file order; video files are not opened here (``VideoTextDataset.scan``
probes them).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from dysen.data.datasets import DATASETS
from dysen.data.datasets.base import ClipSampling, DatasetError, Segment, VideoRecord, VideoTextDataset
from dysen.dsg import DynamicSceneGraph
from dysen.errors import DSGError

DatasetName = Literal["webvid", "ucf101", "msrvtt", "activitynet", "shapes", "folder"]
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif")
log = logging.getLogger(__name__)

MSRVTT_FIRST_TEST = 7010
"""video7010 ... video9999 are MSR-VTT's original test split (eval_data.md §5.2)."""


def open_dataset(
    name: DatasetName,
    root: str | os.PathLike,
    split: str = "train",
    sampling: ClipSampling | None = None,
    gold: str | os.PathLike | None = None,
) -> VideoTextDataset:
    """The dataset ``name`` under ``root`` (the seed README's ``dataset/<name>``), ready for a DataLoader.

    ``sampling`` defaults to ``ClipSampling()``, except ActivityNet, whose clips span the whole video
    (``stride=None``) so that they match their DSG's time base; ``gold`` is a JSONL side file of DSGs
    (``dysen dsg annotate``), without which a real corpus's items have ``dsg`` None.
    """
    if sampling is None:
        sampling = ClipSampling(stride=None) if name == "activitynet" else ClipSampling()
    return VideoTextDataset(load_records(name, root, split), sampling, gold=gold)


def load_records(name: DatasetName, root: str | os.PathLike, split: str = "train") -> list[VideoRecord]:
    """The records of ``split`` of dataset ``name`` under ``root`` (module docstring for each layout)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; put {name} there (see the README)")
    if name == "webvid":
        return _webvid(root, split)
    if name == "ucf101":
        return ucf101_records(root, split)
    if name == "msrvtt":
        return msrvtt_records(root, split)
    if name == "activitynet":
        return activitynet_records(root, split)
    if name == "shapes":
        return shapes_records(root / "manifest.jsonl")
    if name == "folder":
        return folder_records(root)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _one_file(root: Path, pattern: str) -> Path:
    found = sorted(root.glob(pattern))
    if len(found) != 1:
        raise DatasetError(f"expected one file matching {root / pattern}, found {len(found)}: {found[:3]}")
    return found[0]


# -- WebVid ------------------------------------------------------------------------------------


def _webvid(root: Path, split: str) -> list[VideoRecord]:
    """video2dataset's output in ``root/split`` or ``root``, else WebVid's ``*{split}*.csv`` + ``videos/``."""
    from dysen.data.video2dataset import find_download, video2dataset_records

    download = find_download(root, split)
    if download is not None:
        return video2dataset_records(download)
    if not any(root.glob(f"*{split}*.csv")):
        raise DatasetError(
            f"no WebVid under {root}: expected video2dataset's output (NNNNN.tar, in {root / split} or {root}; "
            f"see the README) or WebVid's CSV (*{split}*.csv) with its videos/ folder"
        )
    return webvid_records(_one_file(root, f"*{split}*.csv"), _first_dir(root, "videos"))


def webvid_records(csv_path: str | os.PathLike, video_dir: str | os.PathLike) -> list[VideoRecord]:
    """One record per CSV row: id ``videoid``, caption ``name``, video ``{video_dir}/{page_dir}/{videoid}.mp4``."""
    csv_path, video_dir = Path(csv_path), Path(video_dir)
    with _open_text(csv_path) as file:
        reader = csv.DictReader(file)
        missing = {"videoid", "name", "page_dir"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{csv_path} lacks the WebVid column(s) {sorted(missing)}; found {reader.fieldnames}")
        return [
            VideoRecord(row["videoid"], video_dir / row["page_dir"] / f"{row['videoid']}.mp4", (row["name"].strip(),))
            for row in reader
        ]


# -- UCF-101 -----------------------------------------------------------------------------------


def class_prompt(name: str) -> str:
    """A UCF-101 class name in words, lower case: "ApplyEyeMakeup" -> "apply eye makeup", "YoYo" -> "yo yo"."""
    return " ".join(re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)).lower()


def ucf101_records(root: str | os.PathLike, split: str = "train", fold: int = 1) -> list[VideoRecord]:
    """Split ``train``, ``test`` or ``all`` (both) of train/test list ``fold`` (1-3); the label is 0-based."""
    root = Path(root)
    lists, videos = _first_dir(root, "ucfTrainTestlist"), _first_dir(root, "UCF-101")
    if split not in ("train", "test", "all") or fold not in (1, 2, 3):
        raise DatasetError(f"UCF-101 has splits train/test/all and folds 1-3, got split {split!r}, fold {fold!r}")
    classes = {}
    for line in _lines(lists / "classInd.txt"):
        number, name = line.split()
        classes[name.lower()] = (int(number) - 1, name)
    parts = ("train", "test") if split == "all" else (split,)
    records = []
    for part in parts:
        for line in _lines(lists / f"{part}list0{fold}.txt"):
            relative = line.split()[0]
            folder = relative.split("/")[0].lower()
            if folder not in classes:
                raise DatasetError(f"{lists / f'{part}list0{fold}.txt'}: class {folder!r} is not in classInd.txt")
            label, name = classes[folder]
            path = _find_ignoring_case(videos, relative)
            records.append(VideoRecord(Path(relative).stem, path, (class_prompt(name),), label=label))
    return records


def _find_ignoring_case(base: Path, relative: str) -> Path:
    """``base / relative``, else the entry whose path matches it ignoring case, else the literal (missing) path."""
    exact = base / relative
    if exact.exists():
        return exact
    current = base
    for part in relative.split("/"):
        entries = current.iterdir() if current.is_dir() else ()
        match = next((p for p in entries if p.name.lower() == part.lower()), None)
        if match is None:
            return exact
        current = match
    return current


# -- MSR-VTT -----------------------------------------------------------------------------------


def msrvtt_records(root: str | os.PathLike, split: str = "test") -> list[VideoRecord]:
    """Split ``train``, ``validate``, ``test`` (2,990 videos) or ``all``, with every caption of each video."""
    root = Path(root)
    if split not in ("train", "validate", "test", "all"):
        raise DatasetError(f"MSR-VTT splits are train, validate, test and all; got {split!r}")
    files = sorted(root.glob("**/*videodatainfo*.json")) or sorted(root.glob("**/MSRVTT_data.json"))
    if not files:
        raise DatasetError(f"no MSR-VTT annotations under {root}: need *videodatainfo.json or MSRVTT_data.json")
    videos: dict[str, str] = {}
    captions: dict[str, list[tuple[int, str]]] = {}
    for file in files:
        data = _json(file)
        try:
            for video in data["videos"]:
                videos[video["video_id"]] = video.get("split") or _msrvtt_split(video["video_id"])
            for sentence in data["sentences"]:
                captions.setdefault(sentence["video_id"], []).append((sentence["sen_id"], sentence["caption"].strip()))
        except (KeyError, TypeError) as err:
            raise DatasetError(f"{file} is not MSR-VTT's videos/sentences schema (missing {err})") from None
    index = _video_index(root)
    return [
        VideoRecord(vid, index.get(vid, root / "videos" / f"{vid}.mp4"), tuple(c for _, c in sorted(captions[vid])))
        for vid, part in videos.items()
        if (split in ("all", part)) and captions.get(vid)
    ]


def _msrvtt_split(video_id: str) -> str:
    number = int(video_id.removeprefix("video"))
    return "test" if number >= MSRVTT_FIRST_TEST else "validate" if number >= 6513 else "train"


# -- ActivityNet Captions ----------------------------------------------------------------------


def activitynet_records(root: str | os.PathLike, split: str = "train") -> list[VideoRecord]:
    """Split ``train``, ``val_1`` or ``val_2``: the paragraph as caption, each sentence a timed segment."""
    root = Path(root)
    data = _json(_one_file(root, f"**/{split}.json"))
    index = _video_index(root)
    records = []
    for key, entry in data.items():
        try:
            segments = tuple(
                Segment(float(start), float(end), sentence.strip())
                for (start, end), sentence in zip(entry["timestamps"], entry["sentences"], strict=True)
            )
            duration = float(entry["duration"])
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"ActivityNet {split}.json entry {key!r} is malformed: {err}") from None
        path = index.get(key) or index.get(key.removeprefix("v_")) or root / "videos" / f"{key}.mp4"
        paragraph = " ".join(s.sentence for s in segments)
        records.append(VideoRecord(key, path, (paragraph,), duration_s=duration, segments=segments))
    return records


# -- Dynamic Shapes and plain folders ----------------------------------------------------------


def shapes_records(manifest: str | os.PathLike) -> list[VideoRecord]:
    """The clips of a Dynamic Shapes ``manifest.jsonl`` (``dysen data shapes``), with their gold DSGs."""
    manifest = Path(manifest)
    records = []
    for number, line in enumerate(_lines(manifest), start=1):
        try:
            row = json.loads(line)
            dsg = DynamicSceneGraph.from_dict(row["dsg"])
            records.append(VideoRecord(row["id"], manifest.parent / row["path"], (row["caption"],), dsg))
        except (json.JSONDecodeError, KeyError, TypeError, DSGError) as err:
            raise DatasetError(f"{manifest}:{number}: not a Dynamic Shapes record ({err})") from None
    return records


def folder_records(root: str | os.PathLike) -> list[VideoRecord]:
    """Every video under ``root`` (sorted); id = path relative to root without suffix, caption from ``<stem>.txt``."""
    root = Path(root)
    records, damaged = [], 0
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
        caption, ok = _caption_beside(path)
        damaged += not ok
        records.append(VideoRecord(path.relative_to(root).with_suffix("").as_posix(), path, (caption,)))
    if damaged:
        log.warning("%d of %d captions under %s were not readable UTF-8 (see above)", damaged, len(records), root)
    return records


def _caption_beside(video: Path) -> tuple[str, bool]:
    """The caption of ``video``: its ``<stem>.txt`` (a regular file), else its name; False if the text was damaged.

    Bytes that are not UTF-8 become U+FFFD with a warning naming the file, rather than dropping the item: the video
    is good and the rest of the caption is usable, and one stray Latin-1 byte should not cost a training clip."""
    text, fallback = video.with_suffix(".txt"), video.stem.replace("_", " ")
    if not text.is_file():  # also keeps FIFOs and folders named *.txt unopened
        return fallback, True
    try:
        data = text.read_bytes()
    except OSError as err:
        log.warning("caption %s cannot be read (%s): captioned by its name instead", text, err)
        return fallback, False
    try:
        return data.decode("utf-8").strip(), True
    except UnicodeDecodeError as err:
        log.warning("caption %s is not UTF-8 (%s): undecodable bytes replaced by U+FFFD", text, err.reason)
        return data.decode("utf-8", errors="replace").strip(), False


# -- shared helpers ----------------------------------------------------------------------------


def _first_dir(root: Path, name: str) -> Path:
    """``root/name`` if it is a folder, else ``root`` itself."""
    return root / name if (root / name).is_dir() else root


def _video_index(root: Path) -> dict[str, Path]:
    """Video files under ``root`` by stem (the first, in sorted order, wins)."""
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            index.setdefault(path.stem, path)
    return index


def _open_text(path: Path) -> Any:
    try:
        return path.open(encoding="utf-8", newline="")
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err}") from None


def _lines(path: Path) -> Iterator[str]:
    """The non-blank, stripped lines of a text file."""
    with _open_text(path) as file:
        yield from (line.strip() for line in file if line.strip())


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read {path} as JSON: {err}") from None
