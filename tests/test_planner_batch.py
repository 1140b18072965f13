"""plan_many: bounded concurrency, thread-safe planner stats, resumable JSON Lines, recorded failures."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from dysen.dsg import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.planner.backends import PAPER_SAMPLING, Completion, LLMError
from dysen.planner.batch import PlanRecord, plan_many
from dysen.planner.dysen import DysenPlanner

ANSWERS = {
    "ActionPlan": '{"events": [{"agent": "circle", "predicate": "moves", "target": null, "start": 0, "end": 1}]}',
    "SceneGraph": '{"attributes": [{"object": "circle", "attribute": "red"}]}',
    "SceneGraphs": '{"graphs": [{"objects": ["circle"]}]}',
}


class InFlightBackend:
    """Answers Dysen's JSON requests by schema title; records the most calls in flight at once."""

    name = "in-flight"
    model = "fake"

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = delay_s
        self.fail_on = "FAIL"
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def complete(self, messages, *, sampling=PAPER_SAMPLING, json_schema=None) -> Completion:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            if self.fail_on and self.fail_on in messages[-1].content:
                raise LLMError("HTTP 500: scripted failure")
            return Completion(ANSWERS[json_schema["title"]], 0, 0, 1, False, self.model)
        finally:
            with self._lock:
                self.in_flight -= 1


def planner_for(backend: InFlightBackend) -> DysenPlanner:
    return DysenPlanner(backend, output="json")


def read_lines(path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_concurrency_is_bounded_and_stats_are_thread_safe(tmp_path):
    backend = InFlightBackend()
    planner = planner_for(backend)
    prompts = [f"circle {i} moves" for i in range(12)]
    records = plan_many(planner, prompts, concurrency=3, out=tmp_path / "plans.jsonl", progress=False)
    assert 2 <= backend.max_in_flight <= 3
    assert [r.id for r in records] == [str(i) for i in range(12)] and [r.prompt for r in records] == prompts
    assert all(isinstance(r.dsg, DynamicSceneGraph) and r.error is None for r in records)
    assert planner.stats.plans == 12 and planner.stats.calls == backend.calls == 12 * 3
    lines = read_lines(tmp_path / "plans.jsonl")
    assert sorted(line["id"] for line in lines) == sorted(r.id for r in records)
    assert all(PlanRecord.from_dict(line) in records for line in lines)


def test_failures_are_recorded_not_raised(tmp_path):
    prompts = [("a", "circle moves"), ("b", "FAIL square jumps"), ("c", "triangle spins")]
    records = plan_many(
        planner_for(InFlightBackend()), prompts, concurrency=2, out=tmp_path / "p.jsonl", progress=False
    )
    assert [r.error is None for r in records] == [True, False, True]
    assert records[1].dsg is None and records[1].error.startswith("PlanningError: Dysen action planning failed")
    assert {line["id"]: line["error"] is None for line in read_lines(tmp_path / "p.jsonl")} == {
        "a": True,
        "b": False,
        "c": True,
    }


def test_unexpected_exceptions_are_recorded_with_their_type():
    class Broken:
        def plan(self, prompt: str, demonstrations: Any = None) -> DynamicSceneGraph:
            raise RuntimeError("bug")

    (record,) = plan_many(Broken(), ["x"], progress=False)
    assert record.error == "RuntimeError: bug" and record.dsg is None


def test_resume_skips_done_ids_and_retries_failed_ones(tmp_path):
    out = tmp_path / "plans.jsonl"
    prompts = [("a", "circle moves"), ("b", "FAIL square jumps"), ("c", "triangle spins")]
    first = plan_many(planner_for(InFlightBackend()), prompts, out=out, progress=False)
    backend = InFlightBackend()
    backend.fail_on = ""
    again = plan_many(planner_for(backend), prompts, out=out, progress=False)
    assert backend.calls == 3  # one plan (1 + M + 1 calls, M = 1): only "b" was planned again
    assert again[0] == first[0] and again[2] == first[2]
    assert again[1].error is None and again[1].dsg is not None
    lines = read_lines(out)
    assert sorted(line["id"] for line in lines) == ["a", "b", "b", "c"]
    assert lines[-1]["id"] == "b" and lines[-1]["dsg"] is not None  # appended; the later line wins on reading


def test_a_line_cut_short_by_a_kill_is_redone_and_the_file_stays_readable(tmp_path):
    out = tmp_path / "plans.jsonl"
    done = plan_many(planner_for(InFlightBackend()), ["circle moves"], out=out, progress=False)
    with out.open("a", encoding="utf-8") as file:
        file.write('{"id": "1", "prompt": "square jum')
    backend = InFlightBackend()
    records = plan_many(planner_for(backend), ["circle moves", "square jumps"], out=out, progress=False)
    assert records[0] == done[0] and records[1].dsg is not None and backend.calls == 3
    lines = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[-1])["id"] == "1" and len(lines) == 3


def test_an_id_recorded_for_another_prompt_is_an_error(tmp_path):
    out = tmp_path / "plans.jsonl"
    plan_many(planner_for(InFlightBackend()), ["circle moves"], out=out, progress=False)
    with pytest.raises(DysenError, match="holds id '0' for another prompt"):
        plan_many(planner_for(InFlightBackend()), ["square jumps"], out=out, progress=False)


@pytest.mark.parametrize(
    ("prompts", "options", "message"),
    [
        ([("a", "x"), ("a", "y")], {}, "unique"),
        (["x"], {"concurrency": 0}, "concurrency"),
        ("one prompt", {}, "not one string"),
        ([("a", 1)], {}, "string or an"),
    ],
)
def test_bad_arguments_are_rejected(prompts, options, message):
    with pytest.raises(DysenError, match=message):
        plan_many(planner_for(InFlightBackend()), prompts, progress=False, **options)
