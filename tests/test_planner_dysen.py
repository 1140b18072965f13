"""DysenPlanner (Steps I–III) against a real local chat server: answers, repairs, fallbacks, cache."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dysen.dsg import DynamicSceneGraph, Event, SceneGraph, events_to_dsg, format_graph, parse_dsg, parse_events
from dysen.errors import DSGError, DysenError
from dysen.planner.backends import PAPER_SAMPLING, Completion, OpenAIBackend
from dysen.planner.cache import CachedBackend, ResponseCache
from dysen.planner.dysen import DysenPlanner, PlanningError
from dysen.planner.motion import with_motion
from dysen.planner.prompts import FORMATS, PROMPT_VERSION, cache_namespace, load_template
from dysen.planner.types import Demonstration, Planner
from fake_llm_server import FakeLLMServer, Reply

PROMPT = "a lady sits on a chair drinking coffee, then looks out of the window"
PLAN = "(lady, sitting on, chair, (0v, 3v))\n(lady, drinking, coffee, (0v, 1v))\n(lady, looking out, window, (1v, 3v))"
IMAGINED = [
    "(lady, sitting on, chair), (lady, drinking, coffee), (lady, in, dress), (lady, holding, cup), (cup, white)",
    "(lady, in, dress), (window, open)",
    "(lady, sitting on, chair), (lady, in, dress), (sky, blue)",
]
# The polish drops the Step II action "(lady, looking out, window)" from step 1: it must come back.
POLISHED = (
    "0 SG: (lady, sitting on, chair), (lady, drinking, coffee), (lady, in, dress), (lady, holding, cup)\n"
    "1 SG: (lady, sitting on, chair), (lady, in, dress)\n"
    "2 SG: (lady, sitting on, chair), (lady, looking out, window), (lady, in, dress), (sky, blue)"
)
ANSWERS = [PLAN, *IMAGINED, POLISHED]
CALLS = 1 + 3 + 1

DEMO = Demonstration(
    "demo-office",
    "woman putting a bottle in her bag, then taking a fitness mat",
    parse_dsg(
        "events:\n(woman, putting, bottle, (0v, 1v))\n(woman, taking, fitness mat, (1v, 2v))\nscene graphs:\n"
        "0 SG: (woman, putting, bottle), (woman, in, office)\n1 SG: (woman, taking, fitness mat), (mat, blue)"
    ),
)
OTHER_DEMO = Demonstration(
    "demo-park", "a boy throws a ball", parse_dsg("events:\n(boy, throws, ball, (0v, 1v))\nscene graphs:\n0 SG: none")
)
FALLBACK_DSG = events_to_dsg([Event(agent="scene", predicate="stays", start=0, end=1)])


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class FixedPlanner:
    """A trivial fallback: always the same DSG."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def plan(self, prompt: str, demonstrations: Any = None) -> DynamicSceneGraph:
        self.prompts.append(prompt)
        return FALLBACK_DSG


class ListSelector:
    def __init__(self, demos: list[Demonstration]) -> None:
        self.demos = demos
        self.calls: list[tuple[str, int]] = []

    def select(self, prompt: str, k: int) -> list[Demonstration]:
        self.calls.append((prompt, k))
        return self.demos[:k]


def backend_for(server: FakeLLMServer, **options: Any) -> OpenAIBackend:
    options = {"max_retries": 2, "timeout_s": 5.0, "sleep": FakeSleep(), "rng": random.Random(0)} | options
    return OpenAIBackend("fake-model", base_url=server.base_url, **options)


def push(server: FakeLLMServer, *texts: str) -> None:
    server.push(*(Reply(text) for text in texts))


def user_turns(server: FakeLLMServer) -> list[str]:
    """The last user turn of every request the server got."""
    return [[m for m in r.body["messages"] if m["role"] == "user"][-1]["content"] for r in server.requests]


def expected_graphs() -> tuple[SceneGraph, ...]:
    raw = events_to_dsg(parse_events(PLAN)).graphs
    polished = parse_dsg(POLISHED).graphs
    return tuple(r.merged(p) for r, p in zip(raw, polished, strict=True))


def test_text_answers_give_the_polished_dsg_in_1_plus_m_plus_1_calls(fake_llm):
    push(fake_llm, *ANSWERS)
    planner = DysenPlanner(backend_for(fake_llm))
    assert isinstance(planner, Planner)
    dsg = planner.plan(PROMPT)
    assert dsg.events == with_motion(events_to_dsg(parse_events(PLAN))).events  # the normaliser's motions too
    assert all(e.motion is not None for e in dsg.events)
    assert dsg.graphs == expected_graphs()
    assert planner.stats.calls == len(fake_llm.requests) == CALLS
    assert (planner.stats.plans, planner.stats.repairs, planner.stats.fallbacks) == (1, 0, 0)
    for request in fake_llm.requests:
        body = request.body
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert (body["temperature"], body["max_tokens"]) == (PAPER_SAMPLING.temperature, PAPER_SAMPLING.max_tokens)
        assert "response_format" not in body
    assert PROMPT in user_turns(fake_llm)[0] and user_turns(fake_llm)[0].rstrip().endswith("output:")


def test_imagination_sees_the_enriched_previous_graph_and_polish_keeps_step_ii_actions(fake_llm):
    push(fake_llm, *ANSWERS)
    dsg = DysenPlanner(backend_for(fake_llm)).plan(PROMPT)
    raw = events_to_dsg(parse_events(PLAN)).graphs
    enriched_0 = raw[0].merged(parse_dsg(f"0 SG: {IMAGINED[0]}").graphs[0])
    second = user_turns(fake_llm)[2]
    assert f"Previous moment (detailed): {format_graph(enriched_0)}" in second
    assert f"Current moment (bare): {format_graph(raw[1])}" in second
    assert f"Next moment (bare): {format_graph(raw[2])}" in second
    assert "Next moment (bare): none" in user_turns(fake_llm)[3]
    polish_input = user_turns(fake_llm)[4]
    assert "(window, open)" in polish_input  # round 1 merged the imagined facts before the polish
    for step, graph in enumerate(dsg.graphs):
        assert raw[step].facts() <= graph.facts()  # every Step II action survives the polish
    assert ("lady", "looking out", "window") in dsg.graphs[1].facts()
    assert ("window", "open") not in dsg.graphs[1].facts()  # the polish may drop imagined details


def test_json_mode_sends_the_schemas_and_reads_json_answers(fake_llm):
    events = [e.model_dump(mode="json") for e in parse_events(PLAN)]
    answers = [json.dumps({"events": events})]
    answers += [json.dumps(parse_dsg(f"0 SG: {text}").graphs[0].model_dump(mode="json")) for text in IMAGINED]
    answers[1] = '{"relations": [{"subject": "lady", "predicate": "in", "object": "dress"}]}'  # objects left out
    answers.append(json.dumps({"graphs": [g.model_dump(mode="json") for g in parse_dsg(POLISHED).graphs]}))
    push(fake_llm, *answers)
    dsg = DysenPlanner(backend_for(fake_llm), output="json").plan(PROMPT)
    assert dsg.graphs == expected_graphs()
    titles = [r.body["response_format"]["json_schema"]["schema"]["title"] for r in fake_llm.requests]
    assert titles == ["ActionPlan", "SceneGraph", "SceneGraph", "SceneGraph", "SceneGraphs"]
    assert '"relations"' in user_turns(fake_llm)[4]  # graphs are shown to the LLM as JSON too


def _objects(schema: Any) -> list[Mapping[str, Any]]:
    if isinstance(schema, list):
        return [o for item in schema for o in _objects(item)]
    if not isinstance(schema, Mapping):
        return []
    found = [schema] if schema.get("type") == "object" else []
    return (
        found
        + [o for key, value in schema.items() if key != "properties" for o in _objects(value)]
        + [o for value in schema.get("properties", {}).values() for o in _objects(value)]
    )


@pytest.mark.parametrize("kind", ["events_schema", "graph_schema", "graphs_schema"])
def test_json_schemas_are_closed_objects_with_named_fields(kind):
    schema = getattr(FORMATS["json"], kind)
    text = json.dumps(schema)
    assert "prefixItems" not in text and "$ref" not in text and "$defs" not in text
    objects = _objects(schema)
    assert objects and schema["type"] == "object"
    for node in objects:
        assert node["properties"] and node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])


def test_prose_code_fences_and_labels_around_tuples_are_read(fake_llm):
    push(
        fake_llm,
        f"Sure! Here is the plan:\n```\n{PLAN}\n```\nHope this helps.",
        *(f"output: {text}" for text in IMAGINED),
        f"Here are the polished scene graphs.\n{POLISHED}\nLet me know if you need more.",
    )
    planner = DysenPlanner(backend_for(fake_llm))
    assert planner.plan(PROMPT).graphs == expected_graphs()
    assert planner.stats.repairs == 0


def test_truncated_answer_is_repaired_once_quoting_the_parser_error(fake_llm):
    truncated = "(lady, sitting on, chair, (0v, 3"
    with pytest.raises(DSGError) as parser_error:
        parse_events(truncated)
    push(fake_llm, truncated, *ANSWERS)
    planner = DysenPlanner(backend_for(fake_llm))
    assert planner.plan(PROMPT).graphs == expected_graphs()
    assert planner.stats.repairs == 1 and planner.stats.calls == len(fake_llm.requests) == CALLS + 1
    repair = fake_llm.requests[1].body["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2]["content"] == truncated
    assert str(parser_error.value) in repair[3]["content"]
    assert repair[:2] == fake_llm.requests[0].body["messages"]


def test_invalid_json_is_repaired(fake_llm):
    events = json.dumps({"events": [e.model_dump(mode="json") for e in parse_events("(lady, waves, (0v, 1v))")]})
    push(fake_llm, '{"events": [{"agent": "lady"', events)
    planner = DysenPlanner(backend_for(fake_llm), output="json", imagination=False, polish=False)
    dsg = planner.plan(PROMPT)
    assert dsg.graphs == (SceneGraph.from_facts(attributes=[("lady", "waves")]),)
    assert planner.stats.repairs == 1
    assert "not valid JSON" in fake_llm.requests[1].body["messages"][-1]["content"]


def test_wrong_number_of_polished_graphs_is_repaired(fake_llm):
    two_steps = "\n".join(POLISHED.splitlines()[:2])
    push(fake_llm, *ANSWERS[:-1], two_steps, POLISHED)
    planner = DysenPlanner(backend_for(fake_llm))
    assert planner.plan(PROMPT).graphs == expected_graphs()
    assert planner.stats.repairs == 1
    assert "give exactly 3" in fake_llm.requests[-1].body["messages"][-1]["content"]


def test_a_plan_longer_than_max_steps_is_sent_back(fake_llm):
    push(fake_llm, "(lady, sits, (0v, 100v))", "(lady, sits, (0v, 2v))")
    planner = DysenPlanner(backend_for(fake_llm), max_steps=8, imagination=False, polish=False)
    assert planner.plan(PROMPT).num_steps == 2
    assert "spans 100 time steps; use at most 8" in fake_llm.requests[1].body["messages"][-1]["content"]


def test_repairs_are_bounded_then_the_error_names_step_and_attempts(fake_llm):
    push(fake_llm, *["I cannot help with that."] * 3)
    planner = DysenPlanner(backend_for(fake_llm), max_repairs=2)
    with pytest.raises(PlanningError) as caught:
        planner.plan(PROMPT)
    assert (caught.value.step, caught.value.attempts) == ("action planning", 3)
    assert "no event tuple found" in str(caught.value) and "action planning" in str(caught.value)
    assert len(fake_llm.requests) == 3
    assert (planner.stats.calls, planner.stats.repairs, planner.stats.failures) == (3, 2, 1)


def test_rate_limit_then_success(fake_llm):
    fake_llm.push(Reply("slow down", status=429, headers={"Retry-After": "1"}))
    push(fake_llm, *ANSWERS)
    backend = backend_for(fake_llm)
    planner = DysenPlanner(backend)
    assert planner.plan(PROMPT).graphs == expected_graphs()
    assert backend.stats.retries == 1 and len(fake_llm.requests) == CALLS + 1
    assert planner.stats.calls == CALLS and planner.stats.fallbacks == 0


@pytest.mark.parametrize(
    ("answered", "step"),
    [(0, "action planning"), (2, "imagination of step 1 of 3"), (4, "global polish")],
)
def test_server_errors_beyond_retries_use_the_fallback(fake_llm, caplog, answered, step):
    push(fake_llm, *ANSWERS[:answered])
    fake_llm.push(*[Reply("overloaded", status=500)] * 2)
    fallback = FixedPlanner()
    planner = DysenPlanner(backend_for(fake_llm, max_retries=1), fallback=fallback)
    with caplog.at_level(logging.WARNING, logger="dysen.planner.dysen"):
        assert planner.plan(PROMPT) == FALLBACK_DSG
    assert fallback.prompts == [PROMPT]
    assert (planner.stats.fallbacks, planner.stats.failures) == (1, 0)
    assert any(step in r.getMessage() and "HTTP 500" in r.getMessage() for r in caplog.records)


def test_server_errors_without_fallback_raise_a_planning_error(fake_llm):
    fake_llm.push(*[Reply("overloaded", status=500)] * 2)
    with pytest.raises(PlanningError, match="action planning failed after 1 LLM call.*HTTP 500"):
        DysenPlanner(backend_for(fake_llm, max_retries=1)).plan(PROMPT)


def test_unusable_answers_also_go_to_the_fallback(fake_llm):
    push(fake_llm, "no idea", "still no idea")
    planner = DysenPlanner(backend_for(fake_llm), max_repairs=1, fallback=FixedPlanner())
    assert planner.plan(PROMPT) == FALLBACK_DSG
    assert planner.stats.fallbacks == 1 and planner.stats.repairs == 1


def test_a_slow_answer_is_retried_after_the_timeout(fake_llm):
    fake_llm.push(Reply(PLAN, delay_s=3.0))
    push(fake_llm, *ANSWERS)
    planner = DysenPlanner(backend_for(fake_llm, timeout_s=0.3, max_retries=1))
    assert planner.plan(PROMPT).graphs == expected_graphs()


def test_answers_slower_than_the_timeout_end_in_a_clear_error(fake_llm):
    fake_llm.push(Reply(PLAN, delay_s=3.0))
    planner = DysenPlanner(backend_for(fake_llm, timeout_s=0.3, max_retries=0))
    with pytest.raises(PlanningError, match="no answer within 0.3 s"):
        planner.plan(PROMPT)


def test_the_cache_makes_a_repeated_plan_send_no_request(fake_llm, tmp_path):
    push(fake_llm, *ANSWERS)
    cache = ResponseCache(tmp_path / "llm.sqlite")
    backend = CachedBackend(backend_for(fake_llm), cache, namespace=cache_namespace())
    first = DysenPlanner(backend).plan(PROMPT)
    assert len(fake_llm.requests) == CALLS
    again = DysenPlanner(backend).plan(PROMPT)
    assert again == first and len(fake_llm.requests) == CALLS
    assert backend.stats.hits == CALLS
    cache.close()


def test_the_cache_namespace_carries_the_template_version():
    assert cache_namespace().startswith(f"prompts-v{PROMPT_VERSION}-")
    for step in ("action_planning", "imagination", "polish"):
        assert {"instruction", "format.text", "format.json", "examples", "example", "query"} <= set(
            load_template(step)
        )
    with pytest.raises(DysenError, match="no prompt template"):
        load_template("nope")


def test_demonstrations_argument_beats_the_selector_and_serves_all_steps(fake_llm):
    push(fake_llm, *ANSWERS, *ANSWERS)
    selector = ListSelector([OTHER_DEMO])
    planner = DysenPlanner(backend_for(fake_llm), selector=selector, shots=4)
    planner.plan(PROMPT, demonstrations=[DEMO])
    assert selector.calls == []
    assert all(DEMO.caption in turn and OTHER_DEMO.caption not in turn for turn in user_turns(fake_llm))
    planner.plan(PROMPT)
    assert selector.calls == [(PROMPT, 4)]
    assert all(OTHER_DEMO.caption in turn for turn in user_turns(fake_llm)[CALLS:])


def test_demonstrations_are_shown_as_solved_examples_and_none_means_zero_shot(fake_llm):
    push(fake_llm, *ANSWERS, *ANSWERS)
    planner = DysenPlanner(backend_for(fake_llm))
    planner.plan(PROMPT, demonstrations=[DEMO])
    plan_turn, first_window, _, _, polish_turn = user_turns(fake_llm)
    assert f"input: {DEMO.caption}\noutput:\n(woman, putting, bottle, (0v, 1v))" in plan_turn
    assert "Current moment (bare): (woman, putting, bottle)\nNext moment (bare): (woman, taking, fitness mat)\n" in (
        first_window
    )
    assert "output:\n0 SG: (woman, putting, bottle), (woman, in, office)" in polish_turn
    planner.plan(PROMPT)
    assert all("Solved examples" not in turn for turn in user_turns(fake_llm)[CALLS:])


@pytest.mark.parametrize(("imagination", "polish", "calls"), [(False, False, 1), (False, True, 2), (True, False, 4)])
def test_steps_can_be_switched_off(fake_llm, imagination, polish, calls):
    answers = [PLAN] + IMAGINED * imagination + [POLISHED] * polish
    push(fake_llm, *answers)
    planner = DysenPlanner(backend_for(fake_llm), imagination=imagination, polish=polish)
    dsg = planner.plan(PROMPT)
    assert planner.stats.calls == len(fake_llm.requests) == calls
    if not imagination and not polish:
        assert dsg == with_motion(events_to_dsg(parse_events(PLAN)))


@pytest.mark.parametrize("options", [{"output": "yaml"}, {"shots": -1}, {"max_repairs": -1}, {"max_steps": 0}])
def test_invalid_settings_and_prompts_are_rejected(options):
    with pytest.raises(DysenError):
        DysenPlanner(ScriptedBackend("x"), **options)
    with pytest.raises(DysenError, match="non-empty"):
        DysenPlanner(ScriptedBackend("x")).plan("  ")


class ScriptedBackend:
    """An in-process backend answering every request with the same text."""

    name = "scripted"
    model = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    def complete(self, messages, *, sampling=PAPER_SAMPLING, json_schema=None) -> Completion:
        return Completion(self.text, 0, 0, 1, False, self.model)


ANSWER_TEXT = st.one_of(
    st.text(max_size=120),
    st.text(alphabet='(),v0123 ab\n{}[]":SGnoe-', max_size=120),
    st.sampled_from(ANSWERS).map(lambda s: s[: len(s) // 2]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANSWER_TEXT, output=st.sampled_from(["text", "json"]))
def test_any_answer_gives_a_dsg_or_a_dysen_error(text, output):
    planner = DysenPlanner(ScriptedBackend(text), output=output, max_repairs=1, max_steps=4)
    try:
        dsg = planner.plan(PROMPT)
    except DysenError:
        return
    assert isinstance(dsg, DynamicSceneGraph) and 1 <= dsg.num_steps <= 4
