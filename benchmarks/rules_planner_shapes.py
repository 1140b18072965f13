"""Rules planner on Dynamic Shapes captions: how often Step I recovers the gold events exactly, and how fast.

Plans ``--per-split`` captions of every split (``sample_clip(i, split, seed)``, no rendering) with
``RulesPlanner`` and prints one JSON object: the event-level exact-match rate (``event_exact_match``)
overall, per split and per number of gold events; the mean action-planning reliability (APR) and
triplet recall of the planned graphs against the gold graphs; milliseconds per prompt (planning only);
the machine; and up to 10 failures (caption, planned events, gold events).

    python benchmarks/rules_planner_shapes.py [--per-split 250] [--seed 0] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

from dysen.data.shapes import SPLITS, sample_clip
from dysen.dsg.metrics import action_planning_reliability, event_exact_match, triplet_recall
from dysen.dsg.types import Event
from dysen.planner.rules import RulesPlanner


def _rows(events: tuple[Event, ...]) -> list[list]:
    return [[e.agent, e.predicate, e.target, e.start, e.end] for e in events]


def run(per_split: int, seed: int) -> dict:
    """Plan ``per_split`` captions of each split; exact match, APR, triplet recall, speed and failures."""
    planner = RulesPlanner()
    clips = [sample_clip(i, split, seed) for split in SPLITS for i in range(per_split)]
    start = time.perf_counter()
    plans = [planner.plan(clip.caption) for clip in clips]
    seconds = time.perf_counter() - start
    hits: dict[str, list[bool]] = defaultdict(list)
    by_events: dict[int, list[bool]] = defaultdict(list)
    apr, recall, failures = [], [], []
    for clip, plan in zip(clips, plans, strict=True):
        exact = event_exact_match(plan.events, clip.dsg.events)
        hits[clip.split].append(exact)
        by_events[len(clip.dsg.events)].append(exact)
        apr.append(action_planning_reliability(plan.events, clip.dsg.events))
        recall.append(triplet_recall(plan.graphs, clip.dsg.graphs))
        if not exact and len(failures) < 10:
            failures.append({"caption": clip.caption, "planned": _rows(plan.events), "gold": _rows(clip.dsg.events)})
    every = [h for split in SPLITS for h in hits[split]]
    return {
        "prompts": len(clips),
        "seed": seed,
        "event_exact_match": sum(every) / len(every),
        "event_exact_match_per_split": {split: sum(hits[split]) / len(hits[split]) for split in SPLITS},
        "event_exact_match_per_num_events": {n: sum(v) / len(v) for n, v in sorted(by_events.items())},
        "apr": sum(apr) / len(apr),
        "triplet_recall": sum(recall) / len(recall),
        "ms_per_prompt": 1000 * seconds / len(clips),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-split", type=int, default=250, help="captions per split")
    parser.add_argument("--seed", type=int, default=0, help="Dynamic Shapes seed")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    text = json.dumps(run(args.per_split, args.seed), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
