"""How well a planned DSG matches a gold one: the reward terms of Dysen's RL stage, made well defined.

Dysen-VDM §3.3 and the released reward code (dysen_spec.md §2.4). Labels are compared after
lowercasing and collapsing whitespace. Every score lies in [0, 1]; two empty inputs agree perfectly (1).

* ``action_planning_reliability`` (APR), Step I schedules. Predicted events are matched one-to-one to
  gold events with the same (agent, predicate, target), maximising the total pair score
      score(p, g) = 1 / (1 + d),   d = sqrt((s_p - s_g)^2 + (e_p - e_g)^2)
  (1 when the times agree; the paper's 1/d is infinite then). Unmatched events score 0, and
      APR = sum of matched scores / max(|pred|, |gold|),
  so both missed and hallucinated events cost. The paper instead compares unmatched events to (0, 0)
  and does not normalise.
* ``triplet_recall`` ("imagination rationality"), Step III graphs. Monotone alignment: predicted graph
  i is paired with the gold graph j >= j(i-1) (j(-1) = 0) with the most overlapping facts, ties going
  to the higher recall, then the earlier graph. Its recall is |P_i ∩ G_j| / |G_j|; against a gold
  graph without facts it is 1 if P_i is empty too, else 0. The paper sums these over i; we average,
      TriRec = (1 / |pred|) * sum_i recall_i.
* ``triplet_prf``: micro precision/recall/F1 over facts. Graph i is paired with gold graph i when both
  sequences have the same length, else by the monotone alignment above. With A_j the union of the
  predicted facts paired with gold graph j,
      P = sum_i |P_i ∩ G_a(i)| / sum_i |P_i|,   R = sum_j |A_j ∩ G_j| / sum_j |G_j|,   F1 = 2PR / (P + R);
  gold graphs paired with nothing count fully as missed. A 0/0 ratio is 1 when both sides have no
  facts, else 0.
* ``event_exact_match``: the same multiset of (agent, predicate, target, start, end).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from dysen.dsg.types import Event, SceneGraph

_EXACT_LIMIT = 10
"""Largest group side matched exactly (bitmask DP over 2^n states); larger groups are matched greedily."""

_Key = tuple[str, str, str]
_Fact = tuple[str, ...]


def _norm(label: str | None) -> str:
    return " ".join((label or "").lower().split())


def _key(event: Event) -> _Key:
    return (_norm(event.agent), _norm(event.predicate), _norm(event.target))


def _pair_score(pred: Event, gold: Event) -> float:
    return 1.0 / (1.0 + math.hypot(pred.start - gold.start, pred.end - gold.end))


def action_planning_reliability(pred_events: Sequence[Event], gold_events: Sequence[Event]) -> float:
    """APR in [0, 1]: optimal one-to-one matching by triplet, 1/(1+d) per pair, over max(|pred|, |gold|)."""
    if not pred_events and not gold_events:
        return 1.0
    preds: dict[_Key, list[Event]] = defaultdict(list)
    golds: dict[_Key, list[Event]] = defaultdict(list)
    for event in pred_events:
        preds[_key(event)].append(event)
    for event in gold_events:
        golds[_key(event)].append(event)
    total = 0.0
    for key in preds.keys() & golds.keys():
        total += _best_matching([[_pair_score(p, g) for g in golds[key]] for p in preds[key]])
    return total / max(len(pred_events), len(gold_events))


def _best_matching(scores: list[list[float]]) -> float:
    """The largest total score of a one-to-one matching of rows to columns (scores are >= 0)."""
    if len(scores) < len(scores[0]):
        scores = [list(column) for column in zip(*scores, strict=True)]
    width = len(scores[0])
    if width > _EXACT_LIMIT:
        return _greedy_matching(scores)
    best = [0.0] * (1 << width)
    for row in scores:
        step = best[:]
        for used, value in enumerate(best):
            for col in range(width):
                if not used >> col & 1:
                    taken = used | 1 << col
                    step[taken] = max(step[taken], value + row[col])
        best = step
    return max(best)


def _greedy_matching(scores: list[list[float]]) -> float:
    """Take pairs in decreasing score (i.e. increasing time distance), each row and column at most once."""
    pairs = sorted(((s, r, c) for r, row in enumerate(scores) for c, s in enumerate(row)), reverse=True)
    rows: set[int] = set()
    cols: set[int] = set()
    total = 0.0
    for score, row, col in pairs:
        if row not in rows and col not in cols:
            rows.add(row)
            cols.add(col)
            total += score
    return total


def event_exact_match(pred: Sequence[Event], gold: Sequence[Event]) -> bool:
    """True when both hold the same multiset of (agent, predicate, target, start, end), labels normalised."""

    def counts(events: Sequence[Event]) -> Counter:
        return Counter((*_key(e), e.start, e.end) for e in events)

    return counts(pred) == counts(gold)


def _facts(graph: SceneGraph) -> set[_Fact]:
    return {tuple(_norm(x) for x in fact) for fact in graph.facts()}


def _recall(pred: set[_Fact], gold: set[_Fact]) -> float:
    if not gold:
        return 1.0 if not pred else 0.0
    return len(pred & gold) / len(gold)


def _monotone_alignment(pred: list[set[_Fact]], gold: list[set[_Fact]]) -> list[int]:
    """For each predicted graph, its gold graph: at or after the previous one, most overlap, then best recall."""
    aligned = []
    start = 0
    for facts in pred:
        start = max(range(start, len(gold)), key=lambda j: (len(facts & gold[j]), _recall(facts, gold[j]), -j))
        aligned.append(start)
    return aligned


def triplet_recall(pred_graphs: Sequence[SceneGraph], gold_graphs: Sequence[SceneGraph]) -> float:
    """Imagination rationality in [0, 1]: mean recall of the gold facts over monotonically aligned graphs."""
    pred = [_facts(g) for g in pred_graphs]
    gold = [_facts(g) for g in gold_graphs]
    if not pred or not gold:
        return float(not pred and not gold)
    aligned = _monotone_alignment(pred, gold)
    return sum(_recall(p, gold[j]) for p, j in zip(pred, aligned, strict=True)) / len(pred)


def _ratio(hits: int, total: int, other_total: int) -> float:
    if total:
        return hits / total
    return float(other_total == 0)


def triplet_prf(pred_graphs: Sequence[SceneGraph], gold_graphs: Sequence[SceneGraph]) -> tuple[float, float, float]:
    """Micro (precision, recall, F1) of facts, step by step for equal lengths, else by monotone alignment."""
    pred = [_facts(g) for g in pred_graphs]
    gold = [_facts(g) for g in gold_graphs]
    if not gold:
        return (1.0, 1.0, 1.0) if not any(pred) else (0.0, 0.0, 0.0)
    aligned = list(range(len(pred))) if len(pred) == len(gold) else _monotone_alignment(pred, gold)
    recalled: list[set[_Fact]] = [set() for _ in gold]
    for facts, j in zip(pred, aligned, strict=True):
        recalled[j] |= facts & gold[j]
    pred_total = sum(len(p) for p in pred)
    gold_total = sum(len(g) for g in gold)
    precision = _ratio(sum(len(p & gold[j]) for p, j in zip(pred, aligned, strict=True)), pred_total, gold_total)
    recall = _ratio(sum(len(r) for r in recalled), gold_total, pred_total)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
