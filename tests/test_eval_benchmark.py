"""dysen.eval.benchmark / variants / report: the Dynamic Shapes benchmark, its ablation rows and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dysen.data.datasets import read_gold
from dysen.data.shapes import ShapesConfig
from dysen.dsg.convert import events_to_dsg
from dysen.errors import DysenError
from dysen.eval.benchmark import (
    GOLD_FILE,
    VideoSampling,
    benchmark_clips,
    score_folder,
    score_pipeline,
    score_reconstructions,
    score_renders,
    shapes_config_for,
    summarise,
)
from dysen.eval.report import planner_text, write_report
from dysen.eval.variants import (
    AUTOENCODER_ROW,
    AblationUnavailable,
    Variant,
    ablate,
    ablation_variants,
    planner_record,
    run_variant,
)
from dysen.pipeline import DysenVDMPipeline
from dysen.planner.build import PlannerOptions
from dysen.planner.demos import DemoBank, RandomSelector, SimilaritySelector
from dysen.planner.dysen import DysenPlanner
from dysen.planner.embed import HashingEmbedder
from dysen.planner.motion import with_motion
from dysen.planner.rules import RulesPlanner
from pipeline_fixtures import DSG_A, TINY, FixedPlanner, HashTextEncoder


def test_ground_truth_renders_score_full_marks_and_the_summary_adds_up():
    clips = benchmark_clips(6)
    results = score_renders(clips, ShapesConfig(), progress=False)
    assert [r.score.action_accuracy for r in results] == [1.0] * 6
    assert [r.score.object_fidelity for r in results] == [1.0] * 6
    summary = summarise(results)
    events = sum(len(c.dsg.events) for c in clips)
    assert summary["overall"]["events"] == events and summary["overall"]["action_accuracy"] == 1.0
    assert sum(g["events"] for g in summary["per_action"].values()) == events
    assert all(g["action_accuracy"] == 1.0 for g in summary["per_action"].values())
    assert set(summary["per_action"]) <= {
        "move_left", "move_right", "move_up", "move_down", "jump", "grow", "shrink", "rotate", "appear",
        "disappear", "change_colour",
    }  # fmt: skip
    per_count = summary["per_num_events"]
    assert sum(g["clips"] for g in per_count.values()) == 6
    assert {int(k) for k in per_count} == {len(c.dsg.events) for c in clips}
    record = results[0].to_record()
    assert record["id"] == clips[0].id and len(record["events"]) == len(clips[0].dsg.events)
    json.dumps(record)  # JSON-ready
    with pytest.raises(DysenError, match="nothing to summarise"):
        summarise([])


@pytest.fixture(scope="module")
def tiny_pipe() -> DysenVDMPipeline:
    return DysenVDMPipeline.from_config(TINY, planner=RulesPlanner(), text_encoder=HashTextEncoder())


def test_a_tiny_pipeline_runs_the_benchmark_and_its_saved_videos_score_again(tiny_pipe, tmp_path):
    shapes = shapes_config_for(tiny_pipe.config.video)
    assert (shapes.size, shapes.num_frames) == (16, 8)
    clips = benchmark_clips(2, seed=3, config=shapes)
    results = score_pipeline(tiny_pipe, clips, VideoSampling(steps=2, seed=5), save_dir=tmp_path, progress=False)
    assert [r.id for r in results] == [c.id for c in clips] and all(r.size == (8, 16, 16) for r in results)
    assert [r.gold for r in results] == [c.dsg for c in clips]
    assert all(r.planned == RulesPlanner().plan(c.caption) for r, c in zip(results, clips, strict=True))
    assert all(r.seconds > 0 for r in results)
    assert sorted(read_gold(tmp_path / GOLD_FILE)) == sorted(c.id for c in clips)
    assert all((tmp_path / f"{c.id}.mp4").is_file() and (tmp_path / f"{c.id}.dsg.json").is_file() for c in clips)
    again = score_folder(tmp_path, progress=False)
    assert [r.id for r in again] == sorted(c.id for c in clips)
    by_id = {c.id: c for c in clips}
    assert all(r.gold == by_id[r.id].dsg and r.caption == by_id[r.id].caption for r in again)
    oracle = score_pipeline(tiny_pipe, clips[:1], VideoSampling(steps=1, plan="gold"), progress=False)
    assert oracle[0].planned == with_motion(clips[0].dsg)  # the gold plan, with its canonical motions


def test_a_folder_without_gold_is_scored_against_the_dsg_beside_each_video(tiny_pipe, tmp_path):
    clips = benchmark_clips(1, config=shapes_config_for(tiny_pipe.config.video))
    score_pipeline(tiny_pipe, clips, VideoSampling(steps=1), save_dir=tmp_path, progress=False)
    (tmp_path / GOLD_FILE).unlink()
    (result,) = score_folder(tmp_path, progress=False)
    assert result.gold == RulesPlanner().plan(clips[0].caption) and result.caption == ""
    (tmp_path / f"{clips[0].id}.dsg.json").unlink()
    with pytest.raises(DysenError, match="no DSG to score against"):
        score_folder(tmp_path, progress=False)
    with pytest.raises(DysenError, match="not a folder"):
        score_folder(tmp_path / "absent", progress=False)


class _SilentBackend:
    """A chat backend that must not be called."""

    name, model = "silent", "none"

    def complete(self, messages, *, sampling=None, json_schema=None):
        raise AssertionError("no LLM call expected")


def test_ablations_rebuild_the_llm_planner():
    bank = DemoBank.from_shapes(6)
    full = DysenPlanner(
        _SilentBackend(), selector=SimilaritySelector(bank, HashingEmbedder(64)), shots=3, fallback=RulesPlanner()
    )
    no_imagination = ablate(full, imagination=False, random_demos=False)
    assert not no_imagination.settings.imagination and not no_imagination.settings.polish
    assert no_imagination.selector is full.selector and no_imagination.settings.shots == 3
    assert isinstance(no_imagination.fallback, RulesPlanner) and not no_imagination.fallback.imagination
    random_demos = ablate(full, imagination=True, random_demos=True, seed=1)
    assert random_demos.settings.imagination and isinstance(random_demos.selector, RandomSelector)
    assert random_demos.selector.bank is bank and random_demos.fallback.imagination
    with pytest.raises(AblationUnavailable, match="plans without any"):
        ablate(DysenPlanner(_SilentBackend()), imagination=True, random_demos=True)
    with pytest.raises(DysenError, match="DysenPlanner and RulesPlanner"):
        ablate(FixedPlanner(DSG_A), imagination=False, random_demos=False)


def test_rules_ablations_stop_after_step_two_or_draw_demonstrations_at_random():
    bank = DemoBank.from_shapes(6)
    full = RulesPlanner(selector=SimilaritySelector(bank, HashingEmbedder(64)))
    prompt = "a small red circle moves right, then a blue square jumps"
    planned = full.plan(prompt)
    raw = ablate(full, imagination=False, random_demos=False).plan(prompt)
    assert raw == events_to_dsg(planned.events)  # Step II's raw graphs: the events alone
    assert {a.attribute for g in raw.graphs for a in g.attributes} == {"moves right", "jumps"}  # no colour, size
    assert {"red", "small", "blue"} <= {a.attribute for g in planned.graphs for a in g.attributes}
    random_demos = ablate(full, imagination=True, random_demos=True, seed=1)
    assert isinstance(random_demos.selector, RandomSelector) and random_demos.selector.bank is bank
    assert random_demos.imagination and random_demos.plan(prompt).events == planned.events
    with pytest.raises(AblationUnavailable, match="--demos shapes"):
        ablate(RulesPlanner(), imagination=True, random_demos=True)


def test_the_ablation_rows_run_with_any_planner():
    rows = ablation_variants(None, None, planner=PlannerOptions(backend="rules"))
    assert [v.name for v in rows] == [
        "ground truth (renders)", AUTOENCODER_ROW, "Dysen-VDM (full)", "text-only backbone", "no imagination",
        "random demonstrations",
    ]  # fmt: skip
    assert all(v.skip is None for v in rows) and rows[3].config == "shapes-tiny-text-only"  # shipped beside it
    own = ablation_variants(Path("full"), None)[3]  # the shipped text-only model is no ablation of another model
    assert own.skip == "the full model is full: give its text-only backbone with --text-only DIR"
    assert "or shipped (nowhere-text-only)" in ablation_variants(None, None, config="nowhere")[3].skip
    assert not rows[4].imagination and rows[5].demos == "random"
    llm = ablation_variants(Path("full"), Path("text"), planner=PlannerOptions(backend="replay"))
    assert all(v.skip is None for v in llm) and not llm[4].imagination and llm[5].demos == "random"
    assert llm[1].source == "reconstructions" and llm[1].model == Path("full")
    changed = ablation_variants(None, None, planner_changes={"demos": "shapes"})
    assert [v.planner_changes for v in changed] == [None, None, {"demos": "shapes"}, None] + [{"demos": "shapes"}] * 2


def test_the_report_names_the_rl_policy_that_chose_the_demonstrations():
    model = PlannerOptions(policy=Path("model/policy"))
    own = planner_record(Variant("Dysen-VDM (full)"), model)
    assert (own["backend"], own["policy"]) == ("the model's (config)", "model/policy")
    assert planner_text(own) == (
        "planner the model's (config) (imagination on, demonstrations chosen by the RL policy model/policy)"
    )
    given = planner_record(Variant("x", planner=PlannerOptions(backend="replay")), model)
    assert given["policy"] is None
    assert planner_text(given) == "planner replay (imagination on, demonstrations retrieved from shapes)"
    random = planner_record(Variant("random demonstrations", demos="random"), model)
    assert planner_text(random).endswith("random demonstrations)")
    none = planner_record(Variant("x", planner_changes={"demos": "none"}), model)
    assert none["policy"] is None and none["source"] == "none"
    assert (
        planner_text(none) == "planner the model's (config), changed: demos none (imagination on, no demonstrations)"
    )
    plain_rules = planner_record(Variant("x", imagination=False), PlannerOptions())
    assert planner_text(plain_rules) == "planner the model's (config) (imagination off, no demonstrations)"
    unused = planner_record(Variant("no imagination", imagination=False), model)  # rules: demos only imagine
    assert planner_text(unused) == "planner the model's (config) (imagination off, no demonstrations)"
    llm = planner_record(Variant("x", planner=PlannerOptions(backend="replay"), imagination=False), model)
    assert planner_text(llm) == "planner replay (imagination off, demonstrations retrieved from shapes)"


def test_the_report_states_counts_frames_resolution_and_skipped_rows(tmp_path):
    rows = [
        run_variant(Variant("ground truth", source="renders", sampling=VideoSampling(seed=2)), 3, progress=False),
        run_variant(Variant("text-only backbone", skip="no text-only model given"), 3),
    ]
    assert rows[0]["num_samples"] == 3 and rows[0]["frames"] == 16 and rows[0]["resolution"] == [64, 64]
    report = {
        "protocol": "shapes", "created": "now", "dysen_version": "0", "command": "dysen eval", "wall_s": 1.0,
        "machine": {"platform": "p", "python": "3", "torch": "t", "cpus": 2, "device": "cpu"}, "settings": {},
        "rows": rows,
    }  # fmt: skip
    written = write_report(tmp_path, report)
    assert [p.name for p in written] == [
        "report.json",
        "report.md",
        "scores.png",
        "per_action.png",
        "per_num_events.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written[2:])
    markdown = (tmp_path / "report.md").read_text()
    assert "| ground truth | 3 | 16x64x64 | 1.000 ± 0.000 | 1.000 ± 0.000 |" in markdown
    assert "not run: no text-only model given" in markdown and "3 videos of 16 frames at 64x64" in markdown
    assert json.loads((tmp_path / "report.json").read_text())["rows"][1]["skipped"] == "no text-only model given"


class _LosslessAutoencoder(torch.nn.Module):
    """encode = decode = identity: its reconstructions are the renders themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return video

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


class _BlankingAutoencoder(_LosslessAutoencoder):
    """Decodes every clip to a black video: nothing is left to score."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.full_like(latents, -1.0)


def test_autoencoder_ceiling_scores_the_round_trip_of_the_renders() -> None:
    config = ShapesConfig()
    clips = benchmark_clips(3, seed=1, config=config)
    lossless = score_reconstructions(_LosslessAutoencoder(), clips, config, batch_size=2, progress=False)
    renders = score_renders(clips, config, progress=False)
    assert [r.id for r in lossless] == [c.id for c in clips]
    assert [r.score.action_accuracy for r in lossless] == [r.score.action_accuracy for r in renders]
    assert summarise(lossless)["overall"]["object_fidelity"] == 1.0
    blank = score_reconstructions(_BlankingAutoencoder(), clips, config, progress=False)
    assert summarise(blank)["overall"]["object_fidelity"] == 0.0


def test_unset_guidance_and_steps_are_the_models_and_the_record_says_which() -> None:
    from dysen.diffusion.schedules import DiffusionConfig

    model = DiffusionConfig(guidance=3.0, dsg_guidance=None)
    assert (VideoSampling().for_model(model).guidance, VideoSampling().for_model(model).dsg_guidance) == (3.0, 3.0)
    with_dsg = DiffusionConfig(guidance=3.0, dsg_guidance=1.5)
    assert VideoSampling().for_model(with_dsg).dsg_guidance == 1.5
    given = VideoSampling(guidance=7.5, dsg_guidance=0.0).for_model(with_dsg)
    assert (given.guidance, given.dsg_guidance) == (7.5, 0.0)  # what the user asked for wins
    steps = VideoSampling().for_model(DiffusionConfig(steps=25)).steps, VideoSampling(steps=4).for_model(model).steps
    assert steps == (25, 4)


def test_pooled_standard_error_treats_clips_as_the_units() -> None:
    from dysen.eval.stats import pooled_standard_error

    assert pooled_standard_error([[True, False]]) is None  # one clip: no spread to measure
    assert pooled_standard_error([[True], [True], [True]]) == 0.0
    one_event_each = [[True], [False], [True], [False]]
    share = 0.5
    binomial_over_clips = (share * (1 - share) / (len(one_event_each) - 1)) ** 0.5  # one event a clip: the clip SE
    assert abs(pooled_standard_error(one_event_each) - binomial_over_clips) < 1e-12
    # the same verdicts packed two to a clip are less informative than four independent clips
    assert pooled_standard_error([[True, True], [False, False]]) > pooled_standard_error(one_event_each)
