"""The hand-written paraphrase set (issue 23): does the rules planner give each event its canonical motion?

``tests/data/paraphrases.jsonl`` holds prompts written by hand in everyday English, each with the events a careful
reader expects (shape, colour, canonical action, target colour for ``change_colour``), in time order. Split "dev"
uses the verbs listed in issue 23 and the canonical wording; split "hidden" uses verbs and constructions that appear
nowhere in the issue (other motion verbs, idioms, shared subjects, passives, inverted order, "toward the top edge")
and measures how far the normaliser generalises beyond the words it was built from.

Run with ``-s`` to see the per-split accuracy and every failing prompt with what was planned.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dysen.eval.expected import (
    ACTIONS,
    SHAPES,
    ExpectedEvent,
    PlannedEvent,
    colour_word,
    event_matches,
    names_for,
    words_of,
)
from dysen.eval.expected import planned_events as plan_events
from dysen.world.colours import WORLD_COLOUR_OF

DATA = Path(__file__).parent / "data" / "paraphrases.jsonl"

ALLOW_COLOUR_NODES = True
"""Whether a plan object named only by colour words of the record ("pink" as the node of "turns pink") is tolerated:
the planner may keep a change_colour target as a graph node; that is no object invented from a verb or an adverb."""

MIN_RECORDS = 240
MIN_HIDDEN = 90
MIN_PER_ACTION = 10
DEV_FLOOR = 0.95
HIDDEN_FLOOR = 0.95
"""Floor on hidden-split event accuracy: measured 0.983 (172 of 175) after the parser fixes of issue 23 (0.874
before them); the floor keeps the gain, with room for two or three events."""

# Wording that issue 23 lists (its verb lexicon and its idioms). A hidden prompt must use none of it, so that the
# hidden split stays a check of what the lexicon was NOT built from. Canonical verbs ("moves", "jumps", "grows", …)
# may appear in hidden prompts that test a construction (passive, shared subject, inverted order, direction phrase).
_COLOUR_WORDS = r"(?:red|orange|yellow|green|blue|purple|white|pink|cyan|brown|grey|gray|black)"
ISSUE_WORDING = re.compile(
    r"\b(?:slid(?:e|es|ing)|glid\w*|drift\w*|float\w*|roll\w*|travel\w*|head(?:s|ed|ing)?|fall\w*|fell|drop\w*"
    r"|sink\w*|sank|descend\w*|ris(?:e|es|ing)|rose|climb\w*|ascend\w*|(?:go|goes|going|went) (?:up|down|left|right)"
    r"|hop\w*|bounc\w*|leap\w*|spin\w*|spun|twirl\w*|turn(?:s|ed|ing)? around|swell\w*|expand\w*|inflat\w*"
    r"|contract\w*|vanish\w*|fad(?:e|es|ed|ing) away|emerg\w*|pop(?:s|ped|ping)? up"
    rf"|(?:turn|turns|turned|become|becomes|became) {_COLOUR_WORDS}|little jump|into view|smaller and smaller)\b",
    re.IGNORECASE,
)


def load_records() -> list[dict[str, Any]]:
    """The paraphrase set, one dict per non-empty line of the JSONL file."""
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


RECORDS = load_records()


def _colour_only(name: str, colours: set[str | None]) -> bool:
    """Whether an object name is made of colour words of the record only ("pink", "light blue" is not)."""
    words = re.findall(r"[a-z]+", name.lower())
    return bool(words) and all(colour_word(w) in colours for w in words)


def planned_events(prompt: str) -> list[PlannedEvent]:
    """The rules planner's events for a prompt, in time order (``dysen.eval.expected.planned_events``)."""
    return _plan(prompt)[0]


def planned_objects(prompt: str) -> list[str]:
    """Every object name in the plan: the objects of all its scene graphs and the agents of all its events."""
    return _plan(prompt)[1]


@cache
def _plan(prompt: str) -> tuple[list[PlannedEvent], list[str]]:
    from dysen.planner.rules import RulesPlanner

    dsg = RulesPlanner().plan(prompt)
    objects: list[str] = []
    for graph in dsg.graphs:
        objects.extend(o for o in graph.objects if o not in objects)
    objects.extend(ev.agent for ev in dsg.events if ev.agent not in objects)
    return plan_events(dsg), objects


def match_record(record: dict[str, Any]) -> list[bool]:
    """Per expected event of a record, whether the plan realises it (``dysen.eval.expected.event_matches``, the
    agent's colour not checked): the i-th expected event against the i-th planned one in time order.

    Missing planned events count as wrong; extra planned events make no expected event wrong on their own but are
    counted by ``split_report`` as a wrong number of events.
    """
    planned = planned_events(record["prompt"])
    expected = [ExpectedEvent.from_dict(e) for e in record["events"]]
    return [
        event_matches(exp, planned[i] if i < len(planned) else None, check_colour=False)
        for i, exp in enumerate(expected)
    ]


def _describe_plan(prompt: str) -> str:
    return "; ".join(
        f"t{e.start} {e.agent!r} {e.predicate!r} -> {e.action}"
        + (f" ({'/'.join(sorted(e.targets))})" if e.targets else "")
        for e in planned_events(prompt)
    )


def _describe_expected(record: dict[str, Any]) -> str:
    return "; ".join(
        f"{e['shape']} -> {e['action']}" + (f" ({e['target']})" if e.get("target") else "") for e in record["events"]
    )


def split_report(split: str) -> tuple[float, str]:
    """Event accuracy on one split and a readable report: counts, wrong-count prompts, every failing prompt."""
    records = [r for r in RECORDS if r["split"] == split]
    correct = total = wrong_count = 0
    failures = []
    for record in records:
        hits = match_record(record)
        correct += sum(hits)
        total += len(hits)
        n_planned = len(planned_events(record["prompt"]))
        if n_planned != len(record["events"]):
            wrong_count += 1
        if not all(hits) or n_planned != len(record["events"]):
            failures.append(
                f"  {record['id']}: {record['prompt']!r}\n"
                f"      expected: {_describe_expected(record)}\n"
                f"      planned:  {_describe_plan(record['prompt']) or '(no events)'}"
            )
    accuracy = correct / total if total else 0.0
    headline = (
        f"[{split}] event accuracy {accuracy:.3f} ({correct}/{total} events, {len(records)} prompts); "
        f"prompts with the wrong number of events: {wrong_count}"
    )
    lines = [headline, *failures]
    return accuracy, "\n".join(lines)


def test_paraphrase_set_well_formed() -> None:
    ids = [r["id"] for r in RECORDS]
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert all(re.fullmatch(r"p\d{4}", i) for i in ids)
    assert len(RECORDS) >= MIN_RECORDS
    prompts = [r["prompt"].strip().lower() for r in RECORDS]
    assert len(prompts) == len(set(prompts)), "duplicate prompts"
    splits = Counter(r["split"] for r in RECORDS)
    assert set(splits) == {"dev", "hidden"}
    assert splits["hidden"] >= MIN_HIDDEN
    per_action: Counter[str] = Counter()
    for r in RECORDS:
        assert set(r) <= {"id", "split", "prompt", "events"}, r["id"]
        assert isinstance(r["prompt"], str) and r["prompt"].strip(), r["id"]
        assert 1 <= len(r["events"]) <= 3, r["id"]
        for e in r["events"]:
            assert set(e) <= {"shape", "colour", "action", "target", "noun"}, r["id"]
            assert e["shape"] in SHAPES, r["id"]
            assert e["action"] in ACTIONS, r["id"]
            assert e["colour"] is None or (isinstance(e["colour"], str) and e["colour"]), r["id"]
            if e["action"] == "change_colour":
                assert isinstance(e["target"], str) and e["target"], r["id"]
            else:
                assert e["target"] is None, r["id"]
            noun = e.get("noun")
            if noun is not None:
                assert noun != e["shape"] and re.search(rf"\b{noun}\b", r["prompt"], re.IGNORECASE), r["id"]
            per_action[e["action"]] += 1
    assert all(per_action[a] >= MIN_PER_ACTION for a in ACTIONS), per_action


def test_paraphrase_hidden_split_avoids_issue_wording() -> None:
    leaks = [
        f"{r['id']}: {m.group(0)!r} in {r['prompt']!r}"
        for r in RECORDS
        if r["split"] == "hidden" and (m := ISSUE_WORDING.search(r["prompt"]))
    ]
    assert not leaks, "hidden prompts use wording listed in issue 23:\n" + "\n".join(leaks)


# Metric: event accuracy = expected events realised by the plan / all expected events of the split. The plan's events
# are sorted by (start, position in dsg.events) and compared one by one with the record's events (see match_record
# and event_matches): right agent noun, right canonical action, and for change_colour the right target colour.
@pytest.mark.parametrize(("split", "floor"), [("dev", DEV_FLOOR), ("hidden", HIDDEN_FLOOR)])
def test_paraphrase_event_accuracy(split: str, floor: float) -> None:
    accuracy, report = split_report(split)
    print("\n" + report)
    assert accuracy >= floor, f"{split} event accuracy {accuracy:.3f} < {floor}\n{report}"


KNOWN_INVENTED = 0
"""Plans that still make an object of a verb, an adverb, a place or a measure: 32 when the set was merged, 27 after
"next it", "at last" and "the same shape" (dev) were fixed, 0 since a measure, a place of the screen or a state after
a verb ("into the air", "in size", "the scene", "invisible") stays in the predicate."""


def test_paraphrase_plans_invent_no_more_objects_than_known() -> None:
    """No plan names an object after a verb or an adverb ("jump", "triangle both"): every object name of the plan
    contains, as a word, one of the record's expected shapes, their synonyms or the nouns as written. The test fails
    when more than ``KNOWN_INVENTED`` plans fail this."""
    invented = []
    for r in RECORDS:
        allowed = set().union(*(names_for(ExpectedEvent.from_dict(e)) for e in r["events"]))
        colours = {colour_word(c) for e in r["events"] for c in (e["colour"], e["target"]) if c}
        colours |= {WORLD_COLOUR_OF[c][0] for c in colours if c in WORLD_COLOUR_OF}  # drawn as (dysen.world.colours)
        bad = [
            o
            for o in planned_objects(r["prompt"])
            if not allowed & words_of(o) and not (ALLOW_COLOUR_NODES and _colour_only(o, colours))
        ]
        if bad:
            invented.append(f"  {r['id']}: {r['prompt']!r} -> objects {bad}")
    print(f"\n{len(invented)} plans invent objects (known: {KNOWN_INVENTED}):\n" + "\n".join(invented))
    assert len(invented) <= KNOWN_INVENTED, f"{len(invented)} plans invent objects:\n" + "\n".join(invented)
