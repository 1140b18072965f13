"""The paper's tuple text format: exact round-trips, tolerant reading of real LLM output, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dysen.dsg import (
    DynamicSceneGraph,
    Event,
    Motion,
    SceneGraph,
    events_to_dsg,
    format_dsg,
    format_events,
    format_graph,
    parse_dsg,
    parse_events,
    parse_graph,
)
from dysen.dsg.types import MOTION_DIRECTIONS, MOTION_KINDS
from dysen.errors import DSGError


def _ev(agent: str, predicate: str, target: str | None, start: int, end: int) -> Event:
    return Event(agent=agent, predicate=predicate, target=target, start=start, end=end)


WOMAN = (
    _ev("woman", "putting", "bottle of water", 0, 1),
    _ev("woman", "taking", "fitness mat", 1, 2),
    _ev("woman", "get out", "office", 2, 3),
)


# -- events ----------------------------------------------------------------------------------------


def test_format_events_writes_the_papers_lines():
    events = [WOMAN[0], _ev("red circle", "jumps", None, 2, 4)]
    assert format_events(events) == "(woman, putting, bottle of water, (0v, 1v))\n(red circle, jumps, (2v, 4v))"


@pytest.mark.parametrize(
    "text",
    [
        "(woman, putting, bottle of water, (0v, 1v)), (woman, taking, fitness mat, (1v, 2v)), "
        "(woman, get out, office, (2v, 3v))",
        "Output:\n1. (woman, putting, bottle of water, (0v,1v))\n2. (woman, taking, fitness mat, (1 v, 2 v))\n"
        "3. (woman, get out, office, (2, 3))",
        'Sure! Here are the event triplets:\n```\n- ("woman", "putting", "bottle of water", "(0v, 1v)")\n'
        "- ('woman', 'taking', 'fitness mat', [1v, 2v])\n- (`woman`, `get out`, `office`, 2v-3v)\n```\n"
        "Let me know if you need anything else.",
        "1) (woman, putting, bottle of water, (0v to 1v))\n\n2) (woman, taking, fitness mat, (1V, 2V))\n"
        "• (woman,get out,office,(2v,3v)).",
        "output: (woman, putting, bottle of water, (0v, 1v))\n* (woman, taking, fitness mat, (1v, 2v));"
        " (woman, get out, office, (2v, 3v))\nNote: the woman acts in sequence.",
        "Here is the plan (in order):\n> (woman,  putting ,  bottle   of water , ( 0v , 1v ))\n"
        "> (woman, taking, fitness mat, (1v – 2v))\n> (woman, get out, office, (2v~3v))",
    ],
)
def test_parse_events_reads_messy_llm_output(text):
    assert parse_events(text) == WOMAN


def test_parse_events_reads_missing_targets_and_long_fields():
    text = (
        "(the big red circle, moves to the right, (0v, 2v))\n(blue square, jumps over, the big red circle, (2v, 3v))"
    )
    assert parse_events(text) == (
        _ev("the big red circle", "moves to the right", None, 0, 2),
        _ev("blue square", "jumps over", "the big red circle", 2, 3),
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "Output:\n(lady, sitting on, chair, (0v, 5v))\n(lady, drinking, coffee)",
            "line 3 '(lady, drinking, coffee)'",
        ),
        ("(lady, sitting on, chair, (0v, 5v))\n\n1. (lady, drinking, coffee, (2v, 1v))", "line 3"),
        ("(a, b, c, (0v, 1v)), (lady, drinking, (1v)", "line 1"),
        ("Events:\n(lady, sitting on, chair, (0v, 5v)\n(lady, sitting on, chair, (0v, 5v", "line 3"),
        ('("", jumps, (0v, 1v))', "line 1"),
        ("(a, b, c, (0v, 99999999999v))", "line 1"),
        ("- [lady, sits, chair, 0v, 1v]", "line 1"),
    ],
)
def test_unreadable_event_lines_are_named(text, line):
    with pytest.raises(DSGError) as info:
        parse_events(text)
    assert line in str(info.value)


def test_reversed_span_error_says_what_is_wrong():
    with pytest.raises(DSGError, match=r"line 1 .*ends at 1v, not after its start 2v"):
        parse_events("(a, b, c, (2v, 1v))")


@pytest.mark.parametrize("text", ["", "I cannot plan this prompt.", "```\n```", "events: none"])
def test_text_without_events_is_an_error(text):
    with pytest.raises(DSGError, match="no event tuple"):
        parse_events(text)


def test_prose_echoing_the_format_is_skipped():
    text = "Sure, triplets as (agent, event-predicate, target, (start-time, end-time)):\n(a, runs, (0v, 1v))"
    assert parse_events(text) == (_ev("a", "runs", None, 0, 1),)


# -- scene graphs ----------------------------------------------------------------------------------


def test_graph_round_trip_and_format():
    graph = SceneGraph.from_facts(
        relations=[("woman", "in", "room"), ("woman", "holding", "bag")], attributes=[("bag", "cloth")]
    )
    text = format_graph(graph)
    assert text == "(woman, in, room), (woman, holding, bag), (bag, cloth)"
    assert parse_graph(text) == graph


def test_graph_object_order_and_lonely_objects_survive():
    facts = SceneGraph.from_facts(relations=[("square", "hits", "circle")], attributes=[("circle", "jumps")])
    graph = SceneGraph(objects=("circle", "square", "table"), attributes=facts.attributes, relations=facts.relations)
    text = format_graph(graph)
    assert text == "(circle, jumps), (square, hits, circle), (table)"
    assert parse_graph(text) == graph
    backwards = SceneGraph.from_facts(relations=[("a", "near", "b")], objects=["b"])
    assert format_graph(backwards) == "(b), (a, near, b)"
    assert parse_graph(format_graph(backwards)) == backwards


@pytest.mark.parametrize("text", ["none", "None.", "(empty)", "Output: none", "[]", "()", "-", "", "\n  \n", "N/A"])
def test_empty_graph_texts(text):
    assert parse_graph(text) == SceneGraph()
    assert format_graph(SceneGraph()) == "none"


def test_parse_graph_reads_messy_text():
    text = (
        'Output:\n```\n1. ("woman", "in", "room"), (`woman`, wearing, scarf)\n- (bag,cloth) .\n```\n'
        "These facts describe the scene."
    )
    graph = parse_graph(text)
    assert graph.facts() == {("woman", "in", "room"), ("woman", "wearing", "scarf"), ("bag", "cloth")}
    assert graph.objects == ("woman", "room", "scarf", "bag")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(woman, in, room), (bag, cloth, big, red)", "line 1"),
        ("(woman, in, room)\n(woman, holding, bag, (0v, 1v))", "line 2"),
        ("(woman, in, room)\n(, cloth)", "line 2"),
        ('(woman, in, room), ("", cloth)', "empty field"),
        ("The woman is in the room.", "no scene-graph tuple"),
    ],
)
def test_unreadable_graphs_are_named(text, message):
    with pytest.raises(DSGError) as info:
        parse_graph(text)
    assert message in str(info.value)


@pytest.mark.parametrize("label", ["a, b", "x (y)", "[z]", "'quoted'", "SG 1: x", "step 2: y"])
def test_labels_the_text_cannot_hold_are_refused(label):
    graph = SceneGraph.from_facts(attributes=[("ball", label)])
    with pytest.raises(DSGError, match="cannot be written"):
        format_graph(graph)


def test_a_lonely_object_named_like_an_empty_marker_is_refused():
    with pytest.raises(DSGError, match="empty graph"):
        format_graph(SceneGraph(objects=("none",)))


# -- whole DSGs ------------------------------------------------------------------------------------


def test_format_dsg_block_and_round_trip():
    dsg = events_to_dsg(WOMAN)
    text = format_dsg(dsg)
    assert text == (
        "events:\n(woman, putting, bottle of water, (0v, 1v))\n(woman, taking, fitness mat, (1v, 2v))\n"
        "(woman, get out, office, (2v, 3v))\nscene graphs:\n0 SG: (woman, putting, bottle of water)\n"
        "1 SG: (woman, taking, fitness mat)\n2 SG: (woman, get out, office)"
    )
    assert parse_dsg(text) == dsg
    assert DynamicSceneGraph.from_text(dsg.to_text()) == dsg


def test_format_dsg_without_events_and_with_empty_steps():
    dsg = DynamicSceneGraph(graphs=(SceneGraph(), SceneGraph.from_facts(attributes=[("ball", "red")])))
    text = format_dsg(dsg)
    assert text == "events:\nnone\nscene graphs:\n0 SG: none\n1 SG: (ball, red)"
    assert parse_dsg(text) == dsg


SG0 = {("woman", "in", "room"), ("bag", "cloth")}
SG1 = {("woman", "holding", "bag")}


@pytest.mark.parametrize(
    "text",
    [
        "0 SG: (woman, in, room), (bag, cloth)\n1 SG: (woman, holding, bag)",
        "Output: 1st SG: (woman, in, room), (bag, cloth). 2nd SG: (woman, holding, bag).",
        "SG 0: (woman, in, room), (bag, cloth)\nSG 1: (woman, holding, bag)",
        "Step 1: (woman, in, room), (bag, cloth)\nStep 2: (woman, holding, bag)",
        "**Scene graph 1:** (woman, in, room), (bag, cloth)\n**Scene graph 2:** (woman, holding, bag)",
        "t=0: (woman, in, room)\n(bag, cloth)\n\nt=1:\n(woman, holding, bag)\n```",
        'Here are the polished SGs.\n```\n- SG0: ("woman", "in", "room"), (\'bag\', \'cloth\')\n'
        "- SG1: (woman, holding, bag)\n```",
    ],
)
def test_parse_dsg_reads_step_label_variants(text):
    dsg = parse_dsg(text)
    assert [g.facts() for g in dsg.graphs] == [SG0, SG1]
    assert dsg.events == ()


def test_parse_dsg_reads_events_before_steps():
    text = "Events:\n1. (woman, putting, bottle of water, (0v, 1v))\n\nScene graphs:\n0 SG: (woman, in, room)"
    dsg = parse_dsg(text)
    assert dsg.events == WOMAN[:1] and dsg.graphs[0].facts() == {("woman", "in", "room")}


def test_parse_dsg_of_events_alone_applies_step_ii():
    assert parse_dsg(format_events(WOMAN)) == events_to_dsg(WOMAN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 SG: (a, b)\n2 SG: (a, c)", "line 2: expected step 1 next, found step 2"),
        ("3 SG: (a, b)", "counted from 0 or 1"),
        ("0 SG: (a, b)\n1 SG: the lady keeps sitting", "line 2: step 1 has no scene-graph tuple"),
        ("0 SG: (a, b)\n1 SG: (a, b, c, (0v, 1v))", "line 2"),
        ("events:\n(a, b, (0v))\n0 SG: (a, b)", "line 2"),
        ("Nothing to see here.", "no scene-graph steps"),
    ],
)
def test_parse_dsg_errors_name_the_line(text, message):
    with pytest.raises(DSGError) as info:
        parse_dsg(text)
    assert message in str(info.value)


# -- properties ------------------------------------------------------------------------------------

_EMPTY_WORDS = {"none", "empty", "nothing", "n/a"}
labels = (
    st.text(
        st.characters(blacklist_characters="(),[]:\"'`“”‘’", blacklist_categories=("Cs",)), min_size=1, max_size=12
    )
    .map(lambda s: " ".join(s.split()))
    .filter(lambda s: s and s.lower() not in _EMPTY_WORDS)
)


motions = st.none() | st.builds(
    lambda kind, direction, amount: Motion(kind=kind, direction=direction if kind == "move" else None, amount=amount),
    st.sampled_from(MOTION_KINDS),
    st.sampled_from(MOTION_DIRECTIONS),
    st.none() | st.floats(0.0, 1.0, allow_nan=False),
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    start = draw(st.integers(0, 6))
    return Event(
        agent=draw(labels),
        predicate=draw(labels),
        target=draw(st.none() | labels),
        start=start,
        end=start + draw(st.integers(1, 4)),
        motion=draw(motions),
    )


@st.composite
def graphs(draw: st.DrawFn) -> SceneGraph:
    objects = draw(st.lists(labels, max_size=5, unique=True))
    if not objects:
        return SceneGraph()
    name = st.sampled_from(objects)
    relations = draw(st.lists(st.tuples(name, labels, name), max_size=4))
    attributes = draw(st.lists(st.tuples(name, labels), max_size=4))
    built = SceneGraph.from_facts(relations, attributes)
    return SceneGraph(objects=tuple(objects), attributes=built.attributes, relations=built.relations)


@st.composite
def dsgs(draw: st.DrawFn) -> DynamicSceneGraph:
    evs = draw(st.lists(events(), max_size=5))
    steps = max((e.end for e in evs), default=1)  # a DSG has a graph for every step its events cover
    gs = draw(st.lists(graphs(), min_size=steps, max_size=steps + 3))
    return DynamicSceneGraph(events=tuple(evs), graphs=tuple(gs))


@settings(max_examples=200, deadline=None)
@given(dsgs())
def test_format_then_parse_is_exact_for_any_dsg(dsg):
    assert parse_dsg(format_dsg(dsg)) == dsg


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), min_size=1, max_size=6), graphs())
def test_events_and_graphs_round_trip_alone(evs, graph):
    assert parse_events(format_events(evs)) == tuple(evs)
    assert parse_graph(format_graph(graph)) == graph


_FRAGMENTS = st.sampled_from(
    [
        *"()[],-\n\"'`",
        ", ",
        "v",
        "0v",
        "12",
        " to ",
        " SG 1:",
        "Step 0:",
        "t=2:",
        "1st SG:",
        "none",
        "(empty)",
        "Output:",
    ]
    + ["```", "1.", "• ", "lady", "sits on", "(a, b, c, (0v, 2v))", "(a, b)", "(a, b, c)", "(x)", "\u2028", "\r\n"]
    + ["99999999999", "events:"]
)
messy_text = st.lists(_FRAGMENTS | st.text(max_size=8), max_size=40).map("".join) | st.text()


@settings(max_examples=200, deadline=None)
@given(messy_text)
def test_parsers_raise_only_dsg_errors_on_any_text(text):
    for parse in (parse_events, parse_graph, parse_dsg):
        try:
            parse(text)
        except DSGError:
            pass
