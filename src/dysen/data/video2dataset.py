"""video2dataset's webdataset output (WebVid as downloaded today), read in place: no conversion step.

WebVid's own CSV and video links were withdrawn in 2024 (eval_data.md §5.1); it is now fetched with
video2dataset (``--output-format webdataset``). What that writes, as read in its source (iejMac/video2dataset
at 28e7d1c, Feb 2024: ``data_writer.py`` ``WebDatasetSampleWriter``, ``workers/download_worker.py``,
``logger.py`` ``write_stats``, ``main.py``, ``input_sharder.py``, the README's "Output format"):

* Per shard, in the output folder: ``{shard}.tar``, ``{shard}.parquet`` and ``{shard}_stats.json``, where
  ``{shard}`` is the shard number zero-padded to ``oom_shard_count`` digits (5 by default: ``00000``). The
  tar is written in place as samples arrive; the stats file only after the tar is closed, and video2dataset
  itself treats a shard with a stats file as done (its ``incremental`` mode), so a tar without one was cut
  short (a killed or still-running download).
* In a tar, every input row gives a sample whose key is the shard number times 10^ceil(log10(samples per
  shard)) plus the row index, zero-padded (``00000042``); clipping appends ``_{clip:05d}``. Its members,
  written by webdataset's ``TarWriter`` in sorted order: ``KEY.json``, ``KEY.mp4`` (the ``video`` modality
  under ``encode_formats``, mp4 by default), ``KEY.txt``.
* ``KEY.txt`` is the caption column (``--caption_col``, renamed ``caption``), or an empty text when a row has
  none; it is absent when no caption column was given.
* ``KEY.json`` (indented JSON) holds the saved columns (``--save_additional_columns``, for WebVid
  ``videoid``, ``page_idx``, ``page_dir``, ``duration``), ``caption``, ``url`` (renamed from ``--url_col``),
  ``key``, ``status`` ("success", "failed_to_download" or "failed_to_subsample"), ``error_message`` and
  ``yt_meta_dict``; clipping adds ``clips``.
* A row that failed is still written, as ``KEY.json`` + ``KEY.txt`` with no video and its failure status.
* ``{shard}.parquet`` holds the same per-sample metadata as the ``.json`` members (the writer writes one dict
  to both), and ``{shard}_stats.json`` the shard's counts: ``count``, ``successes``, ``failed_to_download``,
  ``failed_to_subsample``, ``status_dict`` and timings.

So dysen reads the tars and the stats files and never the parquet: everything in it is in the tars too, and
pyarrow is not needed. A sample's id is WebVid's ``videoid`` when the json has one (plus the clip suffix of
clipped samples), else video2dataset's ``key``; its caption is the ``.txt``, else the json's ``caption``.

Samples that video2dataset failed to download are not items: they are counted (by status) and left out,
reported once per folder (from the tars when indexing, from the stats files when streaming). A downloaded
sample that cannot be used (no caption, no video member, unreadable json, cut short by the end of its tar, a
video that does not decode) is skipped and counted like any bad video (``VideoTextDataset``, ``collate``).

Tars are walked with the standard library's ``tarfile``, as webdataset's ``tar_file_iterator`` does, but by
this module, because a member cut short by the end of the file must be reported as its sample, which
webdataset's exception handlers cannot do; webdataset still splits, orders and shuffles the tars and samples
(``ShardDataset``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm
from webdataset.tariterators import base_plus_ext

from dysen.data.datasets.base import ClipSampling, DatasetError, TarMember, VideoRecord, bytes_file, read_clip
from dysen.data.shards import ShardDataset, ShardError
from dysen.dsg import DynamicSceneGraph
from dysen.errors import VideoError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "mov", "avi")
"""Extensions a sample's video member may have (video2dataset's ``encode_formats["video"]``, mp4 by default)."""
SUCCESS = "success"
"""video2dataset's ``status`` of a downloaded sample."""
_SHARD_STEM = re.compile(r"\d+")


def find_tars(folder: str | os.PathLike) -> list[Path]:
    """video2dataset's tars in ``folder`` (names all digits, e.g. ``00000.tar``), in order."""
    return sorted(p for p in Path(folder).glob("*.tar") if _SHARD_STEM.fullmatch(p.stem) and p.is_file())


def find_download(root: str | os.PathLike, split: str) -> Path | None:
    """The folder holding a video2dataset download: ``root/split`` if it has tars, else ``root`` if it has."""
    for folder in (Path(root) / split, Path(root)):
        if folder.is_dir() and find_tars(folder):
            return folder
    return None


# -- what video2dataset said about its download -----------------------------------------------------


@dataclass(frozen=True)
class DownloadStats:
    """The counts of video2dataset's ``{shard}_stats.json`` files, summed over the finished tars."""

    tars: int
    unfinished: tuple[str, ...]
    """Tars without a stats file (video2dataset was killed, or is still writing them)."""
    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_subsample: int = 0

    def summary(self) -> str:
        text = (
            f"{self.tars - len(self.unfinished)} of {self.tars} tars finished by video2dataset: {self.count} rows, "
            f"{self.successes} downloaded, {self.failed_to_download} failed to download and "
            f"{self.failed_to_subsample} failed to subsample (left out)"
        )
        if self.unfinished:
            more = " ..." if len(self.unfinished) > 3 else ""
            text += f"; no _stats.json for {', '.join(self.unfinished[:3])}{more} (read up to where each ends)"
        return text


def read_stats(tars: Sequence[Path]) -> DownloadStats:
    """The summed ``_stats.json`` of ``tars``; a tar whose stats file is missing or unreadable is unfinished."""
    totals: Counter[str] = Counter()
    unfinished = []
    for tar in tars:
        file = tar.with_name(f"{tar.stem}_stats.json")
        try:
            stats = json.loads(file.read_text(encoding="utf-8"))
            totals.update({k: int(stats.get(k) or 0) for k in ("count", "successes", "failed_to_download",
                                                                "failed_to_subsample")})  # fmt: skip
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError):
            unfinished.append(tar.name)
    return DownloadStats(len(tars), tuple(unfinished), **totals)


# -- samples -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One sample of a video2dataset tar, parsed (module docstring)."""

    id: str
    tar: str
    """The name of the tar it is in."""
    status: str
    """video2dataset's status; anything but "success" means it has no video (left out)."""
    caption: str | None = None
    video: bytes | TarMember | None = None
    """The video's bytes (streaming) or where it is in the tar (indexing)."""
    suffix: str = ".mp4"
    problem: str | None = None
    """Why a downloaded sample cannot be used (skipped and counted)."""

    @property
    def downloaded(self) -> bool:
        return self.status == SUCCESS


def tar_samples(path: Path, *, read_videos: bool = True) -> Iterator[dict[str, Any]]:
    """The samples of the tar at ``path`` in order, as webdataset groups them: members by extension (bytes; a
    video as a ``TarMember`` unless ``read_videos``), plus ``__key__`` and ``__url__``. When the file ends inside a
    member (or is no tar at all), the sample being read is yielded with ``__cut__`` (the reason) and the walk stops.
    """
    current: dict[str, Any] | None = None
    try:
        with tarfile.open(path, mode="r|" if read_videos else "r:") as tar:
            for info in tar:
                key, ext = base_plus_ext(info.name)
                if not info.isreg() or key is None:
                    continue
                if current is not None and key != current["__key__"]:
                    yield current
                    current = None
                current = current or {"__key__": key, "__url__": str(path)}
                ext = ext.lower()
                if ext in VIDEO_EXTENSIONS and not read_videos:
                    current[ext] = TarMember(info.offset_data, info.size, f".{ext}")
                else:
                    current[ext] = tar.extractfile(info).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError) as err:
        yield {"__key__": None, "__url__": str(path), **(current or {}), "__cut__": str(err) or type(err).__name__}
        return
    if current is not None:
        yield current


def parse_sample(raw: Mapping[str, Any]) -> Sample:
    """A sample of ``tar_samples`` as video2dataset meant it: id, status, caption, video (module docstring)."""
    tar = Path(raw["__url__"]).name
    key = raw.get("__key__")
    if "__cut__" in raw and key is None:
        return Sample(f"{tar}:end", tar, SUCCESS, problem=f"{tar} cannot be read: {raw['__cut__']}")
    meta, problem = _meta(raw)
    status = str(meta.get("status") or SUCCESS)
    if not status.startswith("failed_to_"):
        status = SUCCESS  # a status other than video2dataset's failures (an older writer's "ok"): judge by members
    ext = next((e for e in VIDEO_EXTENSIONS if e in raw), None)
    caption = _caption(raw, meta)
    if "__cut__" in raw:
        problem = f"cut short by the end of {tar} ({raw['__cut__']})"
    elif problem is None and ext is None:
        problem = f"no video member in {tar} though video2dataset's status is {status!r}"
    elif problem is None and caption is None:
        problem = "no caption (an empty .txt and no 'caption' in its .json)"
    video = raw[ext] if ext is not None else None
    return Sample(_sample_id(key, meta), tar, status, caption, video, f".{ext or 'mp4'}", problem)


def _meta(raw: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The sample's ``.json`` as a dict, and a problem when it is there but unreadable."""
    if "json" not in raw:
        return {}, None
    try:
        meta = json.loads(raw["json"])
    except (UnicodeDecodeError, ValueError) as err:
        return {}, f"its .json is not JSON ({err})"
    return (meta, None) if isinstance(meta, dict) else ({}, "its .json is not an object")


def _caption(raw: Mapping[str, Any], meta: Mapping[str, Any]) -> str | None:
    text = raw["txt"].decode("utf-8", errors="replace").strip() if "txt" in raw else ""
    if not text and isinstance(meta.get("caption"), str):
        text = meta["caption"].strip()
    return text or None


def _sample_id(key: str, meta: Mapping[str, Any]) -> str:
    """WebVid's ``videoid`` (+ the ``_NNNNN`` clip suffix of a clipped sample), else video2dataset's key."""
    videoid = meta.get("videoid")
    if isinstance(videoid, float) and videoid.is_integer():
        videoid = int(videoid)  # a CSV column read as floats
    if isinstance(videoid, (int, str)) and not isinstance(videoid, bool) and str(videoid).strip():
        key_of = str(meta.get("key") or key)
        return str(videoid).strip() + (f"_{key_of.rpartition('_')[2]}" if "_" in key_of else "")
    return str(meta.get("key") or key)


# -- a map-style dataset's records -----------------------------------------------------------------


def video2dataset_records(folder: str | os.PathLike) -> list[VideoRecord]:
    """One record per downloaded sample of the tars in ``folder``; each video is a ``TarMember`` of its tar.

    Indexing reads every member header and the small members (captions, json), not the videos. Samples that
    cannot be used keep a record with its ``problem`` (skipped and counted when drawn); the ones video2dataset
    failed to download get none, and are counted in the log."""
    folder = Path(folder)
    tars = find_tars(folder)
    records: list[VideoRecord] = []
    failed: Counter[str] = Counter()
    for tar in tqdm(tars, desc="indexing video2dataset tars", unit="tar", disable=len(tars) < 20):
        for raw in tar_samples(tar, read_videos=False):
            sample = parse_sample(raw)
            if not sample.downloaded:
                failed[sample.status] += 1
                continue
            member = sample.video if isinstance(sample.video, TarMember) else None
            captions = (sample.caption,) if sample.caption else ()
            records.append(VideoRecord(sample.id, tar, captions, member=member, problem=sample.problem))
    if not records:
        raise DatasetError(f"no downloaded video in the video2dataset tars of {folder} (left out: {dict(failed)})")
    bad = sum(r.problem is not None for r in records)
    not_downloaded = ", ".join(f"{status} {n}" for status, n in sorted(failed.items())) or "none"
    stats = read_stats(tars)
    log.log(
        logging.WARNING if failed or bad or stats.unfinished else logging.INFO,
        "video2dataset download %s: %d samples in %d tars (%d cannot be used: skipped and counted when drawn); "
        "not downloaded by video2dataset, left out: %s%s", folder, len(records), len(tars), bad, not_downloaded,
        f"; no _stats.json for {len(stats.unfinished)} tars (read up to where each ends)" if stats.unfinished else "",
    )  # fmt: skip
    return records


# -- a stream ------------------------------------------------------------------------------------


class Video2DatasetStream(ShardDataset):
    """A video2dataset download as a stream: its tars split over ranks and workers and shuffled as
    ``ShardDataset``'s, each downloaded video cut into a clip by ``sampling`` (module docstring)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        sampling: ClipSampling,
        *,
        gold: Mapping[str, DynamicSceneGraph] | str | os.PathLike | None = None,
        shuffle: int = 0,
        seed: int = 0,
    ) -> None:
        """``sampling.train``: windows drawn by (seed, epoch, id), else centred; ``gold``: DSGs by id."""
        tars = find_tars(folder)
        if not tars:
            raise ShardError(f"no video2dataset tars (NNNNN.tar) in {folder}")
        super().__init__(tars, shuffle=shuffle, seed=seed, gold=gold)
        self.sampling = sampling
        self.stats = read_stats(tars)
        if not self.stats.unfinished and not self.stats.successes:
            raise ShardError(f"video2dataset downloaded no video into {folder}: {self.stats.summary()}")
        noted = self.stats.failed_to_download + self.stats.failed_to_subsample + len(self.stats.unfinished)
        log.log(logging.WARNING if noted else logging.INFO, "%s: %s", folder, self.stats.summary())

    def _samples(self, urls: Iterator[str]) -> Iterator[Sample]:
        for url in urls:
            failed: Counter[str] = Counter()
            for raw in tar_samples(Path(url)):
                sample = parse_sample(raw)
                if sample.downloaded:
                    yield sample
                else:
                    failed[sample.status] += 1
            if failed:
                log.info("%s: left out %s (not downloaded by video2dataset)", url, dict(failed))

    def _decode(self, sample: Sample) -> dict[str, Any] | None:
        """The clip of a parsed sample, or None (logged) when it cannot be used."""
        epoch = self.epoch if self.sampling.train else 0
        rng = np.random.default_rng((self.sampling.seed, epoch, zlib.crc32(sample.id.encode())))
        try:
            if sample.problem is not None or not isinstance(sample.video, bytes):
                raise VideoError(sample.problem or "no video")
            with bytes_file(sample.video, sample.suffix, f"{sample.tar}-{sample.id}") as path:
                video = read_clip(path, self.sampling, rng)  # [3, T, S, S]
        except VideoError as err:
            log.warning("skipping %s: %s", sample.id, err)
            return None
        return {"video": video, "caption": sample.caption, "dsg": None, "id": sample.id}
