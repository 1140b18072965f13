"""The one map-style dataset behind every real corpus: records in, clips + captions + gold DSGs out.

Each format module (``formats.py``) turns a corpus on disk into ``VideoRecord``s; ``VideoTextDataset``
turns a record into the item every part of dysen expects (the same dict as ``ShapesDataset``)::

    {"video": float32 [3, T, H, W] in [-1, 1], "caption": str, "dsg": DynamicSceneGraph | None, "id": str}

Clip sampling (``ClipSampling``; eval_data.md §5.5): T frames ``stride`` apart, the window placed at
random in training (a generator seeded by (seed, epoch, index), so every worker and every rerun agrees)
and centred in evaluation; ``stride=None`` spreads the T frames over the whole video instead (stride
n // T for n frames, centred: within one stride of the ends), which is what DSGs whose time base is the
whole video (ActivityNet, ``dysen dsg annotate``) need. Short videos repeat their last frame. Then a
short-side resize and a centre crop. A record with several captions (MSR-VTT's 20) yields one, drawn
by the same seeded generator: fixed per item in evaluation (the "one random caption per test video"
protocol), redrawn every epoch in training.

Gold DSGs are read, never made: a side file (JSONL of ``{"id", "dsg"}``, what ``dysen dsg annotate``
writes) joined by id, else the record's own DSG (Dynamic Shapes), else None. A corpus without either
(ActivityNet's timestamped sentences, captions) is annotated first: ``dysen dsg annotate`` (module
``dysen.annotate``) writes the side file, passed here as ``gold``; training refuses items without one.

Bad videos never crash a ``DataLoader``. An item whose video is missing, truncated or not a video is
logged and returned as None; ``collate`` drops the Nones and puts their number in ``batch["skipped"]``,
so the count travels back from worker processes with the batch it belongs to; ``SkipTally`` sums it
over an epoch and logs a summary at the end. ``VideoTextDataset.scan()`` is the alternative pre-pass:
it probes every file once, reports the bad ones and drops them, so that no batch comes up short.
A record can also be known bad before any decoding (``problem``: no caption, a sample cut short by the end
of its tar); its item is None and counted the same way.

A video need not be a file of its own: a record with a ``member`` is a byte range of the tar at ``path``
(video2dataset's WebVid download, ``dysen.data.video2dataset``), copied to a temporary file when read
(``video_file``), because the decoder (``dysen.data.video``) reads files.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dysen.data.video import probe, read_video
from dysen.dsg import DynamicSceneGraph
from dysen.errors import DSGError, DysenError, VideoError

log = logging.getLogger(__name__)


class DatasetError(DysenError):
    """A dataset's annotations or layout on disk are not what its format says."""


@dataclass(frozen=True)
class ClipSampling:
    """How a clip is cut from a video (module docstring); the defaults are LVDM/Dysen's (eval_data.md §5.5)."""

    num_frames: int = 16
    """T, frames per clip."""
    stride: int | None = 1
    """Frames between samples; None spreads the T frames evenly over the whole video."""
    size: int | None = 256
    """Short side after resizing, then centre-cropped to size x size; None keeps the original frames."""
    train: bool = False
    """Random window start and caption (seeded by seed, epoch, index) instead of centred and fixed."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or any(value is not None and value < 1 for value in (self.stride, self.size)):
            raise DatasetError(f"ClipSampling needs num_frames, stride and size >= 1, got {self}")


@dataclass(frozen=True)
class Segment:
    """One timestamped sentence of a video (ActivityNet Captions), in seconds; spans may overlap."""

    start_s: float
    end_s: float
    sentence: str


@dataclass(frozen=True, slots=True)
class TarMember:
    """A video stored inside a tar file: its data's byte range there (``TarInfo.offset_data``, ``size``)."""

    offset: int
    size: int
    suffix: str
    """The member's extension with its dot, e.g. ".mp4" (the temporary copy is named with it)."""


@dataclass(frozen=True, slots=True)
class VideoRecord:
    """One video of a corpus: where it is, what is said about it, and any gold it ships with."""

    id: str
    path: Path
    captions: tuple[str, ...]
    dsg: DynamicSceneGraph | None = None
    label: int | None = None
    """Class index, 0-based (UCF-101)."""
    duration_s: float | None = None
    """Annotated duration, the time base of ``segments``."""
    segments: tuple[Segment, ...] = ()
    member: TarMember | None = None
    """The video is this member of the tar at ``path``, not the whole file."""
    problem: str | None = None
    """Why this record cannot load, known from the annotations alone; its item is None (skipped, counted)."""


class VideoTextDataset(Dataset):
    """Items of ``records`` as ``{"video", "caption", "dsg", "id"}``, or None for a bad video (module docstring)."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampling: ClipSampling = ClipSampling(),
        gold: Mapping[str, DynamicSceneGraph] | str | os.PathLike | None = None,
    ) -> None:
        self.records = list(records)
        self.sampling = sampling
        self.gold = read_gold(gold) if isinstance(gold, (str, os.PathLike)) else dict(gold or {})
        self.epoch = 0
        self.skipped = 0
        """Items this process returned as None (per worker; see ``collate`` for the total)."""

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Draw new windows and captions in training (call before each epoch's DataLoader iteration)."""
        self.epoch = epoch

    def item_id(self, index: int) -> str:
        return self.records[index].id

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        record = self.records[index]
        rng = np.random.default_rng((self.sampling.seed, self.epoch if self.sampling.train else 0, index))
        try:
            if record.problem is not None:
                raise VideoError(record.problem)
            with video_file(record) as path:
                video = read_clip(path, self.sampling, rng)
        except VideoError as err:
            self.skipped += 1
            log.warning("skipping %s: %s", record.id, err)
            return None
        return {"video": video, "caption": self._caption(record, rng), "dsg": self.dsg_of(record), "id": record.id}

    def dsg_of(self, record: VideoRecord) -> DynamicSceneGraph | None:
        """The gold DSG of ``record``: the side file's, then its own; else None (run ``dysen dsg annotate``)."""
        return self.gold.get(record.id, record.dsg)

    def _caption(self, record: VideoRecord, rng: np.random.Generator) -> str:
        if len(record.captions) == 1:
            return record.captions[0]
        return record.captions[int(rng.integers(len(record.captions)))]

    def scan(self, progress: bool = True) -> list[tuple[str, str]]:
        """Probe every video once; drop the records that fail and return their (id, reason), in order."""
        bad, good = [], []
        for record in tqdm(self.records, desc="scanning videos", unit="video", disable=not progress):
            try:
                if record.problem is not None:
                    raise VideoError(record.problem)
                with video_file(record) as path:
                    probe(path)
                good.append(record)
            except VideoError as err:
                bad.append((record.id, str(err)))
        self.records = good
        if bad:
            log.warning("scan dropped %d of %d videos, e.g. %s: %s", len(bad), len(good) + len(bad), *bad[0])
        return bad


def read_clip(path: Path, sampling: ClipSampling, rng: np.random.Generator) -> torch.Tensor:
    """The clip ``sampling`` cuts from the video at ``path`` (window drawn with ``rng``), float ``[3, T, S, S]``."""
    start, stride = clip_window(probe(path).num_frames, sampling, rng)
    frames, size = sampling.num_frames, sampling.size
    return read_video(path, start=start, num_frames=frames, stride=stride, size=size, output="float", pad=True)


@contextmanager
def video_file(record: VideoRecord) -> Iterator[Path]:
    """A file holding ``record``'s video: its own path, or a temporary copy of its tar member.

    ``VideoError`` when the member cannot be read whole (the tar was cut short, or is gone)."""
    if record.member is None:
        yield record.path
        return
    member = record.member
    try:
        with record.path.open("rb") as tar:
            tar.seek(member.offset)
            data = tar.read(member.size)
    except OSError as err:
        raise VideoError(f"cannot read {record.id}'s video from {record.path}: {err}") from None
    if len(data) != member.size:
        raise VideoError(f"{record.id}'s video is cut short in {record.path} ({len(data)} of {member.size} bytes)")
    with bytes_file(data, member.suffix, f"{record.path.name}-{record.id}") as path:
        yield path


@contextmanager
def bytes_file(data: bytes, suffix: str, name: str = "video") -> Iterator[Path]:
    """``data`` in a temporary file named ``dysen-{name}-*{suffix}`` (errors name it), deleted on exit."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]
    with tempfile.NamedTemporaryFile(prefix=f"dysen-{safe}-", suffix=suffix) as file:
        file.write(data)
        file.flush()
        yield Path(file.name)


def clip_window(total: int, sampling: ClipSampling, rng: np.random.Generator) -> tuple[int, int]:
    """``(start, stride)`` of a clip of ``sampling.num_frames`` frames from a video of ``total`` frames."""
    count = sampling.num_frames
    stride = sampling.stride if sampling.stride is not None else max(1, total // count)
    slack = total - ((count - 1) * stride + 1)  # frames left over by the window; < 0 means padding
    if slack <= 0:
        return 0, stride
    return (int(rng.integers(slack + 1)) if sampling.train else slack // 2), stride


def collate(items: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Batch the good items (video ``[B, 3, T, H, W]``, lists of the rest); ``skipped`` counts the Nones.

    ``video`` is None when every item of the batch failed; ``latents`` (from shards) are stacked when present.
    """
    given = list(items)
    good = [item for item in given if item is not None]
    batch = {
        "video": torch.stack([item["video"] for item in good]) if good else None,  # [B, 3, T, H, W]
        "caption": [item["caption"] for item in good],
        "dsg": [item["dsg"] for item in good],
        "id": [item["id"] for item in good],
        "skipped": len(given) - len(good),
    }
    if good and all("latents" in item for item in good):
        batch["latents"] = torch.stack([item["latents"] for item in good])  # [B, C, t, h, w]
    return batch


@dataclass
class SkipTally:
    """Items seen and skipped over an epoch, summed from batches (whichever worker made them)."""

    name: str = "data"
    seen: int = 0
    skipped: int = 0

    def update(self, batch: Mapping[str, Any]) -> None:
        self.seen += len(batch["id"]) + batch["skipped"]
        self.skipped += batch["skipped"]

    def summary(self) -> str:
        return f"{self.name}: {self.seen - self.skipped} of {self.seen} items loaded, {self.skipped} skipped"

    def log(self) -> None:
        """Log the summary: a warning when anything was skipped, else info."""
        log.log(logging.WARNING if self.skipped else logging.INFO, self.summary())


def read_gold(path: str | os.PathLike) -> dict[str, DynamicSceneGraph]:
    """Gold DSGs by id from a JSONL of ``{"id", "dsg"}`` records; records without a DSG are left out.

    The later record of an id wins; an unreadable line (a run killed mid-write) is skipped with a warning.
    """
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"gold DSG file {file} does not exist; write one with 'dysen dsg annotate'")
    gold: dict[str, DynamicSceneGraph] = {}
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if record.get("dsg") is not None:
                    gold[str(record["id"])] = DynamicSceneGraph.from_dict(record["dsg"])
            except (json.JSONDecodeError, AttributeError, KeyError, DSGError) as err:
                log.warning("%s:%d: skipping an unreadable gold record (%s)", file, number, err)
    return gold
