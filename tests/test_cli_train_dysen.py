"""`dysen train-dysen`: the RL selector trains from the CLI, resumes, and its policy serves `dysen plan` and
`dysen generate`, given by a flag or attached to a model folder as its planner's default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import dysen.planner.build
from dysen.cli import main
from dysen.pipeline import DysenVDMPipeline, read_pipeline_config, shipped_model
from dysen.planner.build import PlannerOptions, changed_options
from dysen.planner.rl import POLICY_FILES, PolicySelector
from dysen.planner.rules import RulesPlanner

PROMPT = "a green star jumps, then a red circle grows"


def _record_planners(monkeypatch: pytest.MonkeyPatch) -> list:
    """The planners built from now on, to see which one `dysen generate` plans with."""
    built: list = []
    build_planner = dysen.planner.build.build_planner
    monkeypatch.setattr(
        dysen.planner.build, "build_planner", lambda options: built.append(build_planner(options)) or built[-1]
    )
    return built


def test_train_dysen_tiny_then_plan_and_generate_with_the_policy(tmp_path, capsys, monkeypatch):
    run = tmp_path / "policy"
    args = ["train-dysen", "--out", str(run), "--preset", "tiny", "--embedder", "hashing", "--epochs", "2"]
    assert main(args) == 0
    assert {"epoch-0001", "epoch-0002", "best", "final"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "final" / "config.json").read_text())
    assert config["embedder"] == "hashing-256" and len(config["candidate_ids"]) == 16
    first = capsys.readouterr().out
    assert main(args) == 0  # every epoch is checkpointed: a rerun resumes at the end and retrains nothing
    assert capsys.readouterr().out == first
    prompt = PROMPT
    assert main(["plan", prompt, "--policy", str(run / "final"), "--format", "json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [(e["agent"], e["predicate"]) for e in events] == [("star", "jumps"), ("circle", "grows")]

    built = _record_planners(monkeypatch)
    out = tmp_path / "video.mp4"
    assert main(["generate", prompt, "--policy", str(run / "final"), "--out", str(out), "--steps", "1"]) == 0
    assert isinstance(built[-1], RulesPlanner) and isinstance(
        built[-1].selector, PolicySelector
    )  # the model's backend
    events = json.loads((tmp_path / "video.dsg.json").read_text())["events"]
    assert [(e["agent"], e["predicate"]) for e in events] == [("star", "jumps"), ("circle", "grows")]


def test_train_dysen_refuses_a_pool_larger_than_the_data(tmp_path, capsys):
    data = tmp_path / "gold.jsonl"
    data.write_text(
        json.dumps({"caption": "a dog runs", "dsg": {"events": [], "graphs": [{"objects": ["dog"]}]}}) + "\n"
    )
    assert main(["train-dysen", "--out", str(tmp_path / "run"), "--data", str(data), "--preset", "tiny"]) == 1
    assert "candidates" in capsys.readouterr().err


def test_train_dysen_attach_makes_the_policy_the_models_default(tmp_path, capsys, monkeypatch):
    shipped = shipped_model("shapes-tiny")
    assert shipped is not None
    model = Path(shutil.copytree(shipped, tmp_path / "model"))
    run = tmp_path / "run"
    args = ["train-dysen", "--out", str(run), "--preset", "tiny", "--embedder", "hashing", "--epochs", "1"]
    assert main([*args, "--attach", str(model)]) == 0
    assert "attached" in capsys.readouterr().out
    for name in POLICY_FILES:  # a byte-exact copy, training record included
        assert (model / "policy" / name).read_bytes() == (run / "final" / name).read_bytes()
    assert json.loads((model / "model_index.json").read_text())["config"]["planner"]["policy"] == "policy"
    moved = model.rename(tmp_path / "moved")  # named relative to the folder, so it moves with it
    assert read_pipeline_config(moved).planner.policy == moved / "policy"

    built = _record_planners(monkeypatch)
    out = ["--model", str(moved), "--out", str(tmp_path / "video.mp4"), "--steps", "1"]
    assert main(["generate", PROMPT, *out]) == 0
    assert isinstance(built[-1], RulesPlanner) and isinstance(built[-1].selector, PolicySelector)
    events = json.loads((tmp_path / "video.dsg.json").read_text())["events"]
    assert [(e["agent"], e["predicate"]) for e in events] == [("star", "jumps"), ("circle", "grows")]
    assert main(["generate", PROMPT, *out, "--demos", "none"]) == 0  # naming demonstrations drops the policy
    assert isinstance(built[-1], RulesPlanner) and built[-1].selector is None

    copy = DysenVDMPipeline.from_pretrained(moved, planner=built[-1]).save_pretrained(tmp_path / "copy")
    assert json.loads((copy / "model_index.json").read_text())["config"]["planner"]["policy"] == "policy"
    for name in POLICY_FILES:  # a saved pipeline carries its planner's policy
        assert (copy / "policy" / name).read_bytes() == (run / "final" / name).read_bytes()


def test_train_dysen_attach_refuses_a_folder_that_is_no_model_before_training(tmp_path, capsys):
    args = ["train-dysen", "--out", str(tmp_path / "run"), "--preset", "tiny", "--attach", str(tmp_path)]
    assert main(args) == 1
    assert "model_index.json is missing" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_changed_planner_options_drop_the_policy_only_for_named_demonstrations():
    model = PlannerOptions(policy=Path("model/policy"))
    assert changed_options(model, {"backend": "openai", "model": "m"}).policy == Path("model/policy")
    assert changed_options(model, {"demos": "shapes"}) == PlannerOptions(demos="shapes")
    mine = changed_options(model, {"demos": "mine.jsonl", "policy": Path("mine")})
    assert (mine.demos, mine.policy) == ("mine.jsonl", Path("mine"))
