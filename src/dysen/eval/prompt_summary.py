"""Scores of a prompt-set evaluation with their standard errors: overall, per split, per action (incl. rotate).

Action accuracy (expected events drawn, end to end) and plan accuracy (expected events the plan realises) are
pooled over events, with the standard error that takes the prompt as the sampled unit (``dysen.eval.stats``: a
prompt's events share its plan and its video). Object fidelity and order accuracy are the scorer's, averaged over
the prompts whose plan realises every expected event (where they are defined: order needs two planned events with
disjoint windows), with the standard error of that mean (sample standard deviation / sqrt(n)).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dysen.errors import DysenError
from dysen.eval.prompt_set import PromptResult
from dysen.eval.stats import pooled_standard_error, standard_error

METRICS = ("action_accuracy", "object_fidelity", "order_accuracy", "plan_accuracy")


@dataclass(frozen=True)
class Estimate:
    """A share or a mean, its standard error and how many things it counts (None when there is nothing)."""

    value: float | None
    se: float | None
    n: int

    def text(self) -> str:
        """'0.824 ± 0.027 (n 199)', or '–' when nothing was counted."""
        if self.value is None:
            return "–"
        se = "" if self.se is None else f" ± {self.se:.3f}"
        return f"{self.value:.3f}{se} (n {self.n})"


def proportion(hits_per_prompt: Sequence[Sequence[bool]]) -> Estimate:
    """A share pooled over the events of many prompts, with its standard error over prompts."""
    hits = [hit for prompt in hits_per_prompt for hit in prompt]
    if not hits:
        return Estimate(None, None, 0)
    return Estimate(sum(hits) / len(hits), pooled_standard_error(hits_per_prompt), len(hits))


def mean(values: Iterable[float | None]) -> Estimate:
    """The mean of the values given (None skipped) with its standard error (None for a single value)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return Estimate(None, None, 0)
    return Estimate(sum(present) / len(present), standard_error(present), len(present))


@dataclass(frozen=True)
class GroupSummary:
    """The scores of a group of prompts."""

    prompts: int
    events: int
    action_accuracy: Estimate
    """Expected events drawn (planned right and seen in the planned window) / expected events."""
    plan_accuracy: Estimate
    """Expected events the plan realises / expected events."""
    object_fidelity: Estimate
    """The scorer's object fidelity against the plan, over prompts whose plan realises every expected event."""
    order_accuracy: Estimate
    """The scorer's order accuracy against the plan, over the same prompts (where defined)."""
    plans_matched: int
    """Prompts whose plan realises every expected event."""


def summarise_group(results: Sequence[PromptResult]) -> GroupSummary:
    """The scores of ``results`` (see ``GroupSummary``)."""
    drawn = [list(r.drawn) for r in results]  # per prompt
    matched = [[i is not None for i in r.matched] for r in results]
    right = [r for r in results if r.plan_matched]
    return GroupSummary(
        prompts=len(results),
        events=sum(len(d) for d in drawn),
        action_accuracy=proportion(drawn),
        plan_accuracy=proportion(matched),
        object_fidelity=mean(r.score.object_fidelity for r in right),
        order_accuracy=mean(r.score.order_accuracy for r in right),
        plans_matched=len(right),
    )


@dataclass(frozen=True)
class ActionSummary:
    """How the expected events of one canonical action fared."""

    events: int
    action_accuracy: Estimate
    plan_accuracy: Estimate


@dataclass(frozen=True)
class PromptSetSummary:
    """Overall, per split and per action."""

    overall: GroupSummary
    per_split: dict[str, GroupSummary]
    per_action: dict[str, ActionSummary]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (every ``Estimate`` as ``{"value", "se", "n"}``)."""
        return asdict(self)


def _per_action(results: Sequence[PromptResult]) -> dict[str, ActionSummary]:
    drawn: dict[str, list[list[bool]]] = defaultdict(list)  # action -> per prompt, its events' verdicts
    planned: dict[str, list[list[bool]]] = defaultdict(list)
    for r in results:
        mine: dict[str, list[bool]] = defaultdict(list)
        ours: dict[str, list[bool]] = defaultdict(list)
        for event, index, hit in zip(r.record.events, r.matched, r.drawn, strict=True):
            mine[event.action].append(hit)
            ours[event.action].append(index is not None)
        for action in mine:
            drawn[action].append(mine[action])
            planned[action].append(ours[action])
    return {
        action: ActionSummary(sum(len(h) for h in drawn[action]), proportion(drawn[action]),
                              proportion(planned[action]))  # fmt: skip
        for action in sorted(drawn)
    }


def summarise_prompts(results: Sequence[PromptResult]) -> PromptSetSummary:
    """Overall scores, per split and per action, each with its standard error."""
    if not results:
        raise DysenError("nothing to summarise: no prompt was scored")
    splits: dict[str, list[PromptResult]] = defaultdict(list)
    for r in results:
        splits[r.record.split].append(r)
    return PromptSetSummary(
        overall=summarise_group(results),
        per_split={name: summarise_group(group) for name, group in sorted(splits.items())},
        per_action=_per_action(results),
    )


def _cell(estimate: dict[str, Any]) -> str:
    """An ``Estimate`` as written in a report ({"value", "se", "n"}): '0.824 ± 0.027 (n 199)' or '–'."""
    return Estimate(**estimate).text()


def prompt_markdown(summary: dict[str, Any]) -> list[str]:
    """Markdown tables of a summary as written in a report (``PromptSetSummary.to_dict``): overall and per split,
    then per action."""
    lines = [
        "| group | prompts | action acc. | object fid. | order acc. | plan acc. | plans right |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in {"overall": summary["overall"], **summary["per_split"]}.items():
        cells = " | ".join(_cell(g[key]) for key in METRICS)
        lines.append(f"| {name} | {g['prompts']} | {cells} | {g['plans_matched']} |")
    lines += ["", "| action | events | action acc. | plan acc. |", "|---|---|---|---|"]
    for action, a in summary["per_action"].items():
        lines.append(f"| {action} | {a['events']} | {_cell(a['action_accuracy'])} | {_cell(a['plan_accuracy'])} |")
    return lines
