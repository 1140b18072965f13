"""DSG metrics against hand-computed values (dysen_spec.md §2.4)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dysen.dsg import Event, SceneGraph, action_planning_reliability, event_exact_match, triplet_prf, triplet_recall


def _ev(start: int, end: int, agent: str = "lady", predicate: str = "sits on", target: str | None = "chair") -> Event:
    return Event(agent=agent, predicate=predicate, target=target, start=start, end=end)


def _g(*facts: tuple[str, ...]) -> SceneGraph:
    return SceneGraph.from_facts(
        relations=[f for f in facts if len(f) == 3], attributes=[f for f in facts if len(f) == 2]
    )


LADY = [_ev(0, 5), _ev(1, 2, predicate="drinks", target="coffee"), _ev(3, 5, predicate="looks out", target="window")]


# -- action planning reliability ---------------------------------------------------------------------


def test_apr_identical_schedules_score_one():
    assert action_planning_reliability(LADY, LADY) == 1.0
    assert action_planning_reliability(LADY, list(reversed(LADY))) == 1.0


def test_apr_shifted_times_score_one_over_one_plus_distance():
    assert action_planning_reliability([_ev(1, 3)], [_ev(0, 2)]) == pytest.approx(1 / (1 + math.sqrt(2)))
    assert action_planning_reliability([_ev(0, 3)], [_ev(0, 7)]) == pytest.approx(1 / 5)


def test_apr_missed_and_hallucinated_events_both_cost():
    assert action_planning_reliability(LADY[:1], LADY[:2]) == pytest.approx(1 / 2)
    assert action_planning_reliability(LADY[:2], LADY[:1]) == pytest.approx(1 / 2)
    wrong_target = _ev(0, 5, target="sofa")
    assert action_planning_reliability([wrong_target], LADY[:1]) == 0.0


def test_apr_matches_labels_case_and_space_insensitively_and_targetless_events():
    pred = [_ev(0, 5, agent="Lady ", predicate="SITS  on", target="Chair"), _ev(0, 1, predicate="jumps", target=None)]
    gold = [_ev(0, 5), _ev(0, 1, predicate="jumps", target=None)]
    assert action_planning_reliability(pred, gold) == 1.0


def test_apr_assignment_is_optimal_not_greedy():
    # Greedy by distance pairs (2,5)-(2,3) first (1/3) and then (0,3)-(4,5) (1/(1+sqrt 20)); the best pairing
    # (0,3)-(2,3) and (2,5)-(4,5) scores 1/3 + 1/3.
    pred, gold = [_ev(0, 3), _ev(2, 5)], [_ev(4, 5), _ev(2, 3)]
    assert action_planning_reliability(pred, gold) == pytest.approx((1 / 3 + 1 / 3) / 2)


def test_apr_empty_inputs():
    assert action_planning_reliability([], []) == 1.0
    assert action_planning_reliability([], LADY) == 0.0
    assert action_planning_reliability(LADY, []) == 0.0


def test_apr_large_groups_of_one_triplet_are_still_scored():
    gold = [_ev(s, s + 1) for s in range(12)]
    assert action_planning_reliability(gold, gold) == 1.0
    shifted = [_ev(s + 1, s + 2) for s in range(12)]
    # 11 exact pairs; the leftover pair is 12v apart at both ends.
    assert action_planning_reliability(shifted, gold) == pytest.approx((11 + 1 / (1 + 12 * math.sqrt(2))) / 12)


spans = st.tuples(st.integers(0, 5), st.integers(1, 3)).map(lambda t: _ev(t[0], t[0] + t[1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(spans, max_size=5), st.lists(spans, max_size=5))
def test_apr_equals_brute_force_over_all_pairings(pred, gold):
    if len(pred) < len(gold):
        pred, gold = gold, pred
    best = max(
        (
            sum(
                1 / (1 + math.hypot(pred[i].start - g.start, pred[i].end - g.end))
                for i, g in zip(rows, gold, strict=True)
            )
            for rows in itertools.permutations(range(len(pred)), len(gold))
        ),
        default=0.0,
    )
    expected = best / max(len(pred), len(gold)) if pred else 1.0
    assert action_planning_reliability(pred, gold) == pytest.approx(expected)
    assert 0.0 <= action_planning_reliability(gold, pred) <= 1.0


# -- triplet recall and F1 ---------------------------------------------------------------------------

A, B, C, D, E = (
    ("woman", "in", "room"),
    ("bag", "cloth"),
    ("woman", "holds", "bag"),
    ("woman", "opens", "door"),
    ("door", "red"),
)


def test_triplet_recall_identical_sequences_score_one():
    graphs = [_g(A, B), _g(), _g(C)]
    assert triplet_recall(graphs, graphs) == 1.0


def test_triplet_recall_alignment_is_monotone():
    gold = [_g(A, B), _g(C), _g(D, E)]
    pred = [_g(A), _g(D), _g(C)]
    # pred 0 -> gold 0 (1/2); pred 1 -> gold 2 (1/2); pred 2 may not go back to gold 1 -> gold 2 (0).
    assert triplet_recall(pred, gold) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)


def test_triplet_recall_may_reuse_a_gold_graph_and_ignores_case():
    gold = [_g(A, B)]
    pred = [_g(("Woman", "IN", "Room")), _g(A, B)]
    assert triplet_recall(pred, gold) == pytest.approx((1 / 2 + 1) / 2)


def test_triplet_recall_empty_gold_graphs_are_recalled_only_by_empty_predictions():
    assert triplet_recall([_g(A), _g()], [_g(A), _g(B), _g()]) == 1.0
    assert triplet_recall([_g(C)], [_g()]) == 0.0


def test_triplet_recall_empty_inputs():
    assert triplet_recall([], []) == 1.0
    assert triplet_recall([], [_g(A)]) == 0.0
    assert triplet_recall([_g(A)], []) == 0.0


def test_triplet_prf_step_by_step_for_equal_lengths():
    precision, recall, f1 = triplet_prf([_g(A, B), _g(C)], [_g(A), _g(C, D)])
    assert (precision, recall, f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


def test_triplet_prf_uses_monotone_alignment_for_unequal_lengths():
    # Both predicted graphs align to gold 0: 2 of 3 predicted facts are right, 1 of 3 gold facts is found.
    precision, recall, f1 = triplet_prf([_g(A), _g(A, D)], [_g(A), _g(B), _g(C)])
    assert (precision, recall, f1) == pytest.approx((2 / 3, 1 / 3, 4 / 9))


def test_triplet_prf_empty_inputs():
    assert triplet_prf([], []) == (1.0, 1.0, 1.0)
    assert triplet_prf([_g()], [_g()]) == (1.0, 1.0, 1.0)
    assert triplet_prf([_g()], [_g(A)]) == (0.0, 0.0, 0.0)
    assert triplet_prf([_g(A)], []) == (0.0, 0.0, 0.0)
    assert triplet_prf([], [_g(A)]) == (0.0, 0.0, 0.0)


# -- exact match -------------------------------------------------------------------------------------


def test_event_exact_match_compares_multisets_after_normalisation():
    shouty = [_ev(3, 5, agent="LADY", predicate="looks  out", target="Window"), *LADY[:2]]
    assert event_exact_match(shouty, LADY)
    assert not event_exact_match(LADY[:2], LADY)
    assert not event_exact_match([*LADY, LADY[0]], [*LADY, LADY[1]])
    assert not event_exact_match([_ev(0, 4)], [_ev(0, 5)])
    assert event_exact_match([], [])
