"""Plan many prompts: bounded concurrency, a progress bar, and resumable JSON Lines output.

Dysen plans every caption of a dataset or benchmark with 1 + M + 1 LLM calls each (dysen_spec.md §2.3),
so a run is long, I/O-bound and may be killed. ``plan_many`` runs at most ``concurrency`` plans at once
in a thread pool and, with ``out``, appends one JSON line per prompt as soon as it finishes::

    {"id": "3", "prompt": "...", "dsg": {...}, "error": null}
    {"id": "4", "prompt": "...", "dsg": null, "error": "PlanningError: ..."}

Each line is flushed when written, so a killed run loses only the prompts in flight. Rerunning with the
same ``out`` skips the ids that already have a DSG there and retries the failed ones (the later line for
an id wins); a line cut short by a kill is ignored. A failure is recorded, never raised: one bad prompt
does not stop the batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dysen.dsg import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.planner.types import Planner

log = logging.getLogger(__name__)

PromptItem = str | tuple[str, str]
"""A prompt alone (its id is its position in the list) or an ``(id, prompt)`` pair."""


@dataclass(frozen=True)
class PlanRecord:
    """The outcome of one prompt: its DSG, or the error that stopped it."""

    id: str
    prompt: str
    dsg: DynamicSceneGraph | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "dsg": None if self.dsg is None else self.dsg.to_dict(),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PlanRecord:
        """A record as written by ``to_dict``; ``DysenError`` if it is not one."""
        if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("id", "prompt")):
            raise DysenError("a plan record needs an 'id' and a 'prompt' string")
        dsg = DynamicSceneGraph.from_dict(data["dsg"]) if data.get("dsg") is not None else None
        error = data.get("error")
        if (dsg is None) == (error is None) or (error is not None and not isinstance(error, str)):
            raise DysenError("a plan record needs either a 'dsg' or an 'error' string, not both")
        return cls(data["id"], data["prompt"], dsg, error)


def plan_many(
    planner: Planner,
    prompts: Sequence[PromptItem],
    *,
    concurrency: int = 8,
    out: str | Path | None = None,
    progress: bool = True,
) -> list[PlanRecord]:
    """Plan every prompt (module docstring); the records come back in the order of ``prompts``."""
    if concurrency < 1:
        raise DysenError(f"concurrency must be >= 1, got {concurrency}")
    items = _items(prompts)
    path = Path(out) if out is not None else None
    done = _done_records(path, items) if path is not None else {}
    pending = [(id_, prompt) for id_, prompt in items if id_ not in done]
    bar = tqdm(total=len(items), initial=len(done), disable=not progress, desc="Dysen planning", unit="prompt")
    with bar, _appender(path) as write:
        results = _plan_all(planner, pending, concurrency, write, bar)
    return [done.get(id_) or results[id_] for id_, _ in items]


def read_prompts(path: str | Path) -> list[tuple[str, str]]:
    """Prompts from a file: JSONL records with ``prompt`` (or ``caption``) and optional ``id``, else one per line.

    Ids default to the 1-based line number; blank lines are skipped.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DysenError(f"{path}: no such prompts file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DysenError(f"{path}: cannot read it as UTF-8 text: {err}") from None
    jsonl = path.suffix == ".jsonl"
    items = [_prompt_item(path, number, line, jsonl) for number, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise DysenError(f"{path}: holds no prompts")
    return items


def _prompt_item(path: Path, number: int, line: str, jsonl: bool) -> tuple[str, str]:
    if not jsonl:
        return (str(number), line.strip())
    try:
        record = json.loads(line)
        text = record.get("prompt", record.get("caption"))
    except (json.JSONDecodeError, AttributeError):
        raise DysenError(f"{path}:{number}: not a JSON object") from None
    if not isinstance(text, str):
        raise DysenError(f"{path}:{number}: needs a 'prompt' (or 'caption') string")
    return (str(record.get("id", number)), text)


def _items(prompts: Sequence[PromptItem]) -> list[tuple[str, str]]:
    """``(id, prompt)`` pairs with unique string ids."""
    if isinstance(prompts, str):
        raise DysenError("prompts must be a list of prompts, not one string")
    items = []
    for position, item in enumerate(prompts):
        if isinstance(item, str):
            items.append((str(position), item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            items.append((str(item[0]), item[1]))
        else:
            raise DysenError(f"prompt {position} must be a string or an (id, prompt) pair, got {item!r}")
    ids = [id_ for id_, _ in items]
    if len(set(ids)) != len(ids):
        repeated = sorted({id_ for id_ in ids if ids.count(id_) > 1})
        raise DysenError(f"prompt ids must be unique; repeated: {repeated[:5]}")
    return items


def _done_records(path: Path, items: list[tuple[str, str]]) -> dict[str, PlanRecord]:
    """The records of ``path`` that already hold a DSG for one of ``items``; unreadable lines are skipped."""
    if not path.exists():
        return {}
    latest: dict[str, PlanRecord] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = PlanRecord.from_dict(json.loads(line))
            except (ValueError, DysenError) as err:
                log.warning("%s:%d: skipping an unreadable record (%s)", path, number, err)
                continue
            latest[record.id] = record
    prompts = dict(items)
    for id_, record in latest.items():
        if id_ in prompts and record.prompt != prompts[id_]:
            raise DysenError(
                f"{path} holds id {id_!r} for another prompt ({record.prompt!r}); use a new output file or stable ids"
            )
    return {id_: record for id_, record in latest.items() if id_ in prompts and record.dsg is not None}


@contextmanager
def _appender(path: Path | None) -> Iterator[Callable[[PlanRecord], None]]:
    """A function appending one flushed JSON line per record to ``path`` (or doing nothing without a path)."""
    if path is None:
        yield lambda record: None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        if _cut_short(path):
            file.write("\n")

        def write(record: PlanRecord) -> None:
            file.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            file.flush()

        yield write


def _cut_short(path: Path) -> bool:
    """Whether ``path``'s last line lacks its newline (a run killed mid-write)."""
    with path.open("rb") as file:
        if file.seek(0, 2) == 0:
            return False
        file.seek(-1, 2)
        return file.read(1) != b"\n"


def _plan_all(
    planner: Planner,
    pending: list[tuple[str, str]],
    concurrency: int,
    write: Callable[[PlanRecord], None],
    bar: tqdm,
) -> dict[str, PlanRecord]:
    """Run the pending plans on ``concurrency`` threads, writing each record from this thread as it finishes."""
    results: dict[str, PlanRecord] = {}
    failed = 0
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dysen-plan")
    try:
        futures = [pool.submit(_plan_one, planner, id_, prompt) for id_, prompt in pending]
        for future in as_completed(futures):
            record = future.result()
            write(record)
            results[record.id] = record
            failed += record.error is not None
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _plan_one(planner: Planner, id_: str, prompt: str) -> PlanRecord:
    try:
        return PlanRecord(id_, prompt, dsg=planner.plan(prompt))
    except Exception as err:  # recorded, not raised: one bad prompt must not stop the batch
        log.warning("prompt %r failed: %s", id_, err, exc_info=not isinstance(err, DysenError))
        return PlanRecord(id_, prompt, error=f"{type(err).__name__}: {err}")
