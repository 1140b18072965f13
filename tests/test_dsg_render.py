"""The DSG timeline picture: written atomically as a real image, lines that describe each graph."""

from __future__ import annotations

import pytest

from dysen.dsg import Event, SceneGraph, events_to_dsg
from dysen.dsg.render import graph_lines, save_timeline
from dysen.dsg.types import Box
from dysen.errors import DysenError

DSG = events_to_dsg(
    [
        Event(agent="man", predicate="walks", target="dog", start=0, end=2),
        Event(agent="dog", predicate="barks", start=1, end=3),
    ]
)


def test_graph_lines_list_objects_with_attributes_then_relations():
    graph = SceneGraph.from_facts([("man", "walks", "dog")], [("dog", "brown"), ("dog", "barks")])
    assert graph_lines(graph) == ["man", "dog: brown, barks", "man —walks→ dog"]
    assert graph_lines(SceneGraph()) == ["(empty)"]


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_save_timeline_writes_a_picture_and_no_temporary(tmp_path, suffix, magic):
    out = save_timeline(DSG, tmp_path / f"plan{suffix}", title="a man walks his dog")
    assert out.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_save_timeline_refuses_unknown_formats_and_unwritable_places(tmp_path):
    with pytest.raises(DysenError, match="use one of"):
        save_timeline(DSG, tmp_path / "plan.txt")
    with pytest.raises(DysenError, match="cannot write"):
        save_timeline(DSG, tmp_path / "missing" / "plan.png")


def test_a_long_plan_is_summarised_not_drawn_in_full():
    from dysen.dsg.render import timeline_figure

    events = [Event(agent=f"thing {i}", predicate="moves right", start=i, end=i + 1) for i in range(30)]
    figure = timeline_figure(events_to_dsg(events), title="t" * 1000)
    top, bottom = figure.axes
    labels = [tick.get_text() for tick in top.get_yticklabels()]
    assert len(labels) == 24 and labels[-1] == "… and 7 more events"
    assert len(top.get_xticklabels()) <= 17
    assert "steps 0–11 of 30" in bottom.get_title(loc="left")
    assert figure.get_size_inches()[0] <= (0.15 + 40 * 0.56 * 8 / 72) * 12
    assert len(figure._suptitle.get_text()) == 120




def test_the_pictures_of_a_plan_at_the_bounds_stay_within_their_pixel_caps(tmp_path):
    """Regression (issues 22, 23): however long the plan, the pictures stay small and quick to draw."""
    import time

    from PIL import Image

    from dysen.dsg.render import boxes_figure, save_boxes

    events = [Event(agent=f"thing {i} " + "y" * 60, predicate="moves right", start=i, end=i + 1) for i in range(60)]
    clock = time.perf_counter()
    timeline = save_timeline(events_to_dsg(events), tmp_path / "timeline.png", title="t" * 1000)
    with Image.open(timeline) as image:
        assert max(image.size) <= 3400 and min(image.size) <= 2400, image.size
    steps, objects = 256, 64  # the DSG's bounds (DSGLimits: max_steps, max_objects_per_graph)
    dsg = events_to_dsg([Event(agent=f"s{i}", predicate="moves right", start=i, end=steps) for i in range(objects)])
    boxes = [[Box(object=f"s{i}", x0=0.1, y0=0.1 + j / 400, x1=0.2, y1=0.2 + j / 400) for i in range(objects)]
             for j in range(steps + 1)]  # fmt: skip
    dsg = dsg.model_copy(update={"boxes": tuple(tuple(frame) for frame in boxes)})
    figure = boxes_figure(dsg)
    assert len([axes for axes in figure.axes if axes.get_title(loc="left")]) == 12  # of 257 keyframes
    assert sum(len(axes.patches) for axes in figure.axes) <= 12 * 16 * 3  # 16 boxes a panel (with trails)
    assert "the first 12 of 257 keyframes" in figure.get_supxlabel()
    out = save_boxes(dsg, tmp_path / "boxes.png", title="b" * 1000)
    with Image.open(out) as image:
        assert image.width <= 900 and image.height <= 1300, image.size
    assert time.perf_counter() - clock < 20  # about 1.5 s on one core


def _moving_plan():
    from dysen.planner.layout import imagine_layout

    dsg = events_to_dsg(
        [
            Event(agent="circle", predicate="moves right", start=0, end=2),
            Event(agent="square", predicate="rotates", start=2, end=4),
        ]
    )
    return imagine_layout(dsg, seed=3)


def test_boxes_figure_draws_one_panel_per_keyframe_with_every_visible_box():
    from matplotlib.patches import FancyArrowPatch, Rectangle

    from dysen.dsg.render import boxes_figure

    dsg = _moving_plan()
    assert dsg.boxes is not None
    figure = boxes_figure(dsg, title="a circle moves right, then a square rotates")
    panels = [axes for axes in figure.axes if axes.get_title(loc="left")]
    assert len(panels) == len(dsg.boxes)
    assert panels[0].get_title(loc="left") == "step 0"
    for axes, keyframe in zip(panels, dsg.boxes, strict=True):
        labels = {text.get_text().split(" ")[0] for text in axes.texts}
        assert labels == {box.object for box in keyframe}
    arrows = sum(isinstance(p, FancyArrowPatch) for axes in panels for p in axes.patches)
    assert arrows >= 1  # the circle's move shows as an arrow
    assert all(any(isinstance(p, Rectangle) for p in axes.patches) for axes in panels)


def test_boxes_figure_shows_an_objects_turn_and_colour(tmp_path):
    import math

    from matplotlib.colors import to_hex

    from dysen.dsg.render import boxes_figure, save_boxes

    dsg = events_to_dsg([Event(agent="star", predicate="rotates", start=0, end=1)])
    white = SceneGraph.from_facts([], [("star", "white")]).attributes
    graphs = tuple(g.model_copy(update={"attributes": (*g.attributes, *white)}) for g in dsg.graphs)
    turn = math.pi / 2 + 0.3
    upright, turned = (Box(object="star", x0=0.3, y0=0.3, x1=0.6, y1=0.6, angle=a) for a in (0.0, turn))
    boxes = ((upright,), (turned,))
    dsg = dsg.model_copy(update={"graphs": graphs, "boxes": boxes})
    figure = boxes_figure(dsg)
    last = [axes for axes in figure.axes if axes.get_title(loc="left") == "last frame"][0]
    assert any("°" in text.get_text() for text in last.texts)
    turned = [p for p in last.patches if p.get_fill()]
    assert turned and turned[0].angle == pytest.approx(math.degrees(turn))
    assert to_hex(last.patches[0].get_edgecolor()) == "#ffffff"
    assert save_boxes(dsg, tmp_path / "boxes.png").read_bytes().startswith(b"\x89PNG")


def test_a_plan_without_boxes_draws_no_boxes_picture(tmp_path):
    from dysen.dsg.render import boxes_figure, save_boxes

    assert boxes_figure(DSG) is None
    assert save_boxes(DSG, tmp_path / "boxes.png") is None and not list(tmp_path.iterdir())


def test_the_boxes_colours_are_dynamic_shapes_own():
    from dysen.dsg.render import _SHAPE_COLOURS
    from dysen.world.vocab import PAINTS

    assert set(_SHAPE_COLOURS) == set(PAINTS)
    for name, hex_colour in _SHAPE_COLOURS.items():
        assert hex_colour == "#{:02x}{:02x}{:02x}".format(*PAINTS[name])
