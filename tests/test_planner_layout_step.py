"""DysenPlanner's optional layout step (issue 24 §2) against the fake chat server: good, repaired, unrepairable."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest

from dysen.planner.backends import OpenAIBackend
from dysen.planner.dysen import DysenPlanner
from dysen.planner.llm_layout import LAYOUT_SCHEMA
from fake_llm_server import FakeLLMServer, Reply

PROMPT = "a man walks his dog to the right"
PLAN = "(man, walks to the right, dog, (0v, 2v))"


class _NoSleep:
    def __call__(self, seconds: float) -> None:
        pass


def _planner(server: FakeLLMServer, **options: Any) -> DysenPlanner:
    backend = OpenAIBackend("fake-model", base_url=server.base_url, max_retries=0, timeout_s=5.0, sleep=_NoSleep(),
                            rng=random.Random(0))  # fmt: skip
    return DysenPlanner(backend, imagination=False, polish=False, layout=True, **options)


def _layout(man_x: list[float], dog_x: list[float] | None = None) -> str:
    dog_x = dog_x or [x + 0.25 for x in man_x]
    frames = [{"boxes": [{"object": "man", "x0": m, "y0": 0.4, "x1": m + 0.2, "y1": 0.9},
                         {"object": "dog", "x0": d, "y0": 0.7, "x1": d + 0.2, "y1": 0.9}]}
              for m, d in zip(man_x, dog_x, strict=True)]  # fmt: skip
    return json.dumps({"keyframes": frames})


def test_a_good_layout_answer_gives_the_plans_boxes(fake_llm: FakeLLMServer) -> None:
    fake_llm.push(Reply(PLAN), Reply(_layout([0.1, 0.25, 0.4])))
    dsg = _planner(fake_llm).plan(PROMPT)
    assert dsg.layout_source == "llm" and len(dsg.boxes) == dsg.num_steps + 1 == 3
    assert [b.x0 for b in dsg.boxes[2]] == [0.4, 0.65]
    request = fake_llm.requests[-1].body
    assert request["response_format"]["json_schema"]["schema"] == LAYOUT_SCHEMA  # structured output
    user = request["messages"][-1]["content"]
    assert "exactly 3 keyframes" in user and "man walks to the right dog: steps 0 to 2 (move right)" in user


def test_a_bad_layout_is_repaired_quoting_the_error(fake_llm: FakeLLMServer) -> None:
    jumpy = _layout([0.0, 0.75, 0.0], [0.5, 0.5, 0.5])  # the man: 0.75 of the frame in one step
    outside = _layout([0.1, 0.2, 0.9])  # x1 = 1.1
    fake_llm.push(Reply(PLAN), Reply(outside), Reply(jumpy), Reply(_layout([0.1, 0.2, 0.3])))
    planner = _planner(fake_llm, max_repairs=2)
    dsg = planner.plan(PROMPT)
    assert dsg.layout_source == "llm" and planner.stats.repairs == 2
    first, second = (r.body["messages"][-1]["content"] for r in fake_llm.requests[2:4])
    assert "keyframe 2, 'man': needs 0 <= x0 < x1 <= 1" in first
    assert "moves 0.75 of the frame since keyframe 0" in second


def test_an_unrepairable_layout_falls_back_to_the_imagined_one(
    fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    tiny = json.dumps({"keyframes": [{"boxes": [{"object": "man", "x0": 0.1, "y0": 0.1, "x1": 0.11, "y1": 0.11}]}]})
    fake_llm.push(Reply(PLAN), Reply(tiny), Reply("no boxes today"))
    with caplog.at_level(logging.WARNING):
        dsg = _planner(fake_llm, max_repairs=1).plan(PROMPT)
    assert dsg.layout_source == "imagined-scene" and dsg.boxes is not None
    assert "Dysen layout failed" in caplog.text
    assert "give exactly 3" in fake_llm.requests[2].body["messages"][-1]["content"]
