"""dysen.eval.expected / prompt_set / prompt_summary and ``dysen eval --prompts``: prompt sets with expected events,
planned, generated and scored end to end (an event counts only if planned right and drawn)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dysen.cli import main
from dysen.config import TextEncoderSpec, VideoSpec
from dysen.data.shapes import ShapesConfig, render_clip
from dysen.dsg.types import Attribute, DynamicSceneGraph, Event, SceneGraph
from dysen.errors import DysenError
from dysen.eval.benchmark import VideoSampling, benchmark_clips
from dysen.eval.dynamics import score_video
from dysen.eval.expected import ExpectedEvent, event_matches, match_plan, planned_events
from dysen.eval.prompt_set import PromptRecord, parse_record, read_prompt_set, run_prompt_set, score_prompt
from dysen.eval.prompt_summary import mean, proportion, summarise_prompts
from dysen.pipeline import DysenVDMPipeline
from dysen.planner.motion import with_motion
from dysen.planner.rules import RulesPlanner
from dysen.world.colours import DEFAULT_PALETTE
from pipeline_fixtures import TINY, FixedPlanner, HashTextEncoder


def _plan(
    *events: tuple[str, str, str | None, int, int],
    colours: dict[str, str] | None = None,
    palette: tuple[str, ...] = DEFAULT_PALETTE,
) -> DynamicSceneGraph:
    """A DSG of ``(agent, predicate, target, start, end)`` events over 2 steps, agents coloured by ``colours``,
    with canonical motions, as a model of ``palette`` plans it."""
    objects = tuple(dict.fromkeys(e[0] for e in events))
    attributes = tuple(Attribute(object=o, attribute=c) for o, c in (colours or {}).items())
    graph = SceneGraph(objects=objects, attributes=attributes, relations=())
    dsg = DynamicSceneGraph(
        events=tuple(Event(agent=a, predicate=p, target=t, start=s, end=e) for a, p, t, s, e in events),
        graphs=(graph, graph),
    )
    return with_motion(dsg, palette)


# -- matching ---------------------------------------------------------------------------------------------------


def test_matching_takes_shape_synonyms_world_colours_and_canonical_actions():
    ball = planned_events(_plan(("ball", "jumps", None, 0, 2), colours={"ball": "green"}))[0]
    assert ball.action == "jump" and ball.colours == {"green"}
    assert event_matches(ExpectedEvent("circle", "jump", colour="grey", noun="ball"), ball)  # grey is drawn green
    assert event_matches(ExpectedEvent("circle", "jump", colour="green"), ball)  # "ball" is a circle's synonym
    assert not event_matches(ExpectedEvent("circle", "jump", colour="red"), ball)  # the wrong colour
    assert event_matches(ExpectedEvent("circle", "jump", colour="red"), ball, check_colour=False)
    assert not event_matches(ExpectedEvent("square", "jump"), ball)  # the wrong shape
    assert not event_matches(ExpectedEvent("circle", "move_up"), ball)  # the wrong action
    assert not event_matches(ExpectedEvent("circle", "jump"), None)  # nothing planned
    uncoloured = planned_events(_plan(("circle", "jumps", None, 0, 2)))[0]
    assert not event_matches(ExpectedEvent("circle", "jump", colour="blue"), uncoloured)  # the plan lost the colour
    assert event_matches(ExpectedEvent("circle", "jump"), uncoloured)  # no colour asked for
    turns = planned_events(_plan(("square", "turns", "red", 0, 2)))[0]
    assert event_matches(ExpectedEvent("square", "change_colour", target="pink"), turns)  # pink is drawn red
    assert event_matches(ExpectedEvent("square", "change_colour", target="red"), turns)
    assert not event_matches(ExpectedEvent("square", "change_colour", target="blue"), turns)


def test_colours_are_read_in_the_palette_of_the_model_that_planned():
    """A model that draws pink and cyan plans "pink" as pink and "white" as cyan (its nearest): right in its own
    palette, wrong in the default world's, where pink is drawn red and white yellow."""
    eight = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "cyan")
    dsg = _plan(("star", "jumps", None, 0, 1), ("circle", "turns", "pink", 1, 2), colours={"star": "cyan"},
                palette=eight)  # fmt: skip
    expected = [ExpectedEvent("star", "jump", colour="white"), ExpectedEvent("circle", "change_colour", target="pink")]
    assert planned_events(dsg, eight)[0].colours == {"cyan"} and planned_events(dsg)[0].colours == set()
    assert match_plan(expected, dsg, palette=eight) == [0, 1]
    assert match_plan(expected, dsg) == [None, 1]  # the target "pink" is as written, the cyan star is unknown


def test_match_plan_pairs_events_in_time_order_and_names_their_index_in_the_dsg():
    dsg = _plan(("star", "rotates", None, 1, 2), ("circle", "moves left", None, 0, 1))  # listed out of time order
    expected = [ExpectedEvent("circle", "move_left"), ExpectedEvent("star", "rotate")]
    assert match_plan(expected, dsg) == [1, 0]
    assert match_plan(list(reversed(expected)), dsg) == [None, None]  # the order of the prompt matters
    assert match_plan([*expected, ExpectedEvent("star", "grow")], dsg) == [1, 0, None]  # a missing event


# -- scoring a video against its plan ----------------------------------------------------------------------------


def _rendered_move() -> tuple[np.ndarray, DynamicSceneGraph]:
    """A rendered Dynamic Shapes clip of one event ("A large orange circle moves to the right.") and its DSG."""
    clip = benchmark_clips(2)[1]
    assert [(e.agent, e.predicate) for e in clip.dsg.events] == [("circle", "moves right")]
    return render_clip(clip, ShapesConfig()), with_motion(clip.dsg)


def test_an_event_counts_only_if_planned_right_and_drawn():
    frames, plan = _rendered_move()
    right = PromptRecord("a", "dev", "an orange ball rolls right", (ExpectedEvent("circle", "move_right", "orange"),))
    result = score_prompt(right, frames, plan)
    assert result.matched == (0,) and result.drawn == (True,) and result.plan_matched
    wrong = PromptRecord("b", "dev", "an orange ball rolls left", (ExpectedEvent("circle", "move_left", "orange"),))
    missed = score_prompt(wrong, frames, plan)  # the scorer sees the planned move, but the plan is wrong
    assert missed.score.events[0].detected and missed.matched == (None,) and missed.drawn == (False,)
    blank = score_prompt(right, np.zeros_like(frames), plan)  # planned right, nothing drawn
    assert blank.matched == (0,) and blank.drawn == (False,)
    summary = summarise_prompts([result, missed, blank])
    assert summary.overall.action_accuracy.value == pytest.approx(1 / 3)
    assert summary.overall.plan_accuracy.value == pytest.approx(2 / 3) and summary.overall.plans_matched == 2
    assert summary.per_action["move_right"].events == 2 and summary.per_action["move_left"].action_accuracy.value == 0
    json.dumps(result.to_record())


def test_standard_errors_take_the_prompt_as_the_unit():
    share = proportion([[True], [True], [True], [False]])  # one event a prompt: the standard error over prompts
    assert share.value == 0.75 and share.se == pytest.approx(math.sqrt(0.75 * 0.25 / 3)) and share.n == 4
    packed = proportion([[True, True], [False, False]])  # verdicts that go together within a prompt
    assert packed.value == 0.5 and packed.se > proportion([[True], [False], [True], [False]]).se
    avg = mean([1.0, 0.5, None, 0.0])
    assert avg.value == 0.5 and avg.se == pytest.approx(0.5 / math.sqrt(3)) and avg.n == 3
    assert proportion([]).value is None and mean([None]).n == 0 and mean([0.4]).se is None


# -- end to end ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipe() -> DysenVDMPipeline:
    return DysenVDMPipeline.from_config(TINY, planner=RulesPlanner(), text_encoder=HashTextEncoder())


def test_a_wrong_plan_is_a_miss_end_to_end(tiny_pipe, monkeypatch):
    frames, plan = _rendered_move()
    monkeypatch.setattr(tiny_pipe, "planner", FixedPlanner(plan))  # plans "moves right" whatever the prompt
    # the video shows the plan perfectly (the render of the planned clip): only the plan can be wrong
    monkeypatch.setattr(
        "dysen.eval.prompt_set.score_video", lambda _video, dsg, colours: score_video(frames, dsg, colours)
    )
    records = [
        PromptRecord("r", "dev", "the ball rolls right", (ExpectedEvent("circle", "move_right"),)),
        PromptRecord("l", "hidden", "the ball rolls left", (ExpectedEvent("circle", "move_left"),)),
    ]
    results = run_prompt_set(tiny_pipe, records, VideoSampling(steps=1, seed=3), progress=False)
    assert [r.seed for r in results] == [3, 4] and [r.drawn for r in results] == [(True,), (False,)]
    summary = summarise_prompts(results)
    assert summary.per_split["dev"].action_accuracy.value == 1.0
    assert summary.per_split["hidden"].action_accuracy.value == 0.0
    assert summary.per_split["hidden"].object_fidelity.n == 0  # only prompts planned right are averaged


def test_a_prompt_set_is_scored_in_the_colours_of_the_model_that_drew_it(tiny_pipe, monkeypatch):
    """A model whose planner knows pink plans "a pink ball" as pink: right in its palette (the run reads it from the
    model's config), where the default world's six would call the plan wrong."""
    frames, plan = _rendered_move()
    graphs = tuple(
        g.model_copy(update={"attributes": tuple(
            Attribute(object=a.object, attribute="pink" if a.attribute == "orange" else a.attribute)
            for a in g.attributes)})
        for g in plan.graphs
    )  # fmt: skip
    pink = plan.model_copy(update={"graphs": graphs})
    config = dataclasses.replace(tiny_pipe.config, planner=dataclasses.replace(
        tiny_pipe.config.planner, colours=(*DEFAULT_PALETTE, "pink")))  # fmt: skip
    monkeypatch.setattr(tiny_pipe, "planner", FixedPlanner(pink))
    monkeypatch.setattr(tiny_pipe, "config", config)
    seen = []
    monkeypatch.setattr(
        "dysen.eval.prompt_set.score_video",
        lambda _video, dsg, colours: seen.append(colours) or score_video(frames, dsg),
    )
    record = PromptRecord("p", "dev", "a pink ball rolls right", (ExpectedEvent("circle", "move_right", "pink"),))
    (result,) = run_prompt_set(tiny_pipe, [record], VideoSampling(steps=1), progress=False)
    assert seen == [(*DEFAULT_PALETTE, "pink")] and result.plan_matched
    assert score_prompt(record, frames, pink).matched == (None,)  # in the default world's six, pink is no plan colour


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random tiny Dysen-VDM with the bundled MiniLM text encoder (so it loads from its folder), 16x16x16."""
    unet = dataclasses.replace(TINY.unet, text_dim=384)
    rgtrm = dataclasses.replace(TINY.rgtrm, label_dim=384)
    config = dataclasses.replace(
        TINY, unet=unet, rgtrm=rgtrm, text_encoder=TextEncoderSpec(), video=VideoSpec(16, 16, 16, 8)
    )
    folder = tmp_path_factory.mktemp("tiny-model") / "model"
    DysenVDMPipeline.from_config(config).save_pretrained(folder)
    return folder


RECORDS = [
    {"id": "q1", "split": "dev", "prompt": "The red square moves left.",
     "events": [{"shape": "square", "colour": "red", "action": "move_left", "target": None}]},
    {"id": "q2", "split": "hidden", "prompt": "A ball hops, then the blue star spins.",
     "events": [{"shape": "circle", "colour": None, "action": "jump", "target": None, "noun": "ball"},
                {"shape": "star", "colour": "blue", "action": "rotate", "target": None}]},
]  # fmt: skip


def test_dysen_eval_prompts_writes_the_report_and_the_videos(tiny_model, tmp_path, capsys):
    prompts = tmp_path / "set.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    out = tmp_path / "report"
    argv = ["eval", "--prompts", str(prompts), "--model", f"tiny={tiny_model}", "--steps", "2", "--seed", "7"]
    assert main([*argv, "--out", str(out), "--save-videos", "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "prompts" and report["settings"]["num"] == 2
    command = f"dysen eval --out {out} --model tiny={tiny_model} --prompts {prompts} --steps 2 --seed 7"
    assert report["command"] == command + " --save-videos --no-progress"  # what reproduces the run
    (row,) = report["rows"]
    assert row["name"] == "tiny" and row["num_samples"] == 2 and row["seeds"] == [7, 8]
    assert row["sampling"]["steps"] == 2 and row["resolution"] == [16, 16]
    assert [p["id"] for p in row["prompts"]] == ["q1", "q2"] and [len(p["expected"]) for p in row["prompts"]] == [1, 2]
    summary = row["summary"]
    assert summary["overall"]["events"] == 3 and set(summary["per_split"]) == {"dev", "hidden"}
    assert set(summary["per_action"]) == {"move_left", "jump", "rotate"}
    assert set(summary["overall"]["action_accuracy"]) == {"value", "se", "n"}
    assert all((out / "videos" / f"{i}.mp4").is_file() and (out / "videos" / f"{i}.dsg.json").is_file()
               for i in ("q1", "q2"))  # fmt: skip
    assert "Prompt set" in (out / "report.md").read_text() and "[hidden, 1 prompts]" in capsys.readouterr().out
    assert main([*argv, "--num", "1", "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "one" / "report.json").read_text())["rows"][0]["num_samples"] == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not JSON"),
        ('{"id": "x", "prompt": "a", "events": [{"shape": "cube", "action": "jump"}]}', "shape 'cube'"),
        ('{"id": "x", "prompt": "a", "events": [{"shape": "star", "action": "dance"}]}', "action 'dance'"),
        ('{"id": "x", "prompt": "a", "events": []}', "non-empty list"),
        ('{"id": "x", "events": [{"shape": "star", "action": "jump"}]}', "missing keys"),
        ('{"id": "x", "prompt": "a", "events": [{"shape": "star", "action": "change_colour"}]}', "target colour"),
        ('{"id": "q1", "prompt": "a", "events": [{"shape": "star", "action": "jump"}]}', "duplicate id"),
    ],
)
def test_a_malformed_record_is_a_dysen_error_naming_its_line(tmp_path, bad, message):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + bad + "\n")
    with pytest.raises(DysenError, match=rf"set\.jsonl, line 3: .*{message}"):
        read_prompt_set(path)


def test_the_cli_reports_a_malformed_prompt_set_and_clashing_flags(tmp_path, capsys):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n[1, 2]\n")
    assert main(["eval", "--prompts", str(path), "--out", str(tmp_path / "o")]) != 0
    assert "line 2: a record must be a JSON object" in capsys.readouterr().err
    assert main(["eval", "--prompts", str(path), "--real", "--out", str(tmp_path / "o")]) != 0
    assert "does not go with --real" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_paraphrase_set_reads_as_a_prompt_set():
    records = read_prompt_set(Path(__file__).parent / "data" / "paraphrases.jsonl")
    assert len(records) >= 240 and {r.split for r in records} == {"dev", "hidden"}
    assert parse_record(json.dumps(RECORDS[1]), "x").events[0].noun == "ball"
