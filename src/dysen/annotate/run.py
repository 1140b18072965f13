"""The resumable, sharded annotation run (package docstring): one flushed JSONL line per video."""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dysen.data.datasets.base import VideoRecord
from dysen.dsg import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.planner.backends.redact import redact

log = logging.getLogger(__name__)

DEFAULT_STEPS = 8
"""M, time steps per video (the Dynamic Shapes and rules-planner default)."""

Annotator = Callable[[VideoRecord], DynamicSceneGraph]


class AnnotateError(DysenError):
    """A video could not be annotated, or the annotation run was set up wrongly."""


@dataclass(frozen=True)
class AnnotateReport:
    """What a run did: videos in its shard, already done before it, annotated now, failed now."""

    total: int
    already_done: int
    annotated: int
    failed: int


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with 1 <= i <= n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise AnnotateError(f"--shard must look like 1/4 (shard i of n, 1 <= i <= n), got {text!r}")
    return int(match[1]), int(match[2])


def in_shard(video_id: str, shard: tuple[int, int]) -> bool:
    """Whether ``video_id`` belongs to shard ``(i, n)``: CRC-32 of the id is i - 1 modulo n."""
    return zlib.crc32(video_id.encode("utf-8")) % shard[1] == shard[0] - 1


def annotate(
    records: Sequence[VideoRecord],
    annotator: Annotator,
    out: str | os.PathLike,
    *,
    source: str,
    shard: tuple[int, int] = (1, 1),
    concurrency: int = 1,
    progress: bool = True,
) -> AnnotateReport:
    """Annotate the records of ``shard`` not yet done in ``out``, appending a line per video (module docstring)."""
    if concurrency < 1:
        raise AnnotateError(f"concurrency must be >= 1, got {concurrency}")
    path = Path(out)
    mine = [r for r in records if in_shard(r.id, shard)]
    done = _done_ids(path)
    pending = [r for r in mine if r.id not in done]
    failed = 0
    bar = tqdm(total=len(mine), initial=len(mine) - len(pending), desc=f"annotating ({source})", unit="video",
               disable=not progress)  # fmt: skip
    with bar, _appender(path) as write, ThreadPoolExecutor(concurrency, thread_name_prefix="dysen-annotate") as pool:
        futures = [pool.submit(_annotate_one, annotator, record, source) for record in pending]
        try:
            for future in as_completed(futures):
                result = future.result()
                write(result)
                failed += result["dsg"] is None
                bar.set_postfix(failed=failed, refresh=False)
                bar.update(1)
        finally:
            for future in futures:
                future.cancel()
    return AnnotateReport(len(mine), len(mine) - len(pending), len(pending) - failed, failed)


def _annotate_one(annotator: Annotator, record: VideoRecord, source: str) -> dict[str, Any]:
    try:
        return {"id": record.id, "dsg": annotator(record).to_dict(), "source": source}
    except Exception as err:  # recorded, not raised: one bad video must not stop the run
        message = redact(str(err))  # a server's words may quote the request's key
        log.warning("%s failed: %s", record.id, message, exc_info=not isinstance(err, DysenError))
        return {"id": record.id, "dsg": None, "source": source, "error": f"{type(err).__name__}: {message}"}


def _done_ids(path: Path) -> set[str]:
    """Ids whose latest record in ``path`` holds a DSG; unreadable lines (a killed run) are ignored."""
    if not path.exists():
        return set()
    latest: dict[str, bool] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
                latest[str(record["id"])] = record.get("dsg") is not None
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
    return {id_ for id_, ok in latest.items() if ok}


@contextmanager
def _appender(path: Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A function appending one flushed JSON line to ``path``; a line cut short by a kill is closed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as file:
        if file.tell() > 0:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                file.write(b"\n")

        def write(record: dict[str, Any]) -> None:
            file.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            file.flush()

        yield write
