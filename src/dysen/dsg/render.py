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

from dysen.dsg.types import DynamicSceneGraph, SceneGraph
from dysen.errors import DysenError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_BAR_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
_PICTURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg")
_LINE_CHARS = 40
"""Longest line of a step's column (about 1.9 inches at 6 pt), or of an event's label; longer ones end in '…'."""
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
"""Dots per inch of raster pictures: with the caps above a picture is at most about 3,400 x 2,300 pixels."""


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
    width = max(6.0, 1.9 * len(columns))
    bars_height = 0.5 + 0.35 * max(1, min(len(dsg.events), _MAX_BARS))
    graphs_height = 0.35 + 0.12 * (rows + 1)
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
    axes.set_xticks(ticks, [f"{t}v" for t in ticks], fontsize=7)
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
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_ylim(len(labels) - 0.5, -0.5)
    axes.set_title("events (Step I)", fontsize=8, loc="left")


def _draw_graphs(axes, columns: list[list[str]], num_steps: int) -> None:
    """The first ``len(columns)`` steps' graphs, one column each, and how many steps are not shown."""
    axes.set_axis_off()
    axes.set_xlim(0, len(columns))
    axes.set_ylim(0, 1)
    more = f" (steps 0–{len(columns) - 1} of {num_steps}; the rest not shown)" if len(columns) < num_steps else ""
    axes.set_title(f"scene graph of each step (Steps II–III){more}", fontsize=8, loc="left")
    for step, lines in enumerate(columns):
        axes.axvline(step, color="#bbbbbb", linewidth=0.5)
        axes.text(step + 0.05, 1.0, f"step {step}\n" + "\n".join(lines), va="top", ha="left", fontsize=6)


def save_timeline(dsg: DynamicSceneGraph, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw ``dsg`` to ``path`` (.png, .svg, .pdf or .jpg), atomically; returns the path."""
    out = Path(path)
    if out.suffix.lower() not in _PICTURE_SUFFIXES:
        raise DysenError(f"cannot draw a DSG to {out}: use one of {', '.join(_PICTURE_SUFFIXES)}")
    temporary = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        timeline_figure(dsg, title).savefig(temporary, dpi=_DPI)
        os.replace(temporary, out)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise DysenError(f"cannot write the DSG picture {out}: {err}") from None
    return out
