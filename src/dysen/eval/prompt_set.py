"""Video evaluation of a prompt set with expected events (issue 23): plan, generate, score against the plan.

A prompt set is a JSONL file of ``{"id", "split", "prompt", "events": [{"shape", "colour", "action", "target",
"noun"}]}`` records, the events in time order and without timing (``tests/data/paraphrases.jsonl``). Such prompts
have no gold DSG, so each video is scored by the dynamics scorer (``score_video``) against the DSG the model
planned, and the plan is checked against the expected events (``dysen.eval.expected``). An expected event counts
as **drawn** iff the plan has a matching event and the scorer saw that planned event drawn in its window: a wrong
plan is a miss, end to end. Aggregation with standard errors is ``dysen.eval.prompt_summary``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.eval.dynamics import DynamicsScore, score_video
from dysen.eval.expected import ACTIONS, SHAPES, ExpectedEvent, match_plan
from dysen.eval.tracking import DEFAULT_PALETTE, scoring_palette

if TYPE_CHECKING:
    import numpy as np

    from dysen.eval.benchmark import VideoSampling
    from dysen.pipeline import DysenVDMPipeline

PROMPT_KEYS = frozenset({"id", "split", "prompt", "events"})
EVENT_KEYS = frozenset({"shape", "colour", "action", "target", "noun"})


class PromptSetError(DysenError):
    """A prompt-set file is missing or a record in it is malformed (the message names the line)."""


@dataclass(frozen=True)
class PromptRecord:
    """One prompt of a set and the events it asks for, in time order."""

    id: str
    split: str
    prompt: str
    events: tuple[ExpectedEvent, ...]


def _check_event(event: Any, where: str) -> ExpectedEvent:
    """One expected event of a record, validated; ``where`` names the file and line for errors."""
    if not isinstance(event, dict):
        raise PromptSetError(f"{where}: each event must be an object, got {event!r}")
    extra = set(event) - EVENT_KEYS
    if extra:
        raise PromptSetError(f"{where}: unknown event keys {sorted(extra)} (allowed: {sorted(EVENT_KEYS)})")
    if event.get("shape") not in SHAPES:
        raise PromptSetError(f"{where}: event shape {event.get('shape')!r} is not one of {list(SHAPES)}")
    if event.get("action") not in ACTIONS:
        raise PromptSetError(f"{where}: event action {event.get('action')!r} is not one of {list(ACTIONS)}")
    for key in ("colour", "target", "noun"):
        if event.get(key) is not None and not (isinstance(event[key], str) and event[key].strip()):
            raise PromptSetError(f"{where}: event {key} must be a word or null, got {event[key]!r}")
    if event["action"] == "change_colour" and not event.get("target"):
        raise PromptSetError(f"{where}: a change_colour event needs its target colour")
    return ExpectedEvent.from_dict(event)


def parse_record(line: str, where: str) -> PromptRecord:
    """One JSONL line of a prompt set as a record; ``PromptSetError`` naming ``where`` if it is malformed."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise PromptSetError(f"{where}: not JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise PromptSetError(f"{where}: a record must be a JSON object, got {type(data).__name__}")
    missing, extra = {"id", "prompt", "events"} - set(data), set(data) - PROMPT_KEYS
    if missing or extra:
        raise PromptSetError(f"{where}: missing keys {sorted(missing)}, unknown keys {sorted(extra)}")
    if not isinstance(data["prompt"], str) or not data["prompt"].strip():
        raise PromptSetError(f"{where}: 'prompt' must be non-empty text")
    events = data["events"]
    if not isinstance(events, list) or not events:
        raise PromptSetError(f"{where}: 'events' must be a non-empty list")
    split = data.get("split", "all")
    if not isinstance(split, str) or not split:
        raise PromptSetError(f"{where}: 'split' must be a name, got {split!r}")
    expected = tuple(_check_event(e, where) for e in events)
    return PromptRecord(str(data["id"]), split, data["prompt"], expected)


def read_prompt_set(path: str | Path) -> list[PromptRecord]:
    """The records of a prompt-set JSONL file (blank lines skipped); ids must be unique."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PromptSetError(f"cannot read the prompt set {file}: {err}") from None
    records, seen = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = parse_record(line, f"{file}, line {number}")
        if record.id in seen:
            raise PromptSetError(f"{file}, line {number}: duplicate id {record.id!r}")
        seen.add(record.id)
        records.append(record)
    if not records:
        raise PromptSetError(f"the prompt set {file} holds no records")
    return records


@dataclass(frozen=True)
class PromptResult:
    """One prompt's video, scored against its plan, and what of the expected events it shows."""

    record: PromptRecord
    plan: DynamicSceneGraph
    score: DynamicsScore
    matched: tuple[int | None, ...]
    """Per expected event, the index in ``plan.events`` of the planned event that realises it, or None."""
    seed: int
    seconds: float = 0.0

    @property
    def drawn(self) -> tuple[bool, ...]:
        """Per expected event: planned right and seen drawn in the planned event's window."""
        return tuple(i is not None and self.score.events[i].detected for i in self.matched)

    @property
    def plan_matched(self) -> bool:
        """Whether the plan realises every expected event."""
        return all(i is not None for i in self.matched)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready summary: the prompt, the planned events with the scorer's verdicts, the expected ones."""
        planned = [
            {"agent": r.event.agent, "predicate": r.event.predicate, "target": r.event.target,
             "action": r.event.motion.action if r.event.motion else None, "frames": list(r.frames),
             "detected": r.detected, "seen_at": r.seen_at}
            for r in self.score.events
        ]  # fmt: skip
        expected = [
            {"shape": e.shape, "colour": e.colour, "action": e.action, "target": e.target,
             "planned_event": i, "drawn": d}
            for e, i, d in zip(self.record.events, self.matched, self.drawn, strict=True)
        ]  # fmt: skip
        return {
            "id": self.record.id, "split": self.record.split, "prompt": self.record.prompt, "seed": self.seed,
            "plan_matched": self.plan_matched, "object_fidelity": self.score.object_fidelity,
            "order_accuracy": self.score.order_accuracy, "expected": expected, "planned": planned,
            "seconds": round(self.seconds, 3),
        }  # fmt: skip


def score_prompt(
    record: PromptRecord,
    frames: np.ndarray,
    plan: DynamicSceneGraph,
    *,
    seed: int = 0,
    seconds: float = 0.0,
    palette: tuple[str, ...] = DEFAULT_PALETTE,
) -> PromptResult:
    """Score uint8 ``[T, H, W, 3]`` frames against the DSG they were made from, and match it to the record; colours
    read in ``palette``, those the model draws."""
    score = score_video(frames, plan, palette)
    return PromptResult(record, plan, score, tuple(match_plan(record.events, plan, palette=palette)), seed, seconds)


def run_prompt_set(
    pipe: DysenVDMPipeline,
    records: Sequence[PromptRecord],
    sampling: VideoSampling,
    *,
    save_dir: Path | None = None,
    progress: bool = True,
) -> list[PromptResult]:
    """Plan and generate each record's prompt with ``pipe`` (seed ``sampling.seed + i``, as ``dysen generate``
    does) and score it. With ``save_dir``, each video is written as ``<id>.mp4`` beside the DSG it followed
    (``<id>.dsg.json``), so ``dysen eval --videos`` can score the folder again. Colours are read in the model's
    palette (the default world's and those its planner knows: ``PlannerOptions.colours``)."""
    palette = scoring_palette(pipe.config.planner.colours)
    results = []
    for index, record in enumerate(tqdm(records, desc="prompts", unit="video", disable=not progress)):
        seed = sampling.seed + index
        clock = time.perf_counter()
        video = pipe(
            record.prompt, steps=sampling.steps, guidance=sampling.guidance, dsg_guidance=sampling.dsg_guidance,
            seed=seed, sampler=sampling.sampler, eta=sampling.eta, progress=False,
        )  # fmt: skip
        seconds = time.perf_counter() - clock
        results.append(score_prompt(record, video.frames, video.dsg, seed=seed, seconds=seconds, palette=palette))
        if save_dir is not None:
            _save(save_dir, record.id, video.frames, video.dsg, pipe.config.video.fps)
    return results


def _save(folder: Path, name: str, frames: np.ndarray, dsg: DynamicSceneGraph, fps: float) -> None:
    """Write ``<name>.mp4`` and the DSG it followed, ``<name>.dsg.json``, into ``folder``."""
    from dysen.atomic import write_text_atomic
    from dysen.data.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / f"{name}.mp4", frames, fps)
    write_text_atomic(folder / f"{name}.dsg.json", dsg.to_json(indent=2) + "\n")
