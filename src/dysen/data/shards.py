"""WebDataset shards: clip corpora of millions of videos as sequential tar files, written and read back.

Decoding one random window of a long mp4 costs tens of milliseconds and a random seek per clip
(eval_data.md §6); at WebVid scale (§5.1) training reads shards instead: tar files of ready-cut clips,
read sequentially, split over DDP ranks and DataLoader workers, shuffled in a buffer.

**Format** (one sample per clip, WebDataset's "files sharing a key" convention; ``webdataset`` does the
tar encoding and the reading)::

    000003-000017.mp4 | .npy        the clip: H.264 mp4 bytes, or uint8 [T, H, W, 3] as .npy (exact)
    000003-000017.txt               the caption (UTF-8)
    000003-000017.json              {"id": the dataset's id}
    000003-000017.dsg.json          the gold DSG, when there is one
    000003-000017.latents.safetensors   {"latents": tensor}, when pre-encoded latents were asked for

Shards are ``{prefix}-%06d.tar``, cut after ``max_count`` clips or ``max_bytes`` bytes. **Resumable**:
a shard is written to a hidden temporary file and renamed when complete, then its sidecar
``{prefix}-%06d.json`` (count, bytes, ids) is written atomically; videos that fail are listed in
``{prefix}-skipped.txt``. A rerun discards temporary files, skips every id listed in a sidecar or the
skipped list, and continues with the next shard number. Readers only see shards with a sidecar.
(webdataset's own ``ShardWriter`` writes in place, so a killed run leaves a truncated tar under the
final name, and it has no notion of ids to resume by; here only its ``TarWriter`` is used.)

**Reading** (``ShardDataset``, an ``IterableDataset``): the shard list, shuffled by (seed, epoch) when
shuffling (the same order on every rank), is split with ``webdataset.split_by_node`` (DDP ranks, from
``RANK``/``WORLD_SIZE`` or ``torch.distributed``) then ``split_by_worker`` (DataLoader workers), so each
shard is read by exactly one (rank, worker); samples then pass a shuffle buffer seeded by (seed, epoch,
rank, worker); the buffer holds the samples' bytes, decoded as they leave it. Items are the map-style
datasets' dict (plus ``latents``), their DSG replaced by a ``gold`` side file's where it has one; a
sample that does not decode is yielded as None, which ``collate`` drops and counts. Ranks get whole
shards, so for DDP write at least ranks x workers shards of equal size (``max_count``) and stop an
epoch at the same step on every rank.

``open_shards`` opens a folder of these, or else video2dataset's output (``dysen.data.video2dataset``:
WebVid as downloaded today), whose whole videos are cut into clips as they are read.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
import webdataset as wds
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch.utils.data import DataLoader, IterableDataset, Subset
from tqdm.auto import tqdm

from dysen.atomic import write_text_atomic
from dysen.data.datasets.base import ClipSampling, VideoTextDataset, read_gold
from dysen.data.video import frames_to_model, model_to_frames, write_video
from dysen.dsg import DynamicSceneGraph
from dysen.errors import DysenError, VideoError

log = logging.getLogger(__name__)

Latents = Callable[[torch.Tensor], torch.Tensor]
"""Video float ``[3, T, H, W]`` in [-1, 1] -> its latents (e.g. a VAE's encode)."""


class ShardError(DysenError):
    """Shards cannot be written or found where they were asked for."""


@dataclass(frozen=True)
class ShardOptions:
    """How clips are written into shards."""

    prefix: str = "shard"
    """Shard files are ``{prefix}-%06d.tar`` with sidecars ``{prefix}-%06d.json``."""
    max_count: int = 1000
    """Clips per shard."""
    max_bytes: int = 1 << 30
    """A shard is closed once it holds this many bytes of payload."""
    video_format: Literal["mp4", "npy"] = "mp4"
    """mp4: H.264 bytes (small, lossy at ``crf``); npy: uint8 frames, exact and about 20x larger."""
    fps: float = 8.0
    """Frame rate written into mp4 clips."""
    crf: int = 18

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.max_bytes < 1 or self.video_format not in ("mp4", "npy"):
            raise ShardError(f"ShardOptions needs max_count, max_bytes >= 1 and video_format mp4|npy, got {self}")


@dataclass(frozen=True)
class ShardReport:
    """What ``write_shards`` did: clips written now, videos skipped now, ids already in earlier shards."""

    written: int
    skipped: int
    already_done: int
    shards: tuple[Path, ...]
    """Every complete shard in the folder, in order."""


# -- writing -------------------------------------------------------------------------------------


def write_shards(
    dataset: VideoTextDataset,
    out_dir: str | os.PathLike,
    options: ShardOptions = ShardOptions(),
    *,
    latents: Latents | None = None,
    workers: int = 0,
    progress: bool = True,
) -> ShardReport:
    """Write every item of ``dataset`` not already in ``out_dir``'s shards (module docstring).

    ``dataset`` is any map-style dataset of the dysen item dict with ``item_id(index)``; ``workers``
    DataLoader processes decode videos while this process encodes and writes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".{options.prefix}-*.tmp"):
        stale.unlink()
    done = {id_ for sidecar in _sidecars(out, options.prefix) for id_ in sidecar["ids"]} | _skipped_ids(out, options)
    pending = [i for i in range(len(dataset)) if dataset.item_id(i) not in done]
    loader = DataLoader(Subset(dataset, pending), batch_size=None, num_workers=workers, collate_fn=_as_is)
    written = skipped = 0
    bar = tqdm(total=len(pending), desc="writing shards", unit="clip", disable=not progress)
    with bar, _ShardSink(out, options, latents) as sink:
        for index, item in zip(pending, loader, strict=True):
            if item is None:
                sink.skip(dataset.item_id(index))
                skipped += 1
            else:
                sink.add(item)
                written += 1
            bar.update(1)
    return ShardReport(written, skipped, len(done), tuple(find_shards(out, options.prefix)))


def _as_is(item: Any) -> Any:
    return item


class _ShardSink:
    """Appends samples to the open shard, closing it (rename + sidecar) when full and on exit."""

    def __init__(self, out: Path, options: ShardOptions, latents: Latents | None) -> None:
        self.out, self.options, self.latents = out, options, latents
        self.number = max((s["shard"] for s in _sidecars(out, options.prefix)), default=-1) + 1
        self.file: BinaryIO | None = None
        self.tar: wds.TarWriter | None = None
        self.ids: list[str] = []
        self.size = 0
        self.scratch = tempfile.TemporaryDirectory(prefix="dysen-shards-")

    def __enter__(self) -> _ShardSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.tar is not None:
                self._close_shard()
        finally:
            self.scratch.cleanup()

    def add(self, item: dict[str, Any]) -> None:
        if self.tar is None:
            self.file = self._path(".tmp").open("wb")
            self.tar = wds.TarWriter(self.file, encoder=False)
        self.size += self.tar.write(self._sample(item, key=f"{self.number:06d}-{len(self.ids):06d}"))
        self.ids.append(item["id"])
        if len(self.ids) >= self.options.max_count or self.size >= self.options.max_bytes:
            self._close_shard()

    def skip(self, item_id: str) -> None:
        with (self.out / f"{self.options.prefix}-skipped.txt").open("a", encoding="utf-8") as file:
            file.write(item_id + "\n")

    def _path(self, suffix: str) -> Path:
        name = f"{self.options.prefix}-{self.number:06d}"
        return self.out / (f".{name}{suffix}" if suffix == ".tmp" else f"{name}{suffix}")

    def _close_shard(self) -> None:
        assert self.tar is not None and self.file is not None
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self._path(".tmp"), self._path(".tar"))
        sidecar = {"shard": self.number, "tar": self._path(".tar").name, "count": len(self.ids), "bytes": self.size}
        write_text_atomic(self._path(".json"), json.dumps({**sidecar, "ids": self.ids}) + "\n")
        self.tar, self.ids, self.size, self.number = None, [], 0, self.number + 1

    def _sample(self, item: dict[str, Any], key: str) -> dict[str, Any]:
        """The tar members of one clip (module docstring), as bytes."""
        frames = model_to_frames(item["video"]).numpy()  # [T, H, W, 3] uint8
        sample = {"__key__": key, "json": json.dumps({"id": item["id"]}).encode(), "txt": item["caption"].encode()}
        if self.options.video_format == "npy":
            buffer = io.BytesIO()
            np.save(buffer, frames, allow_pickle=False)
            sample["npy"] = buffer.getvalue()
        else:
            clip = write_video(Path(self.scratch.name) / "clip.mp4", frames, self.options.fps, crf=self.options.crf)
            sample["mp4"] = clip.read_bytes()
        if item["dsg"] is not None:
            sample["dsg.json"] = item["dsg"].to_json().encode()
        if self.latents is not None:
            with torch.no_grad():
                encoded = self.latents(item["video"]).detach().cpu().contiguous()
            sample["latents.safetensors"] = save_safetensors({"latents": encoded})
        return sample


def _sidecars(out: Path, prefix: str) -> list[dict[str, Any]]:
    """The sidecars of complete shards (tar present), in shard order."""
    found = []
    for path in sorted(out.glob(f"{prefix}-[0-9]*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if (out / record["tar"]).is_file():
            found.append(record)
    return found


def _skipped_ids(out: Path, options: ShardOptions) -> set[str]:
    path = out / f"{options.prefix}-skipped.txt"
    return set(path.read_text(encoding="utf-8").split("\n")) - {""} if path.is_file() else set()


def find_shards(out_dir: str | os.PathLike, prefix: str = "shard") -> list[Path]:
    """The complete shards (those with a sidecar) in ``out_dir``, in order."""
    out = Path(out_dir)
    return [out / record["tar"] for record in _sidecars(out, prefix)]


# -- reading -------------------------------------------------------------------------------------


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """A WebDataset sample (members by extension, as bytes) -> the dysen item dict; ``DysenError`` if broken."""
    try:
        if "npy" in sample:
            frames = np.load(io.BytesIO(sample["npy"]), allow_pickle=False)  # [T, H, W, 3] uint8
        else:
            frames = decode_mp4(sample["mp4"])
        item = {
            "video": frames_to_model(torch.from_numpy(frames)),  # [3, T, H, W]
            "caption": sample["txt"].decode("utf-8"),
            "dsg": DynamicSceneGraph.from_json(sample["dsg.json"]) if "dsg.json" in sample else None,
            "id": json.loads(sample["json"])["id"],
        }
    except (KeyError, ValueError) as err:
        raise ShardError(f"sample {sample.get('__key__')} of {sample.get('__url__')} is incomplete: {err}") from None
    if "latents.safetensors" in sample:
        item["latents"] = load_safetensors(sample["latents.safetensors"])["latents"]
    return item


def decode_mp4(data: bytes) -> np.ndarray:
    """Every frame of an in-memory video, uint8 ``[T, H, W, 3]``; ``VideoError`` if it does not decode."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(f"clip bytes do not decode: {err}") from None
    if not frames:
        raise VideoError("clip bytes hold no frames")
    return np.stack(frames)


def open_shards(
    folder: str | os.PathLike,
    sampling: ClipSampling,
    *,
    gold: Mapping[str, DynamicSceneGraph] | str | os.PathLike | None = None,
    shuffle: int = 0,
    seed: int = 0,
) -> ShardDataset:
    """The shards in ``folder``: dysen's (clips cut when written), else video2dataset's output (whole videos, cut
    into clips by ``sampling`` as they are read); a single tar file is read as dysen's."""
    from dysen.data.video2dataset import Video2DatasetStream, find_tars

    path = Path(folder)
    if not path.exists():
        raise ShardError(f"{path} does not exist: give --shards a folder of shards or a video2dataset download")
    if not path.is_dir() or find_shards(path):
        return ShardDataset(path, shuffle=shuffle, seed=seed, gold=gold)
    if find_tars(path):
        return Video2DatasetStream(path, sampling, gold=gold, shuffle=shuffle, seed=seed)
    raise ShardError(
        f"no shards in {path}: neither dysen's (shard-NNNNNN.tar with a .json sidecar; write them with "
        "'dysen data shards') nor video2dataset's output (NNNNN.tar; see the README's WebVid section)"
    )


class ShardDataset(IterableDataset):
    """Items of WebDataset shards, split over ranks and workers, optionally shuffled (module docstring)."""

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        prefix: str = "shard",
        shuffle: int = 0,
        seed: int = 0,
        gold: Mapping[str, DynamicSceneGraph] | str | os.PathLike | None = None,
    ) -> None:
        """``shards``: a folder (its complete shards), or tar paths; ``shuffle``: buffer size (0 = in order);
        ``gold``: DSGs by id (or their JSONL side file) that replace the samples' own."""
        if isinstance(shards, (str, os.PathLike)) and Path(shards).is_dir():
            self.shards = [str(p) for p in find_shards(shards, prefix)]
        elif isinstance(shards, (str, os.PathLike)):
            self.shards = [str(shards)]
        else:
            self.shards = [str(p) for p in shards]
        if not self.shards:
            raise ShardError(f"no complete shards in {shards}; write some with 'dysen data shards'")
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.gold = read_gold(gold) if isinstance(gold, (str, os.PathLike)) else dict(gold or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.shards)} shards from {self.shards[0]})"

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle shards and samples for ``epoch`` (call before creating the epoch's iterator)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        shards = list(self.shards)
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(shards)  # same order on every rank
        mine = wds.split_by_worker(wds.split_by_node({"url": url} for url in shards))
        samples = self._samples(source["url"] for source in mine)
        if self.shuffle:
            rank, _, worker, _ = wds.utils.pytorch_worker_info()
            seed = int(np.random.SeedSequence([self.seed, self.epoch, rank, worker]).generate_state(1)[0])
            samples = wds.shuffle(self.shuffle, self.shuffle, seed=seed)(samples)
        for sample in samples:
            item = self._decode(sample)
            if item is not None and self.gold:
                item["dsg"] = self.gold.get(item["id"], item["dsg"])
            yield item

    def _samples(self, urls: Iterator[str]) -> Iterator[Any]:
        """The undecoded samples of the tars ``urls``, in order."""
        return wds.tarfile_to_samples(handler=wds.warn_and_continue)({"url": url} for url in urls)

    def _decode(self, sample: Any) -> dict[str, Any] | None:
        """A sample of ``_samples`` as the dysen item dict, or None (logged) when it does not decode."""
        try:
            return decode_sample(sample)
        except DysenError as err:
            log.warning("skipping a shard sample: %s", err)
            return None
