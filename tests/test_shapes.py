"""Dynamic Shapes: determinism, vocabulary coverage, held-out triples, gold DSGs, pixels, Dataset, writer, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from functools import cache

import av
import numpy as np
import pytest
import torch

from dysen.cli import main
from dysen.data.shapes import ShapesDataset, collate, render_clip, write_dataset
from dysen.data.shapes.render import render_tracks
from dysen.dsg.convert import align_steps_to_frames, events_to_dsg
from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.world import SPLITS, ShapesConfig, sample_clip, vocab
from dysen.world.story import phase_spans, sample_story

CONFIG = ShapesConfig()
TINY = ShapesConfig(size=16, num_frames=8)
BACKGROUND = np.array(vocab.BACKGROUND)


@cache
def _clips(split: str = "train", num: int = 500) -> tuple:
    return tuple(sample_clip(i, split=split) for i in range(num))


def _digest(clip) -> str:
    """A fingerprint of everything a clip shows: caption, gold DSG, boxes and pixels."""
    parts = [clip.caption, clip.dsg.to_json(), repr(clip.frame_boxes), render_clip(clip, CONFIG).tobytes().hex()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


# -- determinism ----------------------------------------------------------------------------------


def test_a_clip_is_the_same_across_calls_and_processes():
    first, again = sample_clip(7, split="val", seed=3), sample_clip(7, split="val", seed=3)
    assert first == again and _digest(first) == _digest(again)
    code = (
        "import sys, hashlib; from dysen.data.shapes import sample_clip, render_clip, ShapesConfig; "
        "c = sample_clip(7, split='val', seed=3); "
        "parts = [c.caption, c.dsg.to_json(), repr(c.frame_boxes), render_clip(c, ShapesConfig()).tobytes().hex()]; "
        "print(hashlib.sha256('|'.join(parts).encode()).hexdigest(), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == [_digest(first), "False"]  # same clip; drawing and rendering never load torch


def test_splits_and_seeds_are_different_streams():
    captions = {sample_clip(0, split=split, seed=seed).caption for split in SPLITS for seed in (0, 1)}
    assert len(captions) == 2 * len(SPLITS)


# -- vocabulary and grammar -------------------------------------------------------------------------


def test_sampled_clips_cover_the_whole_vocabulary():
    clips = _clips()
    events = [(clip, e) for clip in clips for e in clip.story.events]
    assert {e.action for _, e in events} == set(vocab.ACTIONS_BY_NAME)
    assert {s.shape for c in clips for s in c.story.shapes} == set(vocab.SHAPES)
    assert {s.colour for c in clips for s in c.story.shapes} == set(vocab.COLOURS)
    assert {e.target for _, e in events if e.target} == set(vocab.COLOURS)
    assert {s.size for c in clips for s in c.story.shapes} == set(vocab.SIZES)
    assert {len(c.dsg.events) for c in clips} == {1, 2, 3}
    assert any(len(c.story.phases) > 1 for c in clips)  # sequential events
    assert any(len(phase) > 1 for c in clips for phase in c.story.phases)  # simultaneous events
    assert any(len(c.story.shapes) > len({e.agent for e in c.story.events}) for c in clips)  # idle context shapes
    text = " ".join(c.caption.lower() for c in clips)
    words = "then|and then|after that|afterwards|next|first|finally|before|while|at the same time|meanwhile|next to"
    for word in words.split("|"):
        assert re.search(rf"\b{word}\b", text), word
    assert re.search(r"\bas\b", text) and re.search(r"\bafter (?!that)", text)  # 'A as B', 'B after A'
    assert len({c.caption for c in clips}) > 0.95 * len(clips)  # short single-event captions may repeat


def test_invisible_or_impossible_events_are_never_drawn():
    for clip in _clips():
        story = clip.story
        for agent, shape in enumerate(story.shapes):
            mine = story.events_of(agent)
            for k, event in enumerate(mine):
                assert event.action not in vocab.INVISIBLE_ACTIONS.get(shape.shape, ())
                assert event.action != "appear" or k == 0
                assert event.action != "disappear" or k == len(mine) - 1
                assert event.action != "change_colour" or event.target != event.colour
            spans = sorted((e.start, e.end) for e in mine)  # one shape never does two things at once
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
        worn = [{c for c in track.colour} for track in clip.tracks]
        assert sum(len(w) for w in worn) == len(set().union(*worn))  # no two shapes ever share a colour


_NP = r"\b(?:a|the) (?:(?:small|little|large|big) )?(?:(?:{c}) )?({s})".format(
    c="|".join(vocab.COLOURS), s="|".join(vocab.SHAPES)
)
_COLOUR = "(" + "|".join(vocab.COLOURS) + ")"
_VERBS = sorted(  # (verb regex, action), longest first
    ((p.replace("{colour}", _COLOUR), a) for a, ps in vocab.ACTION_PHRASES.items() for p in ps),
    key=lambda item: -len(item[0]),
)
_CLAUSE = re.compile(_NP + " (" + "|".join(v for v, _ in _VERBS) + r")\b", re.I)


def _parse(caption: str, num_steps: int) -> list[tuple]:
    """A rule-based reading of a caption back into events (agent, predicate, target, start, end)."""
    clauses = list(_CLAUSE.finditer(caption))
    prefix = caption[: clauses[0].start()].lower().split(". ")[-1]  # the words before the first clause's sentence
    phases: list[list[int]] = [[0]]
    for i in range(1, len(clauses)):
        glue = caption[clauses[i - 1].end() : clauses[i].start()].lower()
        previous = next(k for k, phase in enumerate(phases) if i - 1 in phase)
        if re.search(r"\bafter\b(?! that)", glue) or (i == 1 and prefix.startswith("before")):
            phases.insert(previous, [i])  # 'B after A' / 'Before B, A': the clause named second happened first
        elif re.search(r"\b(then|after that|afterwards|next|finally|before)\b", glue) or (
            i == 1 and prefix.startswith("after")
        ):
            phases.append([i])  # a new phase after every phase so far
        else:  # while, as, at the same time, meanwhile, and, a bare comma
            phases[previous].append(i)
    events = []
    for (start, end), phase in zip(phase_spans(len(phases), num_steps), phases, strict=True):
        for i in phase:
            verb = clauses[i].group(2).lower()
            action = next(a for pattern, a in _VERBS if re.fullmatch(pattern, verb))
            target = re.search(_COLOUR + "$", verb) if action == "change_colour" else None
            predicate = vocab.ACTIONS_BY_NAME[action].predicate
            events.append((clauses[i].group(1), predicate, target and target.group(1), start, end))
    return sorted(events)


def test_every_event_can_be_read_back_from_the_caption():
    for clip in _clips():
        gold = sorted((e.agent, e.predicate, e.target, e.start, e.end) for e in clip.dsg.events)
        assert _parse(clip.caption, CONFIG.num_steps) == gold, clip.caption


def test_first_mentions_name_the_initial_size_and_colour():
    words = {w: size for size, ws in vocab.SIZE_WORDS.items() for w in ws}
    for clip in _clips()[:200]:
        for shape in clip.story.shapes:
            match = re.search(rf"\ba (\w+) (\w+) {shape.shape}\b", clip.caption, re.I)
            assert match and words[match.group(1)] == shape.size and match.group(2) == shape.colour, clip.caption


# -- compositional split ----------------------------------------------------------------------------


def _shown_triples(clip) -> set[tuple[str, str, str]]:
    """(colour at start, shape, action) of each event, read from the rendered tracks, not the story."""
    alignment = align_steps_to_frames(CONFIG.num_steps, CONFIG.num_frames)
    tracks = {t.name: t for t in clip.tracks}
    action = {a.predicate: a.name for a in vocab.ACTIONS}
    return {
        (tracks[e.agent].colour[alignment.event_frames(e)[0]], e.agent, action[e.predicate]) for e in clip.dsg.events
    }


def test_held_out_triples_are_valid_and_leave_every_pair_in_train():
    held = vocab.HELD_OUT_TRIPLES
    assert 20 <= len(held) <= 30
    assert all(c in vocab.COLOURS and s in vocab.SHAPES and a in vocab.ACTIONS_BY_NAME for c, s, a in held)
    assert not any(a in vocab.INVISIBLE_ACTIONS.get(s, ()) for _, s, a in held)
    assert {a for _, _, a in held} == set(vocab.ACTIONS_BY_NAME)
    for c in vocab.COLOURS:
        for s in vocab.SHAPES:
            assert sum((c, s, a) in held for a in vocab.ACTIONS_BY_NAME) <= 2


def test_held_out_triples_never_occur_outside_the_compositional_split():
    rng = np.random.default_rng(0)
    for _ in range(4000):
        assert not sample_story(rng, CONFIG, compositional=False).triples() & vocab.HELD_OUT_TRIPLES
    for split in ("train", "val", "test"):
        for clip in _clips(split, 150):
            assert not _shown_triples(clip) & vocab.HELD_OUT_TRIPLES


def test_every_compositional_clip_shows_a_held_out_triple():
    clips = _clips("compositional", 150)
    assert all(_shown_triples(clip) & vocab.HELD_OUT_TRIPLES for clip in clips)
    assert len({t for clip in clips for t in _shown_triples(clip) & vocab.HELD_OUT_TRIPLES}) >= 20


# -- gold DSG -------------------------------------------------------------------------------------


def test_gold_dsg_validates_and_holds_the_active_events_at_each_step():
    alignment = align_steps_to_frames(CONFIG.num_steps, CONFIG.num_frames)
    for clip in _clips()[:200]:
        dsg = DynamicSceneGraph.from_dict(json.loads(clip.dsg.to_json()))
        assert dsg == clip.dsg and dsg.num_steps == CONFIG.num_steps
        assert max(e.end for e in dsg.events) == CONFIG.num_steps
        step_two = events_to_dsg(dsg.events)
        for m, (graph, actions) in enumerate(zip(dsg.graphs, step_two.graphs, strict=True)):
            assert {f for f in graph.facts() if f[1] in vocab.ACTIONS_BY_PREDICATE} == actions.facts()  # Step II's
            first = alignment.frames_of_step[m][0]
            visible = [t for t in clip.tracks if t.alpha[first] > 0]
            assert set(graph.objects) - set(vocab.COLOURS) == {t.name for t in visible}
            for track in visible:
                assert {(track.name, track.colour[first]), (track.name, track.size[first])} <= graph.facts()
            assert dsg.boxes[m] == clip.frame_boxes[first]


def test_spatial_relations_follow_the_box_centres():
    for clip in _clips()[:100]:
        for graph, boxes in zip(clip.dsg.graphs, clip.dsg.boxes[:-1], strict=True):
            centre = {b.object: ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2) for b in boxes}
            for rel in graph.relations:
                if rel.predicate in vocab.SPATIAL_RELATIONS:
                    (ax, ay), (bx, by) = centre[rel.subject], centre[rel.object]
                    gap = {"left of": bx - ax, "right of": ax - bx, "above": by - ay, "below": ay - by}[rel.predicate]
                    assert gap > 0.05


# -- pixels ---------------------------------------------------------------------------------------


def _solo(clip, track, config=CONFIG) -> np.ndarray:
    """Frames showing only ``track``, [T, H, W, 3] int."""
    return render_tracks((track,), config).astype(int)


def test_frame_boxes_bound_the_rendered_pixels():
    size = CONFIG.size
    for clip in _clips()[:40]:
        for track in clip.tracks:
            frames = _solo(clip, track)
            for t, boxes in enumerate(clip.frame_boxes):
                ys, xs = np.nonzero(np.abs(frames[t] - BACKGROUND).sum(-1) > 0)
                box = next((b for b in boxes if b.object == track.name), None)
                if box is None:
                    assert len(xs) == 0  # absent: no pixel at all
                    continue
                assert xs.min() >= box.x0 * size - 1 and xs.max() + 1 <= box.x1 * size + 1
                assert ys.min() >= box.y0 * size - 1 and ys.max() + 1 <= box.y1 * size + 1
                if track.alpha[t] == 1.0:  # and tight
                    assert xs.min() <= box.x0 * size + 1 and xs.max() + 1 >= box.x1 * size - 1


def _centroid(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(np.abs(frame - BACKGROUND).sum(-1) > 60)
    return np.array([xs.mean(), ys.mean()])


def _area(frame: np.ndarray) -> int:
    return int((np.abs(frame - BACKGROUND).sum(-1) > 60).sum())


def test_every_event_is_visible_in_the_pixels_of_its_window():
    alignment = align_steps_to_frames(CONFIG.num_steps, CONFIG.num_frames)
    for clip in _clips()[:150]:
        tracks = {t.name: t for t in clip.tracks}
        for event in clip.dsg.events:
            track = tracks[event.agent]
            f0, f1 = alignment.event_frames(event)
            _check_event(event, track, _solo(clip, track), f0, f1)


def _check_event(event, track, frames: np.ndarray, f0: int, f1: int) -> None:
    action = vocab.ACTIONS_BY_PREDICATE[event.predicate].name
    if action.startswith("move_"):
        axis, sign = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (1, -1), "move_down": (1, 1)}[action]
        shift = _centroid(frames[f1 - 1]) - _centroid(frames[f0])
        assert sign * shift[axis] >= 12 and abs(shift[1 - axis]) < 1
    elif action == "jump":
        ys = [_centroid(frames[t])[1] for t in range(f0, f1)]
        ground = [_centroid(frames[t])[1] for t in (f0 - 1, f1) if 0 <= t < len(frames)] or [max(ys)]
        assert min(ground) - min(ys) >= 10 and abs(_centroid(frames[f0])[0] - _centroid(frames[f1 - 1])[0]) < 1
    elif action in ("grow", "shrink"):
        ratio = _area(frames[f1 - 1]) / _area(frames[f0])
        assert ratio > 1.5 if action == "grow" else ratio < 1 / 1.5
    elif action == "rotate":
        masks = np.abs(frames - BACKGROUND).sum(-1) > 60  # [T, H, W]
        changed = max((masks[f0] ^ masks[t]).sum() / masks[f0].sum() for t in range(f0, f1))
        assert changed > 0.2 and np.abs(_centroid(frames[f1 - 1]) - _centroid(frames[f0])).max() < 1
    elif action in ("appear", "disappear"):
        contrast = np.abs(frames - BACKGROUND).sum(axis=(1, 2, 3))  # [T]
        absent = contrast[:f0] if action == "appear" else contrast[f1:]
        window = contrast[f0:f1] if action == "appear" else contrast[f0:f1][::-1]
        assert (absent == 0).all() and (window > 0).all() and (np.diff(window) > 0).all()
    else:  # turns: the centre pixel shows the exact old colour on the first window frame, the new on the last
        x, y = int(track.x[f0] * CONFIG.size), int(track.y[f0] * CONFIG.size)
        assert tuple(frames[f0, y, x]) == vocab.COLOURS[track.colour[f0]]
        assert tuple(frames[f1 - 1, y, x]) == vocab.COLOURS[event.target]


def test_render_is_uint8_frames_of_the_config_and_tiny_configs_work():
    clip = sample_clip(3, config=TINY)
    frames = render_clip(clip, TINY)
    assert frames.dtype == np.uint8 and frames.shape == (8, 16, 16, 3)
    assert len(clip.frame_boxes) == 8 and clip.dsg.num_steps == TINY.num_steps
    with pytest.raises(DysenError, match="frames"):
        render_clip(clip, CONFIG)


# -- Dataset, writer, CLI -------------------------------------------------------------------------


def test_dataset_renders_model_ready_videos_and_batches_with_a_dataloader():
    data = ShapesDataset(num=4, split="test", config=TINY)
    item = data[1]
    assert len(data) == 4 and item["id"] == "test-0-000001"
    assert item["video"].dtype == torch.float32 and item["video"].shape == (3, 8, 16, 16)
    assert item["video"].min() >= -1 and item["video"].max() <= 1 and item["video"].min() < -0.5
    assert isinstance(item["dsg"], DynamicSceneGraph) and item["caption"] == sample_clip(1, "test", 0, TINY).caption
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=3, collate_fn=collate)))
    assert batch["video"].shape == (3, 3, 8, 16, 16) and len(batch["caption"]) == len(batch["dsg"]) == 3
    with pytest.raises(IndexError):
        data[4]


def _decoded_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_cli_writes_decodable_videos_and_a_valid_manifest(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["data", "shapes", "--out", str(out), "--num", "6", "--split", "compositional", "--workers", "1"]) == 0
    assert "wrote 6 clips" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"compositional-0-{i:06d}" for i in range(6)]
    for index, record in enumerate(records):
        clip = sample_clip(index, split="compositional")
        assert DynamicSceneGraph.from_dict(record["dsg"]) == clip.dsg and record["caption"] == clip.caption
        assert (record["num_frames"], record["fps"], record["size"]) == (16, 8, 64)
        assert len(record["frame_boxes"]) == 16 and record["split"] == "compositional"
        frames = _decoded_frames(out / record["path"])
        assert frames.shape == (16, 64, 64, 3)
        assert np.abs(frames.astype(int) - render_clip(clip, CONFIG)).mean() < 4  # H.264 keeps the picture
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_write_dataset_with_a_process_pool_matches_one_process(tmp_path):
    serial = write_dataset(tmp_path / "a", num=4, seed=5, config=TINY, workers=1, progress=False)
    pooled = write_dataset(tmp_path / "b", num=4, seed=5, config=TINY, workers=2, progress=False)
    assert serial.read_text() == pooled.read_text()
    assert _decoded_frames(tmp_path / "b" / "videos" / "train-5-000003.mp4").shape == (8, 16, 16, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num": 0}, "num"),
        ({"num": 2, "split": "bogus"}, "split"),
        ({"num": 2, "seed": -1}, "seed"),
        ({"num": 2, "workers": 0}, "workers"),
        ({"num": 2, "config": {"size": 64}}, "ShapesConfig"),
    ],
)
def test_write_dataset_refuses_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(DysenError, match=message):
        write_dataset(tmp_path, progress=False, **kwargs)


def test_bad_configs_and_indices_raise_clear_errors(capsys, tmp_path):
    for bad in ({"num_frames": 4}, {"size": 8}, {"max_events": 4}, {"margin": 2.0}, {"size": 64.0}):
        with pytest.raises(DysenError, match="ShapesConfig"):
            ShapesConfig(**bad)
    with pytest.raises(DysenError, match="index"):
        sample_clip(-1)
    with pytest.raises(DysenError, match="split"):
        ShapesDataset(num=2, split="training")
    with pytest.raises(SystemExit) as exit:  # a usage error since issue 22: argparse checks --num (exit 2)
        main(["data", "shapes", "--out", str(tmp_path), "--num", "0"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.strip().splitlines()[-1].startswith("dysen data shapes: error: argument --num")


def test_clips_with_changed_settings_still_fit_the_frame():
    config = dataclasses.replace(CONFIG, move_distance=0.35, jump_height=0.3, max_objects=4)
    for index in range(30):
        for box in (b for boxes in sample_clip(index, config=config).frame_boxes for b in boxes):
            assert config.margin - 1e-3 <= min(box.x0, box.y0) and max(box.x1, box.y1) <= 1 - config.margin + 1e-3
    assert Counter(len(sample_clip(i, config=config).story.shapes) for i in range(60))[4] > 0
