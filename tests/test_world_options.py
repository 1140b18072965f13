"""Opt-in world settings (issue 23): ``ShapesConfig.colours`` (pink, cyan) and ``phrasing='everyday'``; the default
world stays bit-identical, the rules planner reads every everyday caption exactly, the scorer reads the new
colours when told the palette, and the CLI flags reach the config."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest

from dysen.cli import build_parser
from dysen.cli.world import world_settings
from dysen.data.shapes.render import render_clip
from dysen.dsg.metrics import event_exact_match
from dysen.errors import DysenError
from dysen.eval.dynamics import score_video, track_shapes
from dysen.planner.rules import RulesPlanner
from dysen.world import SPLITS, ShapesConfig, sample_clip, vocab

EXTENDED = (*vocab.COLOURS, "pink", "cyan")

DEFAULT_DIGEST = (
    "37c4006f24d74b7cded1ad1b0b1546c51b1bf2b7564304c6c55cca5c5f7e3c74",
    "ef93c6255508c2c8dd66b2f07d513088d296d91ac09d9f09a7dee8e2e83c1f7e",
)
"""sha256 of the captions + gold DSG JSON of clips 0..59 of every split (seed 0), and of the renders of clips 0..5
of every split, computed before the options existed."""


def _digest(config: ShapesConfig) -> tuple[str, str]:
    text, pixels = hashlib.sha256(), hashlib.sha256()
    for split in SPLITS:
        for i in range(60):
            clip = sample_clip(i, split, 0, config)
            text.update(clip.caption.encode())
            # as DSG schema 1 wrote it: schema 2 (issue 24) added only the optional layout_source, unset in gold DSGs
            text.update(clip.dsg.to_json().replace('{"schema_version": 2,', '{"schema_version": 1,', 1).encode())
            if i < 6:
                pixels.update(render_clip(clip, config).tobytes())
    return text.hexdigest(), pixels.hexdigest()


def test_default_world_is_unchanged() -> None:
    assert ShapesConfig().colours == tuple(vocab.COLOURS) and ShapesConfig().phrasing == "templates"
    assert _digest(ShapesConfig()) == DEFAULT_DIGEST
    assert _digest(ShapesConfig(colours=tuple(vocab.COLOURS), phrasing="templates")) == DEFAULT_DIGEST


def test_extended_palette_draws_and_paints_pink_and_cyan() -> None:
    config = ShapesConfig(colours=EXTENDED)
    clips = [sample_clip(i, "train", 0, config) for i in range(150)]
    worn = {s.colour for c in clips for s in c.story.shapes} | {e.target for c in clips for e in c.story.events}
    assert {"pink", "cyan"} <= worn <= set(EXTENDED) | {None}
    clip = next(c for c in clips if any(s.colour == "pink" for s in c.story.shapes))
    frames = render_clip(clip, config)
    assert (frames == np.array(vocab.PAINTS["pink"], dtype=np.uint8)).all(axis=-1).any()
    assert "pink" in clip.caption
    assert not any(c.story.triples() & vocab.HELD_OUT_TRIPLES for c in clips)  # train still holds them out


@pytest.mark.parametrize("colours", [("red", "white", "blue", "green"), ("red", "red", "blue", "green"), ("red",)])
def test_palette_refuses_unknown_repeated_or_too_few_colours(colours: tuple[str, ...]) -> None:
    with pytest.raises(DysenError, match="colour"):
        ShapesConfig(colours=colours)


def test_phrasing_must_be_known() -> None:
    with pytest.raises(DysenError, match="phrasing"):
        ShapesConfig(phrasing="poetic")  # type: ignore[arg-type]


def test_everyday_captions_parse_exactly_with_the_rules_planner() -> None:
    config = ShapesConfig(phrasing="everyday")
    clips = [sample_clip(i, split, 1, config) for split in SPLITS for i in range(50)]
    phrases = {p.split(" {")[0] for ps in vocab.EVERYDAY_PHRASES.values() for p in ps}
    assert sum(any(p in c.caption for p in phrases) for c in clips) > 50  # the everyday phrases are drawn
    planner = RulesPlanner()
    logging.disable(logging.WARNING)
    try:
        misses = [c.caption for c in clips if not event_exact_match(planner.plan(c.caption).events, c.dsg.events)]
    finally:
        logging.disable(logging.NOTSET)
    assert misses == []


def test_everyday_phrasing_keeps_stories_and_gold() -> None:
    plain, everyday = ShapesConfig(), ShapesConfig(phrasing="everyday")
    for i in range(20):
        a, b = sample_clip(i, "test", 0, plain), sample_clip(i, "test", 0, everyday)
        assert a.story == b.story and a.dsg == b.dsg


def test_cli_world_flags_reach_the_config_and_refuse_unknown_colours(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for command in (["data", "shapes", "--out", "x"], ["train-vdm", "--out", "x", "--vae", "v"]):
        args = parser.parse_args([*command, "--world-colours", ",".join(EXTENDED), "--world-phrasing", "everyday"])
        assert ShapesConfig(**world_settings(args)) == ShapesConfig(colours=EXTENDED, phrasing="everyday")
        default = parser.parse_args(command)
        assert ShapesConfig(**world_settings(default)) == ShapesConfig()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["data", "shapes", "--out", "x", "--world-colours", "red,orange,yellow,teal"])
    assert stop.value.code == 2
    assert "cannot paint 'teal'" in capsys.readouterr().err


def test_scorer_reads_pink_and_cyan_after_h264(tmp_path) -> None:
    from dysen.data.video import read_video, write_video

    config = ShapesConfig(colours=EXTENDED)
    clip = next(
        c
        for c in (sample_clip(i, "test", 0, config) for i in range(400))
        if {"pink", "cyan"} <= {s.colour for s in c.story.shapes}
    )
    frames = read_video(write_video(tmp_path / f"{clip.id}.mp4", render_clip(clip, config)))
    tracks = track_shapes(frames, config.colours)
    for shape in clip.story.shapes:
        if shape.colour in ("pink", "cyan"):
            seen = {c for c in tracks[shape.shape].colour if c is not None}
            assert shape.colour in seen, (shape, seen)
    score = score_video(frames, clip.dsg, config.colours)
    assert score.object_fidelity == 1.0


def test_a_model_trained_on_pink_and_cyan_plans_them(tmp_path) -> None:
    """train-vdm on the extended world saves a planner palette with pink and cyan; a fine-tune keeps it."""
    from dysen.cli import main
    from dysen.config import save_config
    from dysen.pipeline import read_pipeline_config
    from pipeline_fixtures import TINY
    from test_train_latents import _wide

    args = ["--batch-size", "2", "--num-clips", "4", "--save-every", "100", "--steps", "1"]
    vae = ["train-vae", "--config", str(save_config(TINY, tmp_path / "t.yaml")), *args, "--out", str(tmp_path / "vae")]
    assert main(vae) == 0
    config = save_config(_wide(TINY), tmp_path / "text.yaml")  # the CLI builds the real text encoder
    world = ["--world-colours", ",".join(EXTENDED)]
    vdm = ["train-vdm", "--config", str(config), *args, "--vae", str(tmp_path / "vae"), *world]
    assert main([*vdm, "--out", str(tmp_path / "vdm")]) == 0
    assert read_pipeline_config(tmp_path / "vdm" / "model").planner.colours == EXTENDED
    fine = ["finetune", "--init", str(tmp_path / "vdm" / "model"), *args, "--out", str(tmp_path / "fine")]
    assert main(fine) == 0  # the default world's clips: the model still knows pink and cyan
    assert read_pipeline_config(tmp_path / "fine" / "model").planner.colours == EXTENDED
