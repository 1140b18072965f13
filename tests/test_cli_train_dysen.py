"""`dysen train-dysen`: the RL selector trains from the CLI, resumes, and its policy serves `dysen plan` and
`dysen generate`."""

from __future__ import annotations

import json

import dysen.planner.build
from dysen.cli import main
from dysen.planner.rl import PolicySelector
from dysen.planner.rules import RulesPlanner


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
    prompt = "a green star jumps, then a red circle grows"
    assert main(["plan", prompt, "--policy", str(run / "final"), "--format", "json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [(e["agent"], e["predicate"]) for e in events] == [("star", "jumps"), ("circle", "grows")]

    built = []  # the planners built, to see which one `dysen generate` plans with
    build_planner = dysen.planner.build.build_planner
    monkeypatch.setattr(
        dysen.planner.build, "build_planner", lambda options: built.append(build_planner(options)) or built[-1]
    )
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
