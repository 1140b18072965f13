"""Why shapes-tiny's turns writhe and its sequences overlap (issue 23), on Dynamic Shapes validation captions.

Findings (val seed 0, clips 0-599: 88 rotations in 86 clips, 242 clips of 2-3 phases; the shipped model, 25 steps,
guidance 4.0, seed = clip index; 2-core VM, 1 thread, 11 min beside other jobs). Rotation detected, per size s / l::

    variant                                     all    square s/l   triangle s/l   star s/l
    gold render                                 1.00   1.00/1.00    1.00/1.00      1.00/1.00
    through the shipped AE (4x, 16x16 latents)  0.83   1.00/1.00    1.00/1.00      0.00/0.93
    area to 16x16, bicubic back                 0.42   0.00/1.00    0.08/0.92      0.00/0.47
    area to 32x32, bilinear / bicubic back      0.98 / 1.00 (worst: small star 0.86 / 1.00)
    model, planned (imagined layout), 30 caps   0.13   square 0.30, triangle 0.12, star 0.00
    model, gold DSG (gold boxes and angles)     0.07   square 0.10, triangle 0.12, star 0.00

1. AE ceiling: only small stars are lost (0/14 turns; tracked on 0.15 of their window frames, 0.45 of all their
   shown frames); every other shape and size keeps >= 0.93 of its turns.
2. Resolution: a plain 16x16 grid holds no small polygon (bicubic: small square 0.00, triangle 0.08, star 0.00), a
   32x32 grid holds all. The learned AE beats resampling except on the small star (circumradius 5.8 px = 1.4 latent
   cells, its points sub-cell): 4x is too coarse for it, 2x (32x32 latents) would carry it.
3. Layout angle: the imagined layout equals the gold DSG on all 88 rotating agents (steps, events, angles, progress);
   radians, clockwise, positive, 1.5 periods (1.57-3.14 rad), as training saw; the UNet's layout maps get it at
   every frame (GraphBatch.layout_angle; also checked by hooking LayoutMaps while sampling). One offset, shared with
   training so no mismatch: keyframes sit at step starts, so the layout starts a turn (or a move) one frame before
   the render (51 of 88 agents). No angle bug.
4. UNet: gold boxes and angles turn no more shapes (0.07) than imagined ones (0.13), so the plan is not the cause.
   Static test (a large shape held at half a symmetry period, gold DSG, no event, 3 seeds x 3 shapes): found on
   1.00 of frames upright but 0.12 (0-0.38) turned; where found, triangles and stars come out upright (within 0.14
   period), squares as diamonds. The UNet cannot draw a turned polygon, still or moving: that is the writhing.
5. Order: gold 1.00, AE 0.879, model 0.787 (36 captions; AE on the same 0.861). Every lost pair has an event never
   seen anywhere: 0 reversed, 0 tied, 0 early or overlapping; over pairs with both events seen, order is 1.00 for
   all three. The AE's lost pairs are small stars' events (44 of 49: the tracker loses the shape), the model's
   rotations (9 of 13). The order metric counts an unseen event as out of order, so it repeats action misses.
   Progress: planned layouts give all 395 agents of the 242 captions exactly the gold per-frame progress.

For a retrain: teach turned shapes (random start angles for polygons, or still turned shapes, so turns are in
every clip, not only the rotating ones); a 2x AE (32x32 latents) or one weighted to small stars; keep the layout
signal; report order over pairs whose events are both seen beside the current order metric.

    python benchmarks/rotation_order.py [--num 600] [--generate 24] [--order-videos 30] [--out result.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from report import emit, machine  # benchmarks/report.py, beside this script

from dysen.data.shapes.render import render_clip, render_tracks
from dysen.data.video import frames_to_model, model_to_frames
from dysen.dsg.layout import frame_layout
from dysen.dsg.types import DynamicSceneGraph
from dysen.eval.dynamics import TOLERANCE_FRAMES, score_video
from dysen.eval.tracking import SYMMETRY as FOLDS
from dysen.eval.tracking import track_shapes
from dysen.models.graph_batch import GraphBatch
from dysen.planner.layout import imagine_layout
from dysen.world.clip import ShapesClip, sample_clip
from dysen.world.config import DEFAULT_CONFIG
from dysen.world.geometry import SYMMETRY
from dysen.world.gold import frame_boxes, gold_dsg
from dysen.world.motion import place
from dysen.world.story import Shape, Story, StoryEvent

SPLIT = "val"
STEPS, GUIDANCE = 25, 4.0
RESAMPLINGS = (("down16_bilinear", 16, "bilinear"), ("down16_bicubic", 16, "bicubic"))
RESAMPLINGS += (("down32_bilinear", 32, "bilinear"), ("down32_bicubic", 32, "bicubic"))

Frames = np.ndarray  # uint8 [T, H, W, 3]


# -- clips ------------------------------------------------------------------------------------------------


def val_clips(num: int) -> list[ShapesClip]:
    """Validation clips ``0 .. num-1`` (seed 0), the split the issue allows."""
    return [sample_clip(i, SPLIT, 0) for i in range(num)]


def rotates(clip: ShapesClip) -> bool:
    """Whether the clip has a rotation event."""
    return any(e.action == "rotate" for e in clip.story.events)


def sequential(clip: ShapesClip) -> bool:
    """Whether the clip has two or more phases (events with disjoint windows, so order is scored)."""
    return len(clip.story.phases) >= 2


def size_at(clip: ShapesClip, agent: str, frame: int) -> str:
    """Size name of shape ``agent`` at ``frame``."""
    return next(t.size[frame] for t in clip.tracks if t.name == agent)


# -- frame variants -----------------------------------------------------------------------------------------


def autoencode(vae: Any, frames: Frames) -> Frames:
    """``frames`` encoded and decoded by the shipped autoencoder (posterior mean), as ``dysen eval`` does."""
    video = frames_to_model(torch.from_numpy(frames))[None]  # [1, 3, T, H, W]
    with torch.no_grad():
        return model_to_frames(vae.decode(vae.encode(video))[0]).numpy()


def resample(frames: Frames, size: int, mode: str) -> Frames:
    """``frames`` area-downsampled to ``size`` x ``size`` and upsampled back by ``mode``: what a latent grid of
    that resolution could carry at best, with no learned decoder."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    small = F.interpolate(x, size=(size, size), mode="area")
    back = F.interpolate(small, size=frames.shape[1:3], mode=mode, align_corners=False)
    return back.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# -- rotation detection per shape and size (items 1, 2, 4) ----------------------------------------------------


def rotation_records(clip: ShapesClip, frames: Frames, dsg: DynamicSceneGraph | None = None) -> list[dict]:
    """One record per rotation event of ``clip`` in ``frames``: shape, size, detected, and the share of its
    window's frames where the tracker classified the shape at all."""
    score = score_video(frames, dsg or clip.dsg)
    tracks = track_shapes(frames)
    out = []
    for result in score.events:
        if result.event.predicate != "rotates":
            continue
        f0, f1 = result.frames
        track = tracks.get(result.event.agent)
        found = float(track.visible[f0:f1].mean()) if track is not None else 0.0
        size = size_at(clip, result.event.agent, f0)
        out.append({"shape": result.event.agent, "size": size, "detected": result.detected, "found": found})
    return out


def classification_records(clip: ShapesClip, frames: Frames) -> list[dict]:
    """Per polygon shape of ``clip``: the share of its fully shown frames (opacity >= 0.6) where the tracker
    finds it as that shape."""
    tracks = track_shapes(frames)
    out = []
    for track in clip.tracks:
        shown = np.array(track.alpha) >= 0.6
        if track.name not in SYMMETRY or not shown.any():
            continue
        seen = tracks[track.name].visible if track.name in tracks else np.zeros(len(shown), dtype=bool)
        out.append({"shape": track.name, "size": track.size[0], "found": float(seen[shown].mean())})
    return out


def summarise_rotations(records: Iterable[dict]) -> dict[str, Any]:
    """Detection rate and mean classification share per shape, per (shape, size) and in all."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        for key in ("all", r["shape"], f"{r['shape']}/{r['size']}"):
            groups[key].append(r)
    return {
        key: {
            "n": len(rs),
            "detected": round(float(np.mean([r["detected"] for r in rs])), 3),
            "shape_found": round(float(np.mean([r["found"] for r in rs])), 3),
        }
        for key, rs in sorted(groups.items())
    }


def summarise_classification(records: Iterable[dict]) -> dict[str, Any]:
    """Mean share of shown frames where each polygon (and size) is classified."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for key in (r["shape"], f"{r['shape']}/{r['size']}"):
            groups[key].append(r["found"])
    return {key: {"n": len(v), "found": round(float(np.mean(v)), 3)} for key, v in sorted(groups.items())}


def measure_ceilings(clips: list[ShapesClip], vae: Any) -> dict[str, Any]:
    """Items 1 and 2: rotation detection on gold renders, their AE round trip and their resampled versions."""
    variants: dict[str, Callable[[Frames], Frames]] = {
        "gold": lambda f: f,
        "autoencoder": lambda f: autoencode(vae, f),
    }
    for name, size, mode in RESAMPLINGS:
        variants[name] = lambda f, s=size, m=mode: resample(f, s, m)
    rotation: dict[str, list[dict]] = defaultdict(list)
    classes: dict[str, list[dict]] = defaultdict(list)
    for clip in clips:
        if not rotates(clip):
            continue
        gold = render_clip(clip)
        for name, make in variants.items():
            frames = make(gold)
            rotation[name] += rotation_records(clip, frames)
            classes[name] += classification_records(clip, frames)
    return {
        "rotation_clips": sum(rotates(c) for c in clips),
        "rotation": {name: summarise_rotations(rs) for name, rs in rotation.items()},
        "classification": {name: summarise_classification(rs) for name, rs in classes.items()},
    }


# -- the layout's angle signal (item 3) -----------------------------------------------------------------------


def per_frame(dsg: DynamicSceneGraph, agent: str, field: str, num_frames: int) -> list[float | None]:
    """``angle`` or ``progress`` of ``agent`` at each frame of ``frame_layout`` (None where absent / idle)."""
    layout = frame_layout(dsg, num_frames) or ()
    return [next((getattr(o, field) for o in objects if o.object == agent), None) for objects in layout]


def unet_angles(dsg: DynamicSceneGraph, agent: str, num_frames: int) -> list[float | None]:
    """The angle the UNet's layout maps receive for ``agent`` at each frame (``GraphBatch.layout_angle``; its
    slots follow ``frame_layout``'s order)."""
    batch = GraphBatch.from_dsgs([dsg], num_frames)
    layout = frame_layout(dsg, num_frames) or ()
    out = []
    for t, objects in enumerate(layout):
        slot = next((k for k, o in enumerate(objects) if o.object == agent), None)
        out.append(
            None if slot is None or not batch.layout_mask[0, t, slot] else float(batch.layout_angle[0, t, slot])
        )
    return out


def _gap(a: list[float | None], b: list[float | None]) -> float:
    """Largest absolute difference over the frames where both are set (inf if presence differs)."""
    if [x is None for x in a] != [x is None for x in b]:
        return math.inf
    return max((abs(x - y) for x, y in zip(a, b, strict=True) if x is not None), default=0.0)


def _turn(angles: list[float | None]) -> float | None:
    """Total turn over the frames where an angle is set (None if nowhere)."""
    shown = [a for a in angles if a is not None]
    return round(max(shown) - min(shown), 4) if shown else None


def layout_record(clip: ShapesClip, planner: Any, seed: int) -> dict[str, Any]:
    """Gold versus imagined angles and progress of each rotating agent of ``clip``, and what the UNet gets."""
    plan = imagine_layout(planner.plan(clip.caption), seed=seed)
    frames = DEFAULT_CONFIG.num_frames
    record: dict[str, Any] = {"index": clip.index, "same_steps": plan.num_steps == clip.dsg.num_steps}
    record["same_events"] = [e.triplet + (e.start, e.end) for e in plan.events] == [
        e.triplet + (e.start, e.end) for e in clip.dsg.events
    ]
    agents = sorted({e.agent for e in clip.dsg.events if e.predicate == "rotates"})
    rows = []
    for agent in agents:
        gold = per_frame(clip.dsg, agent, "angle", frames)
        imagined = per_frame(plan, agent, "angle", frames)
        rendered = list(next(t.angle for t in clip.tracks if t.name == agent))
        rows.append(
            {
                "agent": agent,
                "gold_turn": _turn(gold),
                "imagined_turn": _turn(imagined),
                "angle_gap_imagined_vs_gold": round(_gap(imagined, gold), 4),
                "angle_gap_layout_vs_render": round(_gap(gold, rendered), 4),
                "frames_layout_leads_render": [
                    t
                    for t, (g, r) in enumerate(zip(gold, rendered, strict=True))
                    if g is not None and abs(g - r) > 1e-3
                ],
                "angle_gap_unet_vs_layout": round(_gap(unet_angles(plan, agent, frames), imagined), 4),
                "progress_gap_imagined_vs_gold": round(
                    _gap(per_frame(plan, agent, "progress", frames), per_frame(clip.dsg, agent, "progress", frames)), 4
                ),
                "negative_angles": any(a is not None and a < -1e-6 for a in imagined),
            }
        )
    record["agents"] = rows
    return record


def measure_layout(clips: list[ShapesClip], planner: Any) -> dict[str, Any]:
    """Item 3 over every rotation clip: how often the imagined angles / progress differ from gold, and by what."""
    records = [layout_record(c, planner, c.index) for c in clips if rotates(c)]
    rows = [row for r in records for row in r["agents"]]
    turns = Counter(round(row["gold_turn"], 2) for row in rows if row["gold_turn"] is not None)
    return {
        "clips": len(records),
        "plan_same_steps": sum(r["same_steps"] for r in records),
        "plan_same_events": sum(r["same_events"] for r in records),
        "angles_equal_gold": sum(row["angle_gap_imagined_vs_gold"] < 1e-3 for row in rows),
        "progress_equal_gold": sum(row["progress_gap_imagined_vs_gold"] < 1e-3 for row in rows),
        "unet_gets_layout_angle": sum(row["angle_gap_unet_vs_layout"] < 1e-4 for row in rows),
        "rotating_agents": len(rows),
        "negative_angles": sum(row["negative_angles"] for row in rows),
        "gold_turn_radians": {str(k): v for k, v in sorted(turns.items())},
        "layout_leads_render_at_frame": dict(
            Counter(
                "window start - 1"
                if len(row["frames_layout_leads_render"]) == 1
                else str(row["frames_layout_leads_render"])
                for row in rows
            )
        ),
        "mismatches": [r for r in records if any(row["angle_gap_imagined_vs_gold"] >= 1e-3 for row in r["agents"])][
            :5
        ],
    }


# -- generation (items 4, 5) -----------------------------------------------------------------------------------


def generate(pipe: Any, clip: ShapesClip, seed: int, gold: bool) -> tuple[Frames, DynamicSceneGraph]:
    """The shipped model's video of ``clip``'s caption: planned (imagined layout) or from its gold DSG."""
    video = pipe(
        clip.caption, dsg=clip.dsg if gold else None, steps=STEPS, guidance=GUIDANCE, seed=seed, progress=False
    )
    return video.frames, video.dsg


def measure_generated_rotations(pipe: Any, clips: list[ShapesClip], count: int) -> dict[str, Any]:
    """Item 4: rotation detection of the shipped model, planned versus given the gold DSG, same seeds."""
    chosen = [c for c in clips if rotates(c)][:count]
    records: dict[str, list[dict]] = {"planned": [], "gold_dsg": []}
    for clip in chosen:
        for mode, gold in (("planned", False), ("gold_dsg", True)):
            frames, _ = generate(pipe, clip, clip.index, gold)
            records[mode] += rotation_records(clip, frames)
    return {"captions": len(chosen), **{m: summarise_rotations(rs) for m, rs in records.items()}}


def static_story(shape: str) -> Story:
    """A large red ``shape`` that stays still beside a small blue circle that moves right over the clip."""
    mover = StoryEvent(1, "move_right", 0, DEFAULT_CONFIG.num_steps, "blue")
    return Story((Shape(shape, "red", "large"), Shape("circle", "blue", "small")), ((mover,),))


def static_clip(shape: str, turn: float, seed: int) -> tuple[DynamicSceneGraph, Frames]:
    """Gold DSG and render of ``static_story(shape)`` with the shape held at ``turn`` radians (no event)."""
    config = DEFAULT_CONFIG
    story = static_story(shape)
    tracks = place(story, np.random.default_rng(seed), config)
    assert tracks is not None
    held = dataclasses.replace(tracks[0], angle=(turn,) * config.num_frames)
    tracks = (held, *tracks[1:])
    return gold_dsg(story, tracks, frame_boxes(tracks, config.num_frames), config), render_tracks(tracks, config)


def orientation(frames: Frames, shape: str) -> tuple[float | None, float]:
    """Mean orientation of ``shape`` in symmetry periods (circular mean, in [0, 1)) and the share of frames found."""
    track = track_shapes(frames).get(shape)
    if track is None or not track.visible.any():
        return None, 0.0
    phase = np.exp(2j * math.pi * track.angle[track.visible] * FOLDS[shape] / (2 * math.pi))
    return float(np.angle(phase.mean()) / (2 * math.pi) % 1.0), float(track.visible.mean())


def _period_gap(a: float | None, b: float | None) -> float | None:
    """Distance between two orientations in symmetry periods, in [0, 0.5]."""
    if a is None or b is None:
        return None
    d = abs(a - b) % 1.0
    return round(min(d, 1.0 - d), 3)


def measure_static(pipe: Any, seeds: int) -> list[dict]:
    """Item 4b: a triangle / star / square held at half a symmetry period (no event), from its gold DSG: is it
    drawn turned? Orientation gaps (symmetry periods) of the model's shape to the turned and the upright render."""
    rows = []
    for shape in ("triangle", "star", "square"):
        half = SYMMETRY[shape] / 2
        for seed in range(seeds):
            dsg, turned = static_clip(shape, half, seed)
            upright_dsg, upright = static_clip(shape, 0.0, seed)
            want, _ = orientation(turned, shape)
            zero, _ = orientation(upright, shape)
            row: dict[str, Any] = {"shape": shape, "seed": seed}
            for name, given in (("turned", dsg), ("upright", upright_dsg)):
                video = pipe("", dsg=given, steps=STEPS, guidance=GUIDANCE, seed=seed, progress=False).frames
                model, found = orientation(video, shape)
                row[name] = {
                    "found": round(found, 3),
                    "gap_to_turned": _period_gap(model, want),
                    "gap_to_upright": _period_gap(model, zero),
                }
            rows.append(row)
    return rows


# -- order (item 5) -----------------------------------------------------------------------------------------


def timing(result: Any) -> str:
    """When an event is seen relative to its gold window: never, early, on time or late (beyond the tolerance)."""
    if result.seen_at is None:
        return "never"
    f0, f1 = result.frames
    if result.seen_at < f0 - 1 - TOLERANCE_FRAMES:
        return "early"
    if result.seen_at > f1 - 1 + TOLERANCE_FRAMES:
        return "late"
    return "on time"


def pair_failures(clip: ShapesClip, results: tuple) -> list[dict]:
    """The ordered pairs (disjoint gold windows) that lose order credit, with why."""
    out = []
    for a in results:
        for b in results:
            if a.event.end > b.event.start:
                continue
            sa, sb = a.seen_at, b.seen_at
            if sa is not None and sb is not None and sa < sb:
                continue
            why = "first never" if sa is None else "second never" if sb is None else "tie" if sa == sb else "reversed"
            out.append(
                {
                    "why": why,
                    "first": _describe(clip, a),
                    "second": _describe(clip, b),
                }
            )
    return out


def both_seen_credit(results: tuple) -> list[float]:
    """Order credit of the ordered pairs (disjoint gold windows) whose two actions are both seen somewhere."""
    credit = []
    for a in results:
        for b in results:
            if a.event.end <= b.event.start and a.seen_at is not None and b.seen_at is not None:
                credit.append(1.0 if a.seen_at < b.seen_at else 0.5 if a.seen_at == b.seen_at else 0.0)
    return credit


def progress_check(clips: list[ShapesClip], planner: Any) -> dict[str, int]:
    """Whether the planned, imagined layout gives every agent of ``clips`` the gold per-frame progress (the
    action-progress embedding's input) and the gold events."""
    frames, agents, equal, same_events = DEFAULT_CONFIG.num_frames, 0, 0, 0
    for clip in clips:
        plan = imagine_layout(planner.plan(clip.caption), seed=clip.index)
        same_events += [e.triplet + (e.start, e.end) for e in plan.events] == [
            e.triplet + (e.start, e.end) for e in clip.dsg.events
        ]
        for agent in sorted({e.agent for e in clip.dsg.events}):
            agents += 1
            gap = _gap(per_frame(plan, agent, "progress", frames), per_frame(clip.dsg, agent, "progress", frames))
            equal += gap < 1e-6
    return {"clips": len(clips), "plan_same_events": same_events, "agents": agents, "progress_equal_gold": equal}


def _describe(clip: ShapesClip, result: Any) -> str:
    action = next(
        e.action
        for e in clip.story.events
        if e.start == result.event.start
        and e.end == result.event.end
        and clip.story.shapes[e.agent].shape == result.event.agent
    )
    size = size_at(clip, result.event.agent, result.frames[0])
    return f"{size} {result.event.agent} {action} {list(result.frames)} seen {result.seen_at}"


def order_summary(entries: list[tuple[ShapesClip, Frames]]) -> dict[str, Any]:
    """Order accuracy, event timing per action, and the pairs that lose credit (why and which actions)."""
    orders, timings, failures, onsets = [], defaultdict(Counter), [], defaultdict(list)
    seen_pairs = []
    for clip, frames in entries:
        score = score_video(frames, clip.dsg)
        if score.order_accuracy is not None:
            orders.append(score.order_accuracy)
        seen_pairs += both_seen_credit(score.events)
        for result in score.events:
            action = _describe(clip, result).split()[2]
            timings[action][timing(result)] += 1
            if result.seen_at is not None:
                onsets[action].append(result.seen_at - result.frames[0])
        failures += pair_failures(clip, score.events)
    why = Counter(f["why"] for f in failures)
    culprit = Counter()
    for f in failures:
        side = f["second"] if f["why"] == "second never" else f["first"] if f["why"] == "first never" else None
        if side is not None:
            culprit[" ".join(side.split()[:3])] += 1
        else:
            culprit[" / ".join(" ".join(s.split()[1:3]) for s in (f["first"], f["second"]))] += 1
    return {
        "captions": len(entries),
        "order_accuracy": round(float(np.mean(orders)), 3) if orders else None,
        "order_given_both_seen": round(float(np.mean(seen_pairs)), 3) if seen_pairs else None,
        "pairs_both_seen": len(seen_pairs),
        "failed_pairs": len(failures),
        "failed_why": dict(why),
        "failed_by": dict(culprit.most_common(12)),
        "timing_by_action": {a: dict(c) for a, c in sorted(timings.items())},
        "onset_minus_window_start": {a: dict(sorted(Counter(v).items())) for a, v in sorted(onsets.items())},
        "examples": failures[:6],
    }


def measure_order(pipe: Any, clips: list[ShapesClip], videos: int) -> dict[str, Any]:
    """Item 5: order on gold renders and AE renders (every sequential clip) and on the model's planned videos."""
    seq = [c for c in clips if sequential(c)]
    gold = [(c, render_clip(c)) for c in seq]
    out = {
        "gold": order_summary(gold),
        "autoencoder": order_summary([(c, autoencode(pipe.vae, f)) for c, f in gold]),
        "autoencoder_same_captions_as_model": order_summary([(c, autoencode(pipe.vae, f)) for c, f in gold[:videos]]),
        "planned_progress": progress_check(seq, pipe.planner),
    }
    out["model_planned"] = order_summary([(c, generate(pipe, c, c.index, False)[0]) for c in seq[:videos]])
    return out


# -- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=600, help="validation clips scanned (default: 600)")
    parser.add_argument("--generate", type=int, default=30, help="rotation captions generated twice (default: 30)")
    parser.add_argument("--order-videos", type=int, default=36, help="sequential captions generated (default: 36)")
    parser.add_argument("--static-seeds", type=int, default=3, help="seeds per shape of the static test (default: 3)")
    default_out = Path(__file__).parent / "results" / "rotation_order.json"
    parser.add_argument("--out", type=Path, default=default_out, help="JSON written here (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from dysen.pipeline import load_pipeline

    pipe = load_pipeline()
    clips = val_clips(args.num)
    seconds, report = {}, {"benchmark": "rotation_order", "split": SPLIT, "val_clips": args.num}
    for name, run in (
        ("ceilings", lambda: measure_ceilings(clips, pipe.vae)),
        ("layout", lambda: measure_layout(clips, pipe.planner)),
        ("generated_rotations", lambda: measure_generated_rotations(pipe, clips, args.generate)),
        ("static_turn", lambda: measure_static(pipe, args.static_seeds)),
        ("order", lambda: measure_order(pipe, clips, args.order_videos)),
    ):
        clock = time.perf_counter()
        report[name] = run()
        seconds[name] = round(time.perf_counter() - clock, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
    report["sampling"] = {"steps": STEPS, "guidance": GUIDANCE, "seed": "clip index"}
    report["seconds"] = seconds
    report["machine"] = machine(torch=torch.__version__, torch_threads=torch.get_num_threads())
    emit(report, args.out)


if __name__ == "__main__":
    main()
