"""Evaluation reports: ``report.json`` (everything), ``report.md`` (tables) and PNG plots (matplotlib).

A report is one dict: what ran (protocol, command, dysen version, machine, wall time) and one row per
variant (model, weight hashes, sample counts, frames, resolution, sampling settings, scores). The
Markdown says for every number which weights, how many samples, which resolution and frame count made
it; rows that did not run say why.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dysen import __version__
from dysen.atomic import write_text_atomic

SHAPES_COLUMNS = (
    ("action_accuracy", "action acc."),
    ("object_fidelity", "object fid."),
    ("order_accuracy", "order acc."),
    ("order_when_seen", "order, both seen"),
    ("dynamic_degree", "dynamic degree"),
    ("mean_flow", "mean flow (px)"),
    ("plan_reliability", "plan APR"),
)
"""Columns of the Dynamic Shapes comparison table: summary key, header."""

PLOTTED = ("action_accuracy", "object_fidelity", "order_accuracy", "dynamic_degree")


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Where the numbers were made: OS, Python, torch, CPU count and the accelerator, if any."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def new_report(protocol: str, command: Sequence[str], settings: dict[str, Any], device: str) -> dict[str, Any]:
    """The header of a report; rows and wall time are added as they are made."""
    return {
        "protocol": protocol,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dysen_version": __version__,
        "command": shlex.join(command),
        "machine": machine_info(device),
        "settings": settings,
        "rows": [],
    }


def write_report(out: Path, report: dict[str, Any]) -> list[Path]:
    """Write ``report.json``, the plots and ``report.md`` into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    write_text_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if report["protocol"] == "prompts":
        plots, markdown = [], prompts_markdown(report)
    elif report["protocol"] == "shapes":
        plots = _shapes_plots(out, report["rows"])
        markdown = shapes_markdown(report, [p.name for p in plots])
    else:
        plots = _metric_plots(out, report["rows"])
        markdown = zero_shot_markdown(report, [p.name for p in plots])
    md_path = out / "report.md"
    write_text_atomic(md_path, markdown)
    return [json_path, md_path, *plots]


# -- Markdown -------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _with_se(summary: dict[str, Any], key: str) -> Any:
    """``summary[key]``, as 'value ± standard error' where the summary has one (``key + '_se'``)."""
    value, error = summary.get(key), summary.get(f"{key}_se")
    return f"{value:.3f} ± {error:.3f}" if isinstance(value, float) and isinstance(error, float) else value


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


def _header(report: dict[str, Any], title: str) -> list[str]:
    machine = report["machine"]
    where = f"{machine['platform']}, Python {machine['python']}, torch {machine['torch']}, {machine['cpus']} CPUs"
    if "gpu" in machine:
        where += f", {machine['gpu']}"
    return [
        f"# {title}",
        "",
        f"- created {report['created']} by dysen {report['dysen_version']}; wall time {report.get('wall_s', 0):.1f} s",
        f"- command: `{report['command']}`",
        f"- machine: {where}; device {machine['device']}",
        "",
    ]


def _provenance(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per row: what made its videos (weights with hashes, sampling, seeds, counts, frames, resolution)."""
    lines = ["## What made each row", ""]
    for row in rows:
        if "skipped" in row:
            lines.append(f"- **{row['name']}**: not run: {row['skipped']}")
            continue
        height, width = row["resolution"]
        counts = f"{row['num_samples']} videos of {row['frames']} frames at {width}x{height}"
        if row["source"] == "reconstructions":
            lines.append(f"- **{row['name']}**: {row['renderer']}, by the autoencoder of {row['model']}; {counts}")
            lines += [f"  - `{name}` sha256 `{digest}`" for name, digest in row["weights"].items()]
        elif row["source"] == "backbone":
            lines.append(_backbone_line(row, counts))
            lines += [f"  - `{name}` sha256 `{digest}`" for name, digest in row["weights"].items()]
        elif "model" in row:
            sampling = row["sampling"]
            lines.append(
                f"- **{row['name']}**: {row['model']}; {counts}"
                + (f" of the captions of {row['captions']}" if "captions" in row else "")
                + f"; {sampling['steps']} sampling steps, guidance "
                f"{sampling['guidance']} (DSG {_fmt(sampling['dsg_guidance'])}), plan from the {sampling['plan']}, "
                f"seeds {row['seeds'][0]}..{row['seeds'][1]}; {planner_text(row['planner'])}; {row['wall_s']} s"
            )
            lines += [f"  - `{name}` sha256 `{digest}`" for name, digest in row["weights"].items()]
        else:
            origin = row.get("renderer") or f"videos in {row.get('videos')}"
            if "scored_against" in row:
                origin += f", scored against {row['scored_against']}"
            lines.append(f"- **{row['name']}**: {origin}; {counts}; {row['wall_s']} s")
            lines += _skipped_lines(row.get("skipped_videos"))
    return lines + [""]


def _backbone_line(row: dict[str, Any], counts: str) -> str:
    """A backbone row's provenance: the folder, its size rule, the control and the sampling."""
    sampling, control = row["sampling"], row["control"]
    if not control["steered_steps"]:
        steered = "no DSG control (the backbone alone)"
    else:
        steered = (
            f"DSG control strength {control['strength']:g} on the first {control['steered_steps']} steps "
            f"(share {control['steps']:g}), plan from the {sampling['plan']}"
        )
        if row["planner"] is not None:
            steered += f"; {planner_text(row['planner'])}"
    made = row["generated"]["resolution"]
    if made != row["resolution"]:
        counts += f" (generated at {made[1]}x{made[0]}, scaled down for scoring)"
    return (
        f"- **{row['name']}**: {row['model']} ({row['backbone']['dtype']}); {counts} (the fewest frames it takes "
        f">= the benchmark's {row['benchmark_frames']}, all scored) of the captions of {row['captions']}; "
        f"{sampling['steps']} sampling steps, guidance {sampling['guidance']}, seeds {row['seeds'][0]}.."
        f"{row['seeds'][1]}; {steered}; {row['wall_s']} s"
    )


def _skipped_lines(skipped: dict[str, Any] | None) -> list[str]:
    """The files of a folder row that were not scored, and why (``score_folder``)."""
    if not skipped:
        return []
    head = f"  - {skipped['count']} video file(s) skipped (unreadable):"
    return [head] + [f"    - `{Path(f['file']).name}`: {f['reason']}" for f in skipped["files"]]


def planner_text(planner: dict[str, Any]) -> str:
    """'planner rules (imagination on, demonstrations chosen by the RL policy …/policy)' and the like."""
    backend = planner["backend"] + (f" {planner['model']}" if planner.get("model") else "")
    imagination = "on" if planner["imagination"] else "off"
    if planner["demos"] == "random":
        demos = "random demonstrations"
    elif planner.get("source") == "none":
        demos = "no demonstrations"
    elif planner.get("policy"):
        demos = f"demonstrations chosen by the RL policy {planner['policy']}"
    else:
        demos = f"demonstrations retrieved from {planner.get('source', 'the default bank')}"
    return f"planner {backend} (imagination {imagination}, {demos})"


def shapes_markdown(report: dict[str, Any], plots: Sequence[str]) -> str:
    """The Dynamic Shapes benchmark report: comparison, per action type, per number of events, provenance."""
    rows = report["rows"]
    run = [r for r in rows if "summary" in r]
    lines = _header(report, "Dynamics benchmark on Dynamic Shapes")
    lines += [
        "Scores in [0, 1] from pixels alone against each clip's gold DSG (`dysen.eval.dynamics`): action accuracy "
        "(share of gold events whose action shows in its frame window, ±1 frame), object fidelity (shapes seen with "
        "the gold colour), order accuracy (pairs of sequential events seen in the gold order). Dynamic degree is "
        "VBench's rule on OpenCV Farneback flow (share of videos with enough pairs whose top-5% flow exceeds "
        "6·min(H,W)/256 px); mean flow is the mean top-5% flow per frame pair. Plan APR is the action-planning "
        "reliability of the DSG the model followed against the gold one. Dynamic degree measures motion, not "
        "faithfulness (noise reads as dynamic, and at 64 px the slower Dynamic Shapes actions stay under VBench's "
        "threshold): read it beside the ground-truth row.",
        "",
        "## Comparison",
        "",
    ]
    table = []
    for row in rows:
        if "skipped" in row:
            table.append([row["name"], "not run", "", *[""] * len(SHAPES_COLUMNS)])
            continue
        overall = row["summary"]["overall"]
        size = f"{row['frames']}x{row['resolution'][0]}x{row['resolution'][1]}"
        table.append([row["name"], row["num_samples"], size, *[_with_se(overall, k) for k, _ in SHAPES_COLUMNS]])
    lines += _table(["variant", "videos", "T×H×W", *[h for _, h in SHAPES_COLUMNS]], table) + [""]
    lines += [f"![{name}]({name})" for name in plots] + [""]
    if run:
        actions = sorted({a for r in run for a in r["summary"]["per_action"]})
        lines += ["## Action accuracy per action type", ""]
        per_action = [
            [a, *[_count_cell(r["summary"]["per_action"].get(a), "action_accuracy") for r in run]] for a in actions
        ]
        lines += _table(["action", *[r["name"] for r in run]], per_action) + [""]
        counts = sorted({int(k) for r in run for k in r["summary"]["per_num_events"]})
        lines += ["## Per number of events (action / object / order accuracy, dynamic degree)", ""]
        per_count = [[k, *[_events_cell(r["summary"]["per_num_events"].get(str(k))) for r in run]] for k in counts]
        lines += _table(["events", *[r["name"] for r in run]], per_count) + [""]
    lines += _provenance(rows)
    return "\n".join(lines)


def prompts_markdown(report: dict[str, Any]) -> str:
    """The prompt-set report (``dysen eval --prompts``): per row, overall and per split, per action, provenance."""
    from dysen.eval.prompt_summary import prompt_markdown

    lines = _header(report, f"Prompt set {report['settings']['prompts']}")
    lines += [
        "Each prompt is planned and generated by the model, and its video scored from pixels against the DSG it "
        "followed (`dysen.eval.dynamics`). An expected event counts as drawn (action accuracy) iff the plan has a "
        "matching event (shape or synonym, world colour, canonical action: `dysen.eval.expected`) and the scorer "
        "saw that event in its window, ±1 frame. Plan accuracy: expected events the plan realises. Object fidelity "
        "and order accuracy: the scorer's, over prompts whose plan realises every expected event. ± one standard "
        "error with the prompt as the unit (`dysen.eval.stats`).",
        "",
    ]
    for row in report["rows"]:
        lines += [f"## {row['name']}", "", *prompt_markdown(row["summary"]), ""]
    lines += _provenance(report["rows"])
    return "\n".join(lines)


def _count_cell(group: dict[str, Any] | None, key: str) -> str:
    if not group:
        return "–"
    return f"{_fmt(group.get(key))} (n={group['events']})"


def _events_cell(group: dict[str, Any] | None) -> str:
    if not group:
        return "–"
    values = " / ".join(_fmt(group.get(k)) for k in PLOTTED)
    return f"{values} (n={group['clips']})"


def zero_shot_markdown(report: dict[str, Any], plots: Sequence[str]) -> str:
    """A zero-shot protocol report (UCF-101 or MSR-VTT): metrics per model, feature networks and counts."""
    rows = report["rows"]
    settings = report["settings"]
    lines = _header(report, f"Zero-shot {report['protocol'].upper()} evaluation")
    lines += [f"Protocol: {settings.get('description', report['protocol'])}", ""]
    metrics = sorted({m for r in rows for m in r.get("metrics", {})})
    table = []
    for r in rows:
        size = f"{r['frames']}x{r['resolution'][0]}x{r['resolution'][1]}"
        table.append([r["name"], r["num_samples"], r["num_real"], size, *[r["metrics"].get(m) for m in metrics]])
    lines += ["## Metrics", ""] + _table(["model", "generated", "real", "T×H×W", *metrics], table) + [""]
    lines += [f"![{name}]({name})" for name in plots] + [""]
    lines += ["## Feature networks", ""]
    for name, digest in settings.get("extractors", {}).items():
        lines.append(f"- {name}: sha256 `{digest}`")
    lines += [""] + _provenance(rows)
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------------------


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _bars(ax: Any, groups: Sequence[str], series: dict[str, Sequence[float | None]]) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series (None drawn as 0)."""
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [v or 0.0 for v in values], width, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.legend(fontsize=8)


def _shapes_plots(out: Path, rows: Sequence[dict[str, Any]]) -> list[Path]:
    run = [r for r in rows if "summary" in r]
    if not run:
        return []
    fig, ax = _figure(7, 4)
    _bars(ax, list(PLOTTED), {r["name"]: [r["summary"]["overall"].get(k) for k in PLOTTED] for r in run})
    ax.set_ylim(0, 1.05)
    ax.set_title("Dynamic Shapes: scores per variant")
    paths = [_save(fig, out / "scores.png")]
    actions = sorted({a for r in run for a in r["summary"]["per_action"]})
    fig, ax = _figure(9, 4)
    series = {r["name"]: [r["summary"]["per_action"].get(a, {}).get("action_accuracy") for a in actions] for r in run}
    _bars(ax, actions, series)
    ax.set_ylim(0, 1.05)
    ax.set_title("Action accuracy per action type")
    paths.append(_save(fig, out / "per_action.png"))
    fig, ax = _figure(6, 4)
    for r in run:
        groups = r["summary"]["per_num_events"]
        counts = sorted(groups, key=int)
        ax.plot([int(k) for k in counts], [groups[k]["action_accuracy"] or 0.0 for k in counts], "o-", label=r["name"])
    ax.set_xlabel("events in the caption")
    ax.set_ylabel("action accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Action accuracy per number of events")
    paths.append(_save(fig, out / "per_num_events.png"))
    return paths


def _metric_plots(out: Path, rows: Sequence[dict[str, Any]]) -> list[Path]:
    metrics = sorted({m for r in rows for m in r.get("metrics", {}) if not m.endswith("_std")})
    if not metrics:
        return []
    fig, axes = _figure(3 * len(metrics), 3.5, ncols=len(metrics))
    axes = [axes] if len(metrics) == 1 else list(axes)
    for ax, metric in zip(axes, metrics, strict=True):
        ax.bar([r["name"] for r in rows], [r.get("metrics", {}).get(metric) or 0.0 for r in rows])
        ax.set_title(metric)
        ax.tick_params(axis="x", rotation=30)
    return [_save(fig, out / "metrics.png")]
