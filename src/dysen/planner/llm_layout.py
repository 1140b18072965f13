"""The LLM layout step's answer (issue 24 §2): its JSON Schema, and the reader that validates it.

As LVD's LLM writes boxes per frame, Dysen's optional layout step asks for each object's box at every keyframe of
the plan (each step's start, and the end: ``DynamicSceneGraph.boxes``). An answer is used only when every box is
inside the frame with x0 < x1 and y0 < y1, of a plausible size (``MIN_AREA`` to ``MAX_AREA`` of the frame), named
by that step's scene graph, and continuous: a box moves at most ``MAX_JUMP`` frame widths between keyframes unless
its object enters or leaves (an appear / disappear event). Otherwise ``LayoutError`` says what to fix, and the
planner sends that back like any other unusable answer.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from dysen.dsg.types import Box, DynamicSceneGraph, describe_error
from dysen.errors import DSGError

MIN_AREA = 0.002
"""The smallest plausible box, as a share of the frame."""
MAX_AREA = 0.9
MAX_JUMP = 0.5
"""The most a box's centre may move between keyframes, in frame widths / heights (but for entering / leaving)."""
_SHOWN = 3
"""Problems quoted back in one error."""


class LayoutError(DSGError):
    """An LLM's layout answer is not usable; the message lists what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _AnswerBox(_Strict):
    object: str
    x0: float
    y0: float
    x1: float
    y1: float


class _Keyframe(_Strict):
    boxes: list[_AnswerBox]


class _Layout(_Strict):
    keyframes: list[_Keyframe]


def _number() -> dict[str, str]:
    return {"type": "number"}


_BOX = {"type": "object", "additionalProperties": False, "required": ["object", "x0", "y0", "x1", "y1"],
        "properties": {"object": {"type": "string"}, "x0": _number(), "y0": _number(), "x1": _number(),
                       "y1": _number()}}  # fmt: skip
LAYOUT_SCHEMA: dict[str, Any] = {
    "title": "Layout", "type": "object", "additionalProperties": False, "required": ["keyframes"],
    "properties": {"keyframes": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["boxes"],
        "properties": {"boxes": {"type": "array", "items": _BOX}}}}},
}  # fmt: skip
"""The JSON Schema of the answer (closed objects, every field required: strict structured output accepts it)."""


def read_layout(text: str, dsg: DynamicSceneGraph) -> tuple[tuple[Box, ...], ...]:
    """The boxes of an answer for ``dsg`` (one tuple per keyframe); ``LayoutError`` listing what is wrong."""
    start = text.find("{")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, max(start, 0))
        answer = _Layout.model_validate(value)
    except json.JSONDecodeError as err:
        raise LayoutError(f"the answer is not one JSON object: {err}") from None
    except ValidationError as err:
        raise LayoutError(f"the answer's JSON does not fit the schema: {describe_error(err)}") from None
    wanted = dsg.num_steps + 1
    if len(answer.keyframes) != wanted:
        raise LayoutError(f"the answer has {len(answer.keyframes)} keyframes; give exactly {wanted}")
    problems = [p for m, frame in enumerate(answer.keyframes) for p in _frame_problems(dsg, m, frame)]
    keyframes: tuple[tuple[Box, ...], ...] = ()
    if not problems:
        keyframes = tuple(tuple(Box(**b.model_dump()) for b in frame.boxes) for frame in answer.keyframes)
        problems = _jumps(dsg, keyframes)
    if problems:
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise LayoutError("; ".join(problems[:_SHOWN]) + more)
    return keyframes


def _frame_problems(dsg: DynamicSceneGraph, m: int, frame: _Keyframe) -> list[str]:
    """What is wrong with keyframe ``m``'s boxes on their own."""
    shown = dsg.graphs[min(m, dsg.num_steps - 1)].objects
    problems, seen = [], set()
    for b in frame.boxes:
        where = f"keyframe {m}, {b.object!r}"
        if b.object not in shown:
            problems.append(f"{where}: not an object of that step (its objects: {', '.join(shown)})")
        elif b.object in seen:
            problems.append(f"{where}: boxed twice")
        seen.add(b.object)
        if not (0 <= b.x0 < b.x1 <= 1 and 0 <= b.y0 < b.y1 <= 1):
            problems.append(f"{where}: needs 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
        elif not MIN_AREA <= (b.x1 - b.x0) * (b.y1 - b.y0) <= MAX_AREA:
            problems.append(f"{where}: covers {(b.x1 - b.x0) * (b.y1 - b.y0):.4f} of the frame; a plausible box "
                            f"covers {MIN_AREA} to {MAX_AREA}")  # fmt: skip
    return problems


def _jumps(dsg: DynamicSceneGraph, keyframes: tuple[tuple[Box, ...], ...]) -> list[str]:
    """Boxes that move more than ``MAX_JUMP`` between neighbouring keyframes (entering / leaving objects may)."""
    crossing = {e.agent for e in dsg.events if e.motion is not None and e.motion.kind in ("appear", "disappear")}
    problems = []
    for m in range(1, len(keyframes)):
        before = {b.object: b for b in keyframes[m - 1]}
        for b in keyframes[m]:
            a = before.get(b.object)
            if a is None or b.object in crossing:
                continue
            moved = max(abs((a.x0 + a.x1 - b.x0 - b.x1) / 2), abs((a.y0 + a.y1 - b.y0 - b.y1) / 2))
            if moved > MAX_JUMP:
                problems.append(f"keyframe {m}, {b.object!r}: moves {moved:.2f} of the frame since keyframe {m - 1}; "
                                f"at most {MAX_JUMP} unless it enters or leaves")  # fmt: skip
    return problems
