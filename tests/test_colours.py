"""Colours the Dynamic Shapes world lacks are drawn as the nearest world colour, and the plan says so (issue 23)."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import pytest

from dysen.cli import main
from dysen.dsg import DynamicSceneGraph, Event
from dysen.errors import DysenError
from dysen.planner.colours import collected_warnings, colour_warnings, with_world_colours
from dysen.planner.layout import imagine_layout
from dysen.planner.motion import with_motion
from dysen.planner.rules import RulesPlanner
from dysen.world import vocab
from dysen.world.colours import COLOUR_NAMES, DEFAULT_PALETTE, WORLD_COLOUR_OF, delta_e, lab, nearest_world_colour


@pytest.fixture(scope="module")
def planner() -> RulesPlanner:
    return RulesPlanner()


def _colours(dsg: DynamicSceneGraph, name: str) -> set[str]:
    return {a.attribute for g in dsg.graphs for a in g.attributes if a.object == name and a.attribute in COLOUR_NAMES
            or a.object == name and a.attribute in vocab.COLOURS}  # fmt: skip


# -- the table ------------------------------------------------------------------------------------


def test_lab_of_the_reference_colours() -> None:
    assert lab((255, 255, 255)) == pytest.approx((100.0, 0.0, 0.0), abs=0.01)
    assert lab((0, 0, 0)) == pytest.approx((0.0, 0.0, 0.0), abs=0.01)
    assert lab((255, 0, 0)) == pytest.approx((53.24, 80.09, 67.20), abs=0.05)  # the textbook sRGB red


def test_every_colour_word_maps_to_the_world_colour_least_far_in_cielab() -> None:
    assert len(COLOUR_NAMES) >= 40 and not set(COLOUR_NAMES) & set(vocab.COLOURS)
    for word, rgb in COLOUR_NAMES.items():
        distances = {world: delta_e(rgb, paint) for world, paint in vocab.COLOURS.items()}
        world, distance = WORLD_COLOUR_OF[word]
        assert world in vocab.COLOURS and distance == pytest.approx(min(distances.values()))
        assert distances[world] == min(distances.values()), word
    assert WORLD_COLOUR_OF["gray"] == WORLD_COLOUR_OF["grey"]
    assert WORLD_COLOUR_OF["crimson"][0] == "red" and WORLD_COLOUR_OF["navy"][0] == "blue"  # sanity: plain cases


def test_nearest_world_colour_of_world_colours_and_unknown_words() -> None:
    for colour in vocab.COLOURS:
        assert nearest_world_colour(colour) == (colour, 0.0)
    assert nearest_world_colour("White") == WORLD_COLOUR_OF["white"]
    assert nearest_world_colour("shiny") is None and nearest_world_colour("triangle") is None


# -- applied to every plan --------------------------------------------------------------------------


def test_a_white_triangle_is_drawn_in_the_nearest_world_colour_with_a_warning(
    planner: RulesPlanner, caplog: pytest.LogCaptureFixture
) -> None:
    world, distance = WORLD_COLOUR_OF["white"]
    with caplog.at_level(logging.WARNING, logger="dysen.planner.colours"):
        dsg = planner.plan("a white triangle disappears")
    assert _colours(dsg, "triangle") == {world}
    assert "'white'" in caplog.text and f"triangle is drawn {world}" in caplog.text
    (shape,) = imagine_layout(dsg, seed=0).boxes[0]  # the layout draws the world colour (it keeps no random one)
    assert shape.object == "triangle"


def test_a_change_to_a_colour_the_world_lacks_is_a_change_to_the_nearest(
    planner: RulesPlanner, caplog: pytest.LogCaptureFixture
) -> None:
    world = WORLD_COLOUR_OF["pink"][0]
    with caplog.at_level(logging.WARNING, logger="dysen.planner.colours"):
        dsg = planner.plan("the square turns pink")
    (event,) = dsg.events
    assert event.target == world and event.motion is not None and event.motion.action == "change_colour"
    assert not any("pink" in o for g in dsg.graphs for o in g.objects)  # the colour node is renamed too
    assert caplog.text.count("'pink'") == 1 and f"square is drawn {world}" in caplog.text
    # a colour the motion lexicon did not know made "turns" a rotation before; as its world colour it is a change
    assert planner.plan("a red square turns navy").events[0].motion.action == "change_colour"


def test_a_hand_written_plan_is_mapped_at_the_seam_and_its_warning_listed() -> None:
    dsg = DynamicSceneGraph.from_events([Event(agent="cyan circle", predicate="becomes white", start=0, end=2)])
    lines = colour_warnings(dsg)
    assert len(lines) == 2 and any("'cyan'" in line for line in lines) and any("'white'" in line for line in lines)
    mapped = with_motion(dsg)
    (event,) = mapped.events
    assert event.agent == f"{WORLD_COLOUR_OF['cyan'][0]} circle"
    assert event.predicate == f"becomes {WORLD_COLOUR_OF['white'][0]}" and event.motion.action == "change_colour"
    assert colour_warnings(mapped) == []  # mapped once: no second warning downstream


def test_world_colours_give_no_warning_and_the_plan_is_unchanged(
    planner: RulesPlanner, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dysen.planner.colours"):
        dsg = planner.plan("a red circle moves right, then a blue square turns yellow")
    assert caplog.text == "" and colour_warnings(dsg) == []
    assert with_world_colours(dsg) is dsg


def test_adjectives_that_name_no_colour_are_left_alone(planner: RulesPlanner) -> None:
    dsg = planner.plan("a shiny square jumps")
    assert "shiny" in {a.attribute for g in dsg.graphs for a in g.attributes} and colour_warnings(dsg) == []
    sky = DynamicSceneGraph.from_events([Event(agent="circle", predicate="flies into", target="sky", start=0, end=2)])
    assert with_world_colours(sky) is sky  # a noun that is also a colour word is only a colour after a colour verb
    for predicate, place in (("goes up to", "sky"), ("turns toward", "rose")):  # a colour verb, but a place
        event = Event(agent="circle", predicate=predicate, target=place, start=0, end=2)
        placed = DynamicSceneGraph.from_events([event])
        assert with_world_colours(placed) is placed
        assert with_motion(placed).events[0].motion.kind != "change_colour"


def test_dysen_plan_warns_and_prints_the_mapped_plan(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), caplog.at_level(logging.WARNING, logger="dysen.planner.colours"):
        assert main(["plan", "a white star jumps", "--format", "json"]) == 0
    assert "white" not in out.getvalue() and WORLD_COLOUR_OF["white"][0] in out.getvalue()
    assert "'white'" in caplog.text and f"drawn {WORLD_COLOUR_OF['white'][0]}" in caplog.text


def test_the_demo_collects_the_warnings_logged_while_planning(planner: RulesPlanner) -> None:
    with collected_warnings() as said:
        planner.plan("a brown circle jumps")
    assert len(said) == 1 and "'brown'" in said[0]


def test_the_demo_status_line_names_the_colour_for_a_prompt_and_an_edited_plan(tmp_path: Path) -> None:
    from dysen.dsg import format_dsg
    from web_fixtures import tiny_service

    service = tiny_service(tmp_path)
    world = WORLD_COLOUR_OF["white"][0]
    planned = service.plan("a white triangle disappears")
    assert "'white'" in planned.summary and f"triangle is drawn {world}" in planned.summary
    edited = DynamicSceneGraph.from_events([Event(agent="square", predicate="turns", target="pink", start=0, end=2)])
    checked = service.check(format_dsg(edited))
    assert "'pink'" in checked.summary and f"drawn {WORLD_COLOUR_OF['pink'][0]}" in checked.summary
    assert "colour" not in service.plan("a red circle jumps").summary


# -- the shipped model ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_shipped_model_draws_a_white_star_in_its_mapped_colour() -> None:
    from dysen.eval.dynamics import score_video
    from dysen.eval.tracking import track_shapes
    from dysen.pipeline import load_pipeline

    pipe = load_pipeline()
    palette = tuple(pipe.config.planner.colours or DEFAULT_PALETTE)  # the shipped model's: the six, pink and cyan
    video = pipe("a white star jumps", seed=0, progress=False)
    world = nearest_world_colour("white", palette)[0]  # type: ignore[index]
    assert _colours(video.dsg, "star") == {world}
    score = score_video(video.frames, video.dsg, palette)
    assert score.object_fidelity == 1.0
    seen = [c for c in track_shapes(video.frames, palette)["star"].colour if c is not None]
    assert seen and max(set(seen), key=seen.count) == world


EIGHT = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "cyan")
"""The palette of a model trained on the extended world (``--world-colours``)."""


def test_a_wider_palette_keeps_its_own_colours_and_maps_their_cousins_to_them() -> None:
    from dysen.world.colours import colour_map

    nearest = colour_map(EIGHT)
    assert "pink" not in nearest and "cyan" not in nearest  # drawn as themselves
    assert nearest["hotpink"][0] == "pink" and nearest["aqua"][0] == "cyan"
    assert WORLD_COLOUR_OF["hotpink"][0] != "pink"  # the default world has no pink
    assert nearest_world_colour("pink", EIGHT) == ("pink", 0.0)
    with pytest.raises(ValueError, match="palette"):
        colour_map(("red", "teal"))


def test_a_planner_for_a_wider_palette_plans_pink_as_pink_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from dysen.planner.build import PlannerOptions, build_planner

    caplog.set_level(logging.WARNING)
    plan = build_planner(PlannerOptions(colours=EIGHT)).plan("a pink circle moves right, then turns cyan")
    facts = {(a.object, a.attribute) for g in plan.graphs for a in g.attributes}
    assert ("circle", "pink") in facts and plan.events[-1].target == "cyan"
    assert "no colour" not in caplog.text
    default = RulesPlanner().plan("a pink circle moves right")  # the default world: pink is drawn as the nearest
    assert ("circle", WORLD_COLOUR_OF["pink"][0]) in {(a.object, a.attribute) for a in default.graphs[0].attributes}


def test_a_palette_the_world_cannot_paint_is_refused() -> None:
    from dysen.planner.build import PlannerOptions

    with pytest.raises(DysenError, match="PlannerOptions.colours"):
        PlannerOptions(colours=("red", "teal"))


def test_a_model_that_draws_any_colour_keeps_colours_as_written(caplog: pytest.LogCaptureFixture) -> None:
    """A pretrained backbone has no world palette (PlannerOptions.colours None): white stays white, no warning."""
    from dysen.planner.build import PlannerOptions, build_planner

    caplog.set_level(logging.WARNING)
    plan = build_planner(PlannerOptions(colours=None)).plan("a white dog runs left, then turns navy")
    facts = {(a.object, a.attribute) for g in plan.graphs for a in g.attributes}
    assert ("dog", "white") in facts and plan.events[-1].target == "navy"
    assert "no colour" not in caplog.text
    assert colour_warnings(plan, None) == [] and with_world_colours(plan, None) is plan
