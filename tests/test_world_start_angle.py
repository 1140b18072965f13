"""``ShapesConfig.start_angle='random'`` (issue 23): every polygon starts turned within its symmetry period, so the
model sees turned shapes in every clip. The default world is untouched (``test_world_options`` holds its digest);
the random world keeps every story, caption and position, only the angles differ, and renders, gold boxes and the
tracker agree on them; the pixel scorer still reads gold renders perfectly."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from dysen.cli import build_parser
from dysen.cli.world import WORLD_FILE, world_settings
from dysen.data.shapes.dataset import ShapesDataset
from dysen.data.shapes.render import render_clip
from dysen.dsg.convert import align_steps_to_frames
from dysen.errors import DysenError
from dysen.eval.dynamics import score_video
from dysen.eval.tracking import track_shapes
from dysen.world import ShapesConfig, sample_clip, vocab
from dysen.world.geometry import SYMMETRY

RANDOM = ShapesConfig(start_angle="random")
EIGHT = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "cyan")


def _wrapped(angle: float, period: float) -> float:
    """``angle`` modulo ``period``, in [-period / 2, period / 2)."""
    return (angle + period / 2) % period - period / 2


def test_start_angle_defaults_to_upright_and_is_checked() -> None:
    assert ShapesConfig().start_angle == "upright" and ShapesConfig(start_angle="upright") == ShapesConfig()
    with pytest.raises(DysenError, match="start_angle"):
        ShapesConfig(start_angle="tilted")  # type: ignore[arg-type]


def test_random_start_keeps_story_caption_and_layout_and_turns_only_polygons() -> None:
    starts: dict[str, list[float]] = {shape: [] for shape in SYMMETRY}
    for i in range(60):
        plain, turned = sample_clip(i, "train", 0, ShapesConfig()), sample_clip(i, "train", 0, RANDOM)
        assert plain.story == turned.story and plain.caption == turned.caption
        for a, b in zip(plain.tracks, turned.tracks, strict=True):
            assert (a.x, a.y, a.radius, a.alpha, a.colour, a.size) == (b.x, b.y, b.radius, b.alpha, b.colour, b.size)
            if a.name == "circle":
                assert b.angle == a.angle == (0.0,) * len(a.angle)
                continue
            start = b.angle[0] - a.angle[0]
            assert 0.0 <= start < SYMMETRY[a.name]
            assert np.allclose(np.subtract(b.angle, a.angle), start)  # the same turn at every frame
            starts[a.name].append(start)
    for shape, drawn in starts.items():  # spread over the period, not stuck at one pose
        assert len(drawn) >= 10 and np.ptp(drawn) > 0.6 * SYMMETRY[shape], shape


def test_a_rotation_turns_on_from_the_start_angle() -> None:
    clip = next(
        c
        for c in (sample_clip(i, "val", 0, RANDOM) for i in range(200))
        if any(e.action == "rotate" for e in c.story.events)
    )
    event = next(e for e in clip.story.events if e.action == "rotate")
    track = clip.tracks[event.agent]
    period = SYMMETRY[track.name]
    assert 0.0 < track.angle[0] < period
    assert track.angle[-1] - track.angle[0] == pytest.approx(RANDOM.rotate_periods * period)


def test_gold_boxes_renders_and_tracker_agree_on_the_start_angle() -> None:
    """Every keyframe box carries its track's angle (start + turn so far) and bounds the rendered pixels of that
    pose tightly; the tracker measures the start angle as the turn between the upright and the random render."""
    checked, size = 0, RANDOM.size
    grid = (np.mgrid[0:size, 0:size] + 0.5) / size  # [2, H, W] pixel centres (y, x)
    background = np.array(vocab.BACKGROUND, dtype=np.uint8)  # shapes never overlap: the rest near one is its own
    firsts = [first for first, _ in align_steps_to_frames(RANDOM.num_steps, RANDOM.num_frames).frames_of_step]
    for i in range(30):
        plain, turned = sample_clip(i, "val", 0, ShapesConfig()), sample_clip(i, "val", 0, RANDOM)
        frames = render_clip(turned, RANDOM)  # [T, H, W, 3]
        for frame, boxes in zip((*firsts, RANDOM.num_frames - 1), turned.dsg.boxes, strict=True):
            for box in boxes:
                track = next(t for t in turned.tracks if t.name == box.object)
                assert box.angle == pytest.approx(track.angle[frame], abs=1e-4)
                if track.alpha[frame] < 1.0:
                    continue
                near = np.hypot(grid[1] - track.x[frame], grid[0] - track.y[frame]) < track.radius[frame] + 2 / size
                ys, xs = np.nonzero(near & (frames[frame] != background).any(axis=-1))  # its pixels, edges too
                x0, y0, x1, y1 = xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size
                for drawn, gold in ((x0, box.x0), (y0, box.y0), (x1, box.x1), (y1, box.y1)):
                    assert drawn == pytest.approx(gold, abs=1.5 / size), (turned.id, box)
        upright = track_shapes(render_clip(plain, ShapesConfig()))
        measured = track_shapes(frames)
        for a, b in zip(plain.tracks, turned.tracks, strict=True):
            if a.name == "circle":
                continue
            shown = [t for t in range(16) if a.alpha[t] == 1.0 and a.radius[t] >= 0.1]  # opaque, not small
            for t in shown:
                turn = measured[a.name].angle[t] - upright[a.name].angle[t]
                error = _wrapped(turn - (b.angle[t] - a.angle[t]), SYMMETRY[a.name])
                assert abs(error) < math.radians(4), (turned.id, a.name, t, math.degrees(error))
                checked += 1
    assert checked > 100


@pytest.mark.parametrize("colours", [tuple(vocab.COLOURS), EIGHT], ids=["six", "eight"])
def test_scorer_reads_gold_renders_of_the_random_world_perfectly(colours: tuple[str, ...]) -> None:
    """The dynamics scorer's ceiling on turned shapes (the 400-clip val run: 1.00 on all three, both palettes)."""
    config = ShapesConfig(colours=colours, start_angle="random")
    actions, fidelity, order = [], [], []
    for i in range(40):
        clip = sample_clip(i, "val", 0, config)
        score = score_video(render_clip(clip, config), clip.dsg, config.colours)
        actions.append(score.action_accuracy)
        fidelity.append(score.object_fidelity)
        if score.order_accuracy is not None:
            order.append(score.order_accuracy)
    assert min(actions) == min(fidelity) == 1.0 and order and min(order) == 1.0


@pytest.mark.parametrize(
    "command",
    [
        ["data", "shapes", "--out", "x"],
        ["train-vae", "--out", "x"],
        ["train-vdm", "--out", "x", "--vae", "v"],
        ["finetune", "--out", "x", "--init", "m"],
    ],
    ids=["data", "train-vae", "train-vdm", "finetune"],
)
def test_start_angle_flag_reaches_the_config(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args([*command, "--world-start-angle", "random"])
    assert ShapesConfig(**world_settings(args)) == RANDOM
    assert ShapesConfig(**world_settings(parser.parse_args(command))) == ShapesConfig()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args([*command, "--world-start-angle", "sideways"])
    assert stop.value.code == 2
    assert "--world-start-angle" in capsys.readouterr().err


def test_world_json_saves_the_start_angle_and_refuses_a_resume_with_another(tmp_path) -> None:
    import json

    from dysen.cli.train import _save_world_settings
    from dysen.train.loop import TrainError

    parser = build_parser()

    def args(*extra: str, resume: bool = False) -> argparse.Namespace:
        parsed = parser.parse_args(["train-vae", "--out", str(tmp_path), *extra])
        parsed.resume = "latest" if resume else None
        return parsed

    _save_world_settings(args("--world-start-angle", "random"))
    assert json.loads((tmp_path / WORLD_FILE).read_text())["start_angle"] == "random"
    _save_world_settings(args("--world-start-angle", "random", resume=True))  # the same world resumes
    with pytest.raises(TrainError, match=r"other world settings for \['start_angle'\]"):
        _save_world_settings(args(resume=True))
    # a world.json from before the option reads as the upright world: it resumes as upright, not as random
    (tmp_path / WORLD_FILE).write_text(json.dumps({"colours": list(vocab.COLOURS), "phrasing": "templates"}))
    _save_world_settings(args(resume=True))
    (tmp_path / WORLD_FILE).write_text(json.dumps({"colours": list(vocab.COLOURS), "phrasing": "templates"}))
    with pytest.raises(TrainError, match="start_angle"):
        _save_world_settings(args("--world-start-angle", "random", resume=True))


def test_latent_cache_fingerprint_names_a_random_start() -> None:
    plain, turned = ShapesDataset(4, "train", 0), ShapesDataset(4, "train", 0, RANDOM)
    assert "start_angle" not in plain.source["config"]  # the default world's caches stay valid
    assert turned.source["config"]["start_angle"] == "random" and turned.source != plain.source
