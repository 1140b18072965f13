"""A picture of a dynamic scene graph: events as bars over time, and each step's scene graph below.

Used by ``dysen plan --render`` and written beside every generated video. The top panel is a Gantt
chart of the events (Step I) on the time axis in units v; the bottom panel has one column per time
step listing its objects with their attributes and its relations (Steps II–III). matplotlib is
imported only when a picture is drawn (Agg backend: no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dysen.atomic import staged_file
from dysen.dsg.types import DynamicSceneGraph, SceneGraph
from dysen.errors import DysenError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_BAR_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
_PICTURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg")
_LINE_CHARS = 40
"""Longest line of a step's column (about 2.5 inches at 8 pt), or of an event's label; longer ones end in '…'."""
_COLUMN_FONT = 8
"""Font size of the steps' columns (points); the figure is only as wide as their longest line needs."""
_CHAR_INCHES = 0.56 * _COLUMN_FONT / 72
"""Width of one character of a column, with some room (DejaVu Sans averages about 0.52 em)."""
_MAX_BARS = 24
"""Event bars drawn at most; a longer plan shows its first ones and says how many more there are."""
_MAX_COLUMNS = 12
"""Step columns drawn at most (the events' time axis still spans every step)."""
_MAX_LINES = 40
"""Lines of one step's column at most."""
_MAX_TICKS = 17
"""Labelled ticks on the time axis at most."""
_TITLE_CHARS = 120
"""Longest title (the prompt); longer ones end in '…'."""
_DPI = 150
"""Dots per inch of raster pictures, lowered for a picture whose longer side would pass ``_MAX_PIXELS``."""
_MAX_PIXELS = 3400
"""Longest side of a raster picture, in pixels (issue 22's bound on the timeline; the caps above keep the other
side smaller)."""


def graph_lines(graph: SceneGraph) -> list[str]:
    """The lines that describe one scene graph: 'object: attr, attr' per object, then 's —p→ o' per relation."""
    attributes: dict[str, list[str]] = {name: [] for name in graph.objects}
    for attribute in graph.attributes:
        attributes[attribute.object].append(attribute.attribute)
    lines = [f"{name}: {', '.join(attrs)}" if attrs else name for name, attrs in attributes.items()]
    lines += [f"{r.subject} —{r.predicate}→ {r.object}" for r in graph.relations]
    if len(lines) > _MAX_LINES:
        lines = [*lines[: _MAX_LINES - 1], f"… and {len(lines) - _MAX_LINES + 1} more"]
    return [_short(line, _LINE_CHARS) for line in lines] or ["(empty)"]


def _short(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def timeline_figure(dsg: DynamicSceneGraph, title: str | None = None) -> Figure:
    """The two-panel figure of ``dsg`` (events over time; the scene graph of every step).

    Its size is bounded whatever the plan: at most ``_MAX_BARS`` event bars and ``_MAX_COLUMNS`` step columns of
    ``_MAX_LINES`` lines are drawn, and the rest is counted ("… and 12 more")."""
    from matplotlib.figure import Figure

    columns = [graph_lines(g) for g in dsg.graphs[:_MAX_COLUMNS]]
    rows = max(len(lines) for lines in columns)
    chars = max(len(line) for lines in columns for line in lines)
    column = max(1.0, 0.15 + chars * _CHAR_INCHES)  # as wide as the longest line: a narrower picture reads larger
    width = max(6.0, column * len(columns))
    bars_height = 0.5 + 0.35 * max(1, min(len(dsg.events), _MAX_BARS))
    graphs_height = 0.35 + 0.16 * (rows + 1)
    figure = Figure(figsize=(width, bars_height + graphs_height + 0.6), layout="constrained")
    top, bottom = figure.subplots(2, 1, height_ratios=[bars_height, graphs_height])
    _draw_events(top, dsg)
    _draw_graphs(bottom, columns, dsg.num_steps)
    if title:
        figure.suptitle(_short(" ".join(title.split()), _TITLE_CHARS), fontsize=10)
    return figure


def _draw_events(axes, dsg: DynamicSceneGraph) -> None:
    axes.set_xlim(0, dsg.num_steps)
    ticks = range(0, dsg.num_steps + 1, -(-dsg.num_steps // (_MAX_TICKS - 1)))
    axes.set_xticks(ticks, [f"{t}v" for t in ticks], fontsize=8)
    axes.grid(axis="x", linewidth=0.4, alpha=0.5)
    if not dsg.events:
        axes.set_yticks([])
        axes.text(dsg.num_steps / 2, 0.5, "no events (a static scene)", ha="center", va="center", fontsize=8)
        return
    shown = dsg.events if len(dsg.events) <= _MAX_BARS else dsg.events[: _MAX_BARS - 1]
    labels = []
    for row, event in enumerate(shown):
        axes.barh(row, event.end - event.start, left=event.start, height=0.6, color=_BAR_COLOURS[row % 8])
        labels.append(_short(" ".join(part for part in event.triplet if part), _LINE_CHARS))
    if len(shown) < len(dsg.events):
        labels.append(f"… and {len(dsg.events) - len(shown)} more events")
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_ylim(len(labels) - 0.5, -0.5)
    axes.set_title("events (Step I)", fontsize=9, loc="left")


def _draw_graphs(axes, columns: list[list[str]], num_steps: int) -> None:
    """The first ``len(columns)`` steps' graphs, one column each, and how many steps are not shown."""
    axes.set_axis_off()
    axes.set_xlim(0, len(columns))
    axes.set_ylim(0, 1)
    more = f" (steps 0–{len(columns) - 1} of {num_steps}; the rest not shown)" if len(columns) < num_steps else ""
    axes.set_title(f"scene graph of each step (Steps II–III){more}", fontsize=9, loc="left")
    for step, lines in enumerate(columns):
        axes.axvline(step, color="#bbbbbb", linewidth=0.5)
        text = f"step {step}\n" + "\n".join(lines)
        axes.text(step + 0.05, 1.0, text, va="top", ha="left", fontsize=_COLUMN_FONT)


def save_timeline(dsg: DynamicSceneGraph, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw ``dsg`` to ``path`` (.png, .svg, .pdf or .jpg), atomically; returns the path."""
    return _save(timeline_figure(dsg, title), Path(path))


def _save(figure: Figure, out: Path) -> Path:
    if out.suffix.lower() not in _PICTURE_SUFFIXES:
        raise DysenError(f"cannot draw a DSG to {out}: use one of {', '.join(_PICTURE_SUFFIXES)}")
    try:
        with staged_file(out) as temporary:
            figure.savefig(temporary, dpi=min(_DPI, _MAX_PIXELS / max(figure.get_size_inches())))
    except OSError as err:
        raise DysenError(f"cannot write the DSG picture {out}: {err}") from None
    return out


_MAX_PANELS = 12
"""Keyframe panels of the boxes picture at most (a longer plan shows its first ones and says so)."""
_MAX_BOXES = 16
"""Boxes drawn per panel at most (the others are counted in the panel's corner)."""
_PANEL_COLUMNS = 3
"""Panels per row of the boxes picture: at the demo page's half width a label stays about 12 px high."""
_PANEL_INCHES = 1.9
"""Side of one keyframe panel; with the caps the boxes picture is at most 855 x 1,220 pixels at ``_DPI``."""
_SHAPE_COLOURS = {
    "red": "#dc2828", "orange": "#f58c14", "yellow": "#ebd71e", "green": "#28af3c", "blue": "#285aeb",
    "purple": "#963cd2", "pink": "#ff82be", "cyan": "#1ed2dc",
}  # fmt: skip
"""Dynamic Shapes' paints (``dysen.world.vocab.PAINTS``; ``dsg`` may not import ``world``); other colour words are
drawn as matplotlib names them."""
_CANVAS = "#181818"
"""The panels' background: the Dynamic Shapes canvas, so a white or yellow shape shows as in the video."""


def boxes_figure(dsg: DynamicSceneGraph, title: str | None = None) -> Figure | None:
    """Small multiples of ``dsg``'s boxes over time, or None when it has no boxes.

    One panel per keyframe (each step's first frame, and the last frame when ``boxes[M]`` is given), at most
    ``_MAX_PANELS``: every visible object's box in its colour attribute (else a palette colour), labelled; a
    turned object also shows its turn (a rotated square inside its box and the angle in degrees); a dashed box
    and an arrow show where it was at the keyframe before."""
    from matplotlib.figure import Figure

    if not dsg.boxes:
        return None
    keyframes = dsg.boxes[:_MAX_PANELS]
    count = len(keyframes)
    columns = min(count, _PANEL_COLUMNS)
    rows = -(-count // columns)
    figure = Figure(figsize=(_PANEL_INCHES * columns, _PANEL_INCHES * rows + 0.5), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    names = list(dict.fromkeys(box.object for frame in dsg.boxes for box in frame))
    for index, axes in enumerate(grid.flat):
        if index >= count:
            axes.set_axis_off()
            continue
        graph = dsg.graphs[min(index, dsg.num_steps - 1)]
        before = {box.object: box for box in keyframes[index - 1]} if index else {}
        label = f"step {index}" if index < dsg.num_steps else "last frame"
        _draw_keyframe(axes, keyframes[index], before, graph, names, label)
    if title:
        figure.suptitle(_short(" ".join(title.split()), _TITLE_CHARS // 2), fontsize=9)
    else:  # a band at the top, where the demo page lays its label over the picture
        figure.get_layout_engine().set(rect=(0, 0, 1, 1 - 0.25 / figure.get_size_inches()[1]))
    more = f"the first {count} of {len(dsg.boxes)} keyframes; " if count < len(dsg.boxes) else ""
    figure.supxlabel(f"{more}dashed: the box at the keyframe before; arrow: the move", fontsize=8)
    return figure


def _colour_of(name: str, graph: SceneGraph, names: list[str]) -> str:
    """The object's colour attribute at this step, as Dynamic Shapes paints it (else as matplotlib names it), or
    its palette colour."""
    from matplotlib.colors import is_color_like

    for attribute in graph.attributes:
        word = attribute.attribute.strip().lower()
        if attribute.object == name and word in _SHAPE_COLOURS:
            return _SHAPE_COLOURS[word]
        if attribute.object == name and len(word) > 2 and word.isalpha() and is_color_like(word):
            return word
    return _BAR_COLOURS[names.index(name) % len(_BAR_COLOURS)]


def _draw_keyframe(axes, boxes, before: dict, graph: SceneGraph, names: list[str], label: str) -> None:
    import math

    from matplotlib.patches import FancyArrowPatch, Rectangle

    axes.set_facecolor(_CANVAS)
    axes.set_xlim(0, 1)
    axes.set_ylim(1, 0)  # image coordinates: y down
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_aspect("equal")
    axes.set_title(label, fontsize=8, loc="left", pad=2)
    if len(boxes) > _MAX_BOXES:
        axes.text(0.98, 0.98, f"+{len(boxes) - _MAX_BOXES} more", color="#dddddd", fontsize=7, ha="right", va="bottom")
    for box in boxes[:_MAX_BOXES]:
        colour = _colour_of(box.object, graph, names)
        width, height = box.x1 - box.x0, box.y1 - box.y0
        centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
        old = before.get(box.object)
        if old is not None and (old.x0, old.y0, old.x1, old.y1) != (box.x0, box.y0, box.x1, box.y1):
            axes.add_patch(
                Rectangle((old.x0, old.y0), old.x1 - old.x0, old.y1 - old.y0, fill=False, edgecolor=colour,
                          linestyle="--", linewidth=0.8, alpha=0.6)
            )  # fmt: skip
            start = ((old.x0 + old.x1) / 2, (old.y0 + old.y1) / 2)
            if math.dist(start, centre) > 0.03:  # a move, not a turning shape's box breathing
                axes.add_patch(FancyArrowPatch(start, centre, arrowstyle="-|>", mutation_scale=9, color="#dddddd",
                                               linewidth=1.0))  # fmt: skip
        axes.add_patch(Rectangle((box.x0, box.y0), width, height, fill=False, edgecolor=colour, linewidth=1.6))
        text = box.object
        turn = box.angle % (2 * math.pi)
        if min(turn, 2 * math.pi - turn) > 1e-3:
            side = min(width, height) / (abs(math.cos(box.angle)) + abs(math.sin(box.angle)))
            axes.add_patch(
                Rectangle((centre[0] - side / 2, centre[1] - side / 2), side, side, angle=math.degrees(box.angle),
                          rotation_point="center", facecolor=colour, alpha=0.45, edgecolor=colour)
            )  # fmt: skip
            text += f" {math.degrees(box.angle):.0f}°"
        above = box.y0 >= 0.1  # else the label goes below the box, inside the panel
        left = box.x0 < 0.45  # else it ends at the box's right edge, inside the panel
        axes.text(box.x0 if left else box.x1, box.y0 - 0.015 if above else box.y1 + 0.015, _short(text, 18),
                  color="white", fontsize=8, va="bottom" if above else "top", ha="left" if left else "right",
                  clip_on=True)  # fmt: skip


def save_boxes(dsg: DynamicSceneGraph, path: str | os.PathLike, title: str | None = None) -> Path | None:
    """Draw ``dsg``'s boxes over time to ``path`` (as ``save_timeline``); None, and no file, when it has none."""
    figure = boxes_figure(dsg, title)
    if figure is None:
        return None
    return _save(figure, Path(path))
