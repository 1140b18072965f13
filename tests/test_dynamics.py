"""dysen.eval.dynamics: the pixel tracker on hand-drawn frames, and the scorer against Dynamic Shapes gold DSGs."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest
import torch

from dysen.data.shapes import render_clip
from dysen.data.video import read_video, write_video
from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.eval.dynamics import (
    DynamicsScore,
    detect_actions,
    find_blobs,
    label_components,
    score_video,
    track_shapes,
)
from dysen.world import SPLITS, sample_clip, vocab
from dysen.world.geometry import SYMMETRY, inside

NUM_GOLD_CLIPS = 500
NUM_MP4_CLIPS = 50


# -- hand-drawn frames ---------------------------------------------------------------------------


def _draw(shapes: list[tuple], size: int = 64) -> np.ndarray:
    """One frame ``[1, H, W, 3]`` with each ``(shape, colour, x, y, radius, angle[, opacity])`` (fractions),
    4x supersampled."""
    image = np.empty((size, size, 3), dtype=np.float64)  # [H, W, 3]
    image[:] = vocab.BACKGROUND
    grid = (np.arange(size * 4) + 0.5) / (size * 4)
    for shape, colour, x, y, radius, angle, *opacity in shapes:
        hits = inside(shape, grid[None, :] - x, grid[:, None] - y, radius, angle)  # [4H, 4W]
        cover = hits.reshape(size, 4, size, 4).mean(axis=(1, 3))[..., None] * (opacity[0] if opacity else 1.0)
        image += cover * (np.array(vocab.COLOURS[colour]) - image)
    return np.rint(image).astype(np.uint8)[None]  # [1, H, W, 3]


CASES = [
    (shape, colour, size, angle)
    for i, (shape, size) in enumerate((s, z) for s in vocab.SHAPES for z in vocab.SIZES)
    for colour, angle in [(list(vocab.COLOURS)[(i + j) % 6], j * 0.37) for j in range(3)]
]


@pytest.mark.parametrize(("shape", "colour", "size", "angle"), CASES)
def test_tracker_names_shape_colour_size_and_place(shape, colour, size, angle):
    radius = vocab.SIZES[size]
    frames = _draw([(shape, colour, 0.43, 0.56, radius, angle)])
    tracks = track_shapes(frames)
    assert list(tracks) == [shape]
    track = tracks[shape]
    assert track.colour == (colour,)
    assert track.x[0] == pytest.approx(0.43, abs=0.5 / 64) and track.y[0] == pytest.approx(0.56, abs=0.5 / 64)
    assert track.radius[0] == pytest.approx(radius, rel=0.1)
    assert track.opacity[0] > 0.8


@pytest.mark.parametrize("shape", list(SYMMETRY))
def test_orientation_follows_a_rotation(shape):
    turns = np.linspace(0.0, 1.2 * SYMMETRY[shape], 8)  # more than a symmetry period, in 8 frames
    frames = np.concatenate([_draw([(shape, "green", 0.5, 0.5, 0.15, a)]) for a in turns])
    track = track_shapes(frames)[shape]
    np.testing.assert_allclose(track.angle - track.angle[0], turns, atol=math.radians(3))


def test_faint_and_small_things():
    faint = _draw([("square", "blue", 0.3, 0.3, 0.15, 0.0, 0.5), ("star", "red", 0.75, 0.75, 0.02, 0.0)])
    tracks = track_shapes(faint)
    assert list(tracks) == ["square"]  # the star is 2.5 px across: below MIN_BLOB_FRACTION
    assert tracks["square"].opacity[0] == pytest.approx(0.5, abs=0.07)
    assert track_shapes(_draw([])) == {}


def test_touching_shapes_of_two_colours_are_split():
    frames = _draw([("square", "red", 0.35, 0.5, 0.15, 0.0), ("circle", "yellow", 0.35 + 0.106 + 0.1, 0.5, 0.1, 0.0)])
    blobs = find_blobs(frames)
    assert sorted(blobs.colour.tolist()) == [0, 2]  # red, yellow: one component, two blobs
    assert sorted(track_shapes(frames)) == ["circle", "square"]


def _components_reference(mask: np.ndarray) -> list[set]:
    """8-connected components of a 2-D mask by breadth-first search."""
    seen, parts = np.zeros_like(mask), []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        part, queue = set(), [start]
        seen[start] = True
        while queue:
            y, x = queue.pop()
            part.add((y, x))
            for ny in range(max(y - 1, 0), min(y + 2, mask.shape[0])):
                for nx in range(max(x - 1, 0), min(x + 2, mask.shape[1])):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        parts.append(frozenset(part))
    return parts


def test_label_components_matches_breadth_first_search():
    rng = np.random.default_rng(0)
    for density in (0.2, 0.45, 0.6):
        mask = rng.random((3, 24, 31)) < density  # [T, H, W]
        labels = label_components(mask)
        assert ((labels >= 0) == mask).all()
        for t in range(3):
            ids = np.unique(labels[t][labels[t] >= 0])
            ours = {frozenset(zip(*np.nonzero(labels[t] == k), strict=True)) for k in ids}
            assert ours == set(_components_reference(mask[t]))


def test_noise_and_bad_input():
    noise = np.random.default_rng(1).integers(0, 256, size=(8, 64, 64, 3), dtype=np.uint8)
    clip = sample_clip(0)
    score = score_video(torch.from_numpy(noise), clip.dsg)  # torch is accepted; noise shows no action
    assert score.action_accuracy == 0.0
    with pytest.raises(ValueError, match="uint8"):
        score_video(noise.astype(np.float32), clip.dsg)
    with pytest.raises(ValueError, match="uint8"):
        track_shapes(noise[0])


# -- actions on hand-drawn clips -----------------------------------------------------------------


def _moving(shape: str, ys: np.ndarray, xs: np.ndarray | None = None) -> np.ndarray:
    xs = np.full(len(ys), 0.5) if xs is None else xs
    return np.concatenate([_draw([(shape, "purple", x, y, 0.1, 0.0)]) for x, y in zip(xs, ys, strict=True)])


def _dsg(*events: tuple[str, str, int, int]) -> DynamicSceneGraph:
    return DynamicSceneGraph.from_events([Event(agent=a, predicate=p, start=s, end=e) for a, p, s, e in events])


def test_a_jump_is_not_a_move_and_order_counts():
    still = np.full(4, 0.7)
    up_down = np.concatenate([still, 0.7 - 0.25 * np.sin(np.pi * np.arange(1, 5) / 5), still])  # [12] jump mid-clip
    frames = _moving("star", up_down)
    jump = score_video(frames, _dsg(("star", "moves left", 0, 1), ("star", "jumps", 1, 2), ("star", "grows", 2, 3)))
    assert [r.detected for r in jump.events] == [False, True, False]
    assert jump.events[1].onset == 4
    assert score_video(frames, _dsg(("star", "moves up", 1, 2))).action_accuracy == 0.0
    found = [(d.agent, d.action, d.start) for d in detect_actions(frames)]
    assert found == [("star", "jump", 4)]
    rises_then_falls = _moving("star", np.concatenate([np.linspace(0.75, 0.35, 8), np.linspace(0.35, 0.75, 8)[1:]]))
    late_first = score_video(rises_then_falls, _dsg(("star", "moves down", 0, 1), ("star", "moves up", 1, 2)))
    assert [r.detected for r in late_first.events] == [False, False]
    assert late_first.order_accuracy == 0.0 and late_first.order_when_seen == 0.0  # both happen, in the other order
    in_order = score_video(rises_then_falls, _dsg(("star", "moves up", 0, 1), ("star", "moves down", 1, 2)))
    assert in_order.action_accuracy == 1.0 and in_order.order_accuracy == 1.0 and in_order.order_when_seen == 1.0
    never = score_video(rises_then_falls, _dsg(("star", "moves up", 0, 1), ("star", "grows", 1, 2)))
    assert never.order_accuracy == 0.0 and never.order_when_seen is None  # an action never drawn: no pair to order


def test_a_jump_survives_a_frame_the_tracker_missed_but_needs_its_ends():
    still = np.full(4, 0.7)
    up_down = np.concatenate([still, 0.7 - 0.25 * np.sin(np.pi * np.arange(1, 5) / 5), still])  # [12] frames 4..7 up
    jump = _dsg(("star", "grows", 0, 1), ("star", "jumps", 1, 2), ("star", "grows", 2, 3))  # window [4, 8)
    for lost, detected in ((6, True), (5, True), (8, False)):  # it lands at frame 8
        frames = _moving("star", up_down)
        frames[lost] = 0  # the star is not seen there
        assert score_video(frames, jump).events[1].detected == detected, lost
    frames = _moving("star", np.full(12, 0.7))
    frames[6] = 0
    assert not score_video(frames, jump).events[1].detected  # a still star with a gap did not jump


def test_single_events_unknown_agents_and_predicates():
    frames = _moving("circle", np.full(8, 0.5), np.linspace(0.3, 0.7, 8))
    score = score_video(frames, _dsg(("circle", "moves right", 0, 1)))
    assert (score.action_accuracy, score.order_accuracy, score.object_fidelity) == (1.0, None, 1.0)
    odd = score_video(frames, _dsg(("circle", "dances", 0, 1), ("red triangle", "moves right", 0, 1)))
    assert odd.action_accuracy == 0.0 and odd.object_fidelity == 0.5  # the circle is there, the triangle is not


# -- gold Dynamic Shapes clips -------------------------------------------------------------------


def _clips(count: int, offset: int = 0) -> list:
    """``count`` clips cycling through the splits, each with its rendered frames."""
    clips = [sample_clip(offset + i, SPLITS[i % len(SPLITS)], seed=11) for i in range(count)]
    return [(clip, render_clip(clip)) for clip in clips]


def _report(scores: list[DynamicsScore]) -> tuple[float, dict[str, list[bool]]]:
    """Share of clips whose every event is recovered, and whether each event was, per action."""
    per_action = collections.defaultdict(list)
    for score in scores:
        for result in score.events:
            per_action[vocab.ACTIONS_BY_PREDICATE[result.event.predicate].name].append(result.detected)
    return float(np.mean([s.action_accuracy == 1.0 for s in scores])), per_action


def _rates(per_action: dict[str, list[bool]]) -> str:
    return ", ".join(f"{a} {np.mean(v):.3f} (n={len(v)})" for a, v in sorted(per_action.items()))


@pytest.fixture(scope="module")
def gold():
    clips = _clips(NUM_GOLD_CLIPS)
    return clips, [score_video(frames, clip.dsg) for clip, frames in clips]


def test_gold_clips_are_recovered(gold):
    _, scores = gold
    recovered, per_action = _report(scores)
    assert recovered >= 0.99, f"all events recovered in {recovered:.3f} of clips; per action: {_rates(per_action)}"
    assert len(per_action) == len(vocab.ACTIONS) and min(map(len, per_action.values())) >= 20, _rates(per_action)
    orders = [s.order_accuracy for s in scores if s.order_accuracy is not None]
    assert np.mean(orders) >= 0.99 and len(orders) > 100
    assert np.mean([s.object_fidelity for s in scores]) >= 0.99


def test_gold_clips_survive_an_mp4_round_trip(tmp_path):
    clips = _clips(NUM_MP4_CLIPS, offset=NUM_GOLD_CLIPS)
    scores = []
    for clip, frames in clips:
        path = write_video(tmp_path / f"{clip.id}.mp4", frames)
        scores.append(score_video(read_video(path), clip.dsg))
    recovered, per_action = _report(scores)
    assert recovered >= 0.97, f"all events recovered in {recovered:.3f} of mp4 clips; per action: {_rates(per_action)}"


def test_detect_actions_finds_gold_events(gold):
    _, scores = gold
    hits = []
    for score in scores[:150]:
        for result in score.events:
            action = vocab.ACTIONS_BY_PREDICATE[result.event.predicate].name
            first, end = result.frames
            hits.append(
                any(
                    d.agent == result.event.agent
                    and d.action == action
                    and d.target == result.event.target
                    and d.start <= end
                    and d.end >= first
                    for d in score.detections
                )
            )
    assert np.mean(hits) >= 0.97


def test_static_and_reversed_clips_score_lower(gold):
    clips, scores = gold
    subset = range(0, NUM_GOLD_CLIPS, 5)
    gold_accuracy = np.mean([scores[i].action_accuracy for i in subset])
    for name, change in (("static", lambda f: np.repeat(f[:1], len(f), axis=0)), ("reversed", lambda f: f[::-1])):
        accuracy = np.mean([score_video(change(clips[i][1]), clips[i][0].dsg).action_accuracy for i in subset])
        assert accuracy < 0.5 and gold_accuracy - accuracy >= 0.4, (
            f"{name}: {accuracy:.3f} vs gold {gold_accuracy:.3f}"
        )


def test_an_event_is_scored_by_its_canonical_motion(gold):
    """A plan that keeps the verb as written ("glides to the left") is scored by its canonical motion, as the gold
    wording is; without a motion, such a predicate is never detected."""
    from dysen.planner.motion import canonical_motion

    wording = {"moves left": "glides to the left", "moves up": "drifts upward", "jumps": "hops", "grows": "swells"}

    def outcome(frames, dsg):
        return [(r.frames, r.detected, r.onset, r.seen_at) for r in score_video(frames, dsg).events]

    checked = 0
    for clip, frames in gold[0]:
        if not any(e.predicate in wording for e in clip.dsg.events):
            continue
        said = [wording.get(e.predicate) for e in clip.dsg.events]
        events = tuple(
            e.model_copy(update={"predicate": p, "motion": canonical_motion(p)}) if p else e
            for e, p in zip(clip.dsg.events, said, strict=True)
        )
        paraphrased = clip.dsg.model_copy(update={"events": events})
        assert outcome(frames, paraphrased) == outcome(frames, clip.dsg)
        bare = tuple(e.model_copy(update={"motion": None}) for e in events)
        unread = paraphrased.model_copy(update={"events": bare})
        results = score_video(frames, unread).events
        assert not any(r.detected for r, p in zip(results, said, strict=True) if p)
        checked += 1
        if checked == 5:
            break
    assert checked == 5


def test_a_plan_that_names_a_shape_by_a_synonym_is_scored_on_that_shape():
    rises = _moving("circle", np.linspace(0.75, 0.35, 12))
    for agent in ("ball", "red ball", "dot", "circle"):
        assert score_video(rises, _dsg((agent, "moves up", 0, 1))).action_accuracy == 1.0, agent
    assert score_video(rises, _dsg(("box", "moves up", 0, 1))).action_accuracy == 0.0  # a box is a square
    assert score_video(rises, _dsg(("dog", "moves up", 0, 1))).action_accuracy == 0.0  # no shape of this world
