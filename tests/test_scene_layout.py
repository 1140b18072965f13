"""Everyday-scene layout (issue 24 §2): category sizes, ground line, motions over each event's steps."""

from __future__ import annotations

import pytest

from dysen.dsg.types import Box, DynamicSceneGraph, Event, SceneGraph
from dysen.planner.layout import imagine_layout
from dysen.planner.rules import RulesPlanner
from dysen.planner.scene_layout import GROUND, category_of


def _box(dsg: DynamicSceneGraph, t: int, name: str) -> Box | None:
    return next((b for b in dsg.boxes[t] if b.object == name), None)


def _overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_a_man_walks_his_dog_then_throws_a_ball(seed: int) -> None:
    dsg = imagine_layout(RulesPlanner().plan("a man walks his dog, then throws a ball"), seed=seed)
    assert dsg.layout_source == "imagined-scene" and len(dsg.boxes) == dsg.num_steps + 1
    walk, throw = dsg.events
    for t in range(dsg.num_steps + 1):
        man, dog = _box(dsg, t, "man"), _box(dsg, t, "dog")
        assert man.y1 == pytest.approx(GROUND, abs=1e-3) and dog.y1 == pytest.approx(GROUND, abs=1e-3)  # on the ground
        assert (man.y1 - man.y0) > 2 * (dog.y1 - dog.y0) and _overlap(man, dog) == 0  # a man is taller; apart
    moves = [(_box(dsg, walk.end, n).x0 - _box(dsg, walk.start, n).x0) for n in ("man", "dog")]
    assert abs(moves[0]) > 0.15 and moves[0] == pytest.approx(moves[1], abs=1e-3)  # same way, same distance
    held = _box(dsg, throw.start, "ball")
    assert _overlap(held, _box(dsg, throw.start, "man")) > 0  # in his hand when the throw starts
    flown = _box(dsg, throw.end, "ball")
    assert flown is None or _overlap(flown, _box(dsg, throw.end, "man")) == 0  # and out of it when it ends
    assert (flown.y1 - flown.y0) < 0.1 if flown else True
    assert imagine_layout(RulesPlanner().plan("a man walks his dog, then throws a ball"), seed=seed) == dsg


@pytest.mark.parametrize(
    "prompt",
    [
        "a car drives toward the camera",
        "a woman enters from the left, then sits on a bench",
        "a bird flies away, then a cat jumps",
        "a boy runs to the right while a girl walks to the left",
        "the dog runs out of the frame",
        "a horse gallops across the field, then a tree falls",
        "three people dance in a park",  # not designed for: no motion at all
    ],
)
def test_everyday_boxes_stay_inside_the_frame_and_have_plausible_sizes(prompt: str) -> None:
    dsg = imagine_layout(RulesPlanner().plan(prompt), seed=3)
    assert dsg.boxes is not None and dsg.layout_source == "imagined-scene"
    for boxes in dsg.boxes:
        for b in boxes:
            assert 0 <= b.x0 < b.x1 <= 1 and 0 <= b.y0 < b.y1 <= 1
            assert 0.0001 < (b.x1 - b.x0) * (b.y1 - b.y0) < 0.9


def test_depth_enter_and_leave_change_the_box_as_they_should() -> None:
    planner = RulesPlanner()
    car = imagine_layout(planner.plan("a car drives toward the camera"), seed=0)
    first, last = car.boxes[0][0], car.boxes[-1][0]
    assert (last.x1 - last.x0) > 1.3 * (first.x1 - first.x0) and last.y1 > first.y1  # bigger and lower
    woman = imagine_layout(planner.plan("a woman enters from the left, then sits on a bench"), seed=0)
    seen = [_box(woman, t, "woman") for t in range(woman.num_steps + 1)]
    assert seen[0] is None and seen[-1] is not None  # off screen first
    entering = [b for b in seen if b is not None]
    assert entering[0].x0 == 0.0 and entering[0].x1 < entering[-1].x1  # comes in over the left edge
    dog = imagine_layout(planner.plan("the dog runs out of the frame"), seed=0)
    assert _box(dog, 0, "dog") is not None and _box(dog, dog.num_steps, "dog") is None


def test_categories_and_provenance() -> None:
    assert category_of("brown dog").height < category_of("tall man").height
    assert category_of("bird").layer == "air" and category_of("spaceship").height == category_of("thing").height
    shapes = imagine_layout(RulesPlanner().plan("a red circle moves right"), seed=0)
    assert shapes.layout_source == "imagined-shapes"
    given = DynamicSceneGraph(
        events=(Event(agent="man", predicate="walks", start=0, end=1),),
        graphs=(SceneGraph.from_facts(objects=["man"]),),
        boxes=((Box(object="man", x0=0.1, y0=0.1, x1=0.3, y1=0.9),),),
    )
    kept = imagine_layout(given, seed=0)
    assert kept.boxes == given.boxes and kept.layout_source == "given"
    assert DynamicSceneGraph.from_json(kept.to_json()) == kept
