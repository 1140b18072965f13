"""`dysen plan`: the offline default, an OpenAI-compatible server with the cache, batches, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dysen.cli import main
from fake_llm_server import Reply

PROMPT = "a lady sits on a chair drinking coffee, then looks out of the window"
ANSWERS = [
    "(lady, sitting on, chair, (0v, 3v))\n(lady, drinking, coffee, (0v, 1v))\n(lady, looking out, window, (1v, 3v))",
    "(lady, in, dress), (cup, white)",
    "(window, open)",
    "(sky, blue)",
    "0 SG: (lady, in, dress)\n1 SG: (window, open)\n2 SG: (sky, blue)",
]


def test_plan_offline_writes_json_and_a_picture(tmp_path, capsys):
    out, picture = tmp_path / "plan.json", tmp_path / "plan.png"
    prompt = "a red circle moves right, then a blue square jumps"
    assert main(["plan", prompt, "--format", "json", "--out", str(out), "--render", str(picture)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved
    events = [(e["agent"], e["predicate"], e["start"], e["end"]) for e in saved["events"]]
    assert events == [("circle", "moves right", 0, 4), ("square", "jumps", 4, 8)]
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_plan_layout_writes_the_boxes_generate_would_imagine_with_that_seed(tmp_path, capsys):
    from dysen.dsg.types import DynamicSceneGraph
    from dysen.planner.layout import imagine_layout
    from dysen.planner.rules import RulesPlanner

    prompt, out = "a red circle moves right, then a blue square jumps", tmp_path / "plan.json"
    assert main(["plan", prompt, "--layout", "3", "--out", str(out)]) == 0
    saved = DynamicSceneGraph.from_json(out.read_text())
    assert saved.boxes == imagine_layout(RulesPlanner().plan(prompt), seed=3).boxes
    assert len(saved.boxes) == saved.num_steps + 1  # a keyframe per step and one at the last frame
    tree = capsys.readouterr().out
    assert "boxes at step 0:" in tree and "boxes at last frame:" in tree and "square: x " in tree


def test_plan_offline_runs_in_a_fresh_process():
    """The installed entry point on the offline default (its latency is measured in benchmarks/cli_latency.py)."""
    command = [sys.executable, "-m", "dysen.cli", "plan", "a red circle moves right, then a blue square jumps"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "circle moves right" in result.stdout


def _openai_args(fake_llm, tmp_path) -> list[str]:
    return [
        "plan", PROMPT, "--planner", "openai", "--planner-model", "fake-model", "--base-url", fake_llm.base_url,
        "--demos", "none", "--cache-path", str(tmp_path / "llm.sqlite"), "--format", "text",
    ]  # fmt: skip


def test_second_identical_openai_plan_makes_no_http_call(fake_llm, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake_llm.push(*(Reply(text) for text in ANSWERS))
    assert main(_openai_args(fake_llm, tmp_path)) == 0
    first = capsys.readouterr()
    assert len(fake_llm.requests) == len(ANSWERS)
    assert "(lady, drinking, coffee, (0v, 1v), [unknown])" in first.out and "(sky, blue)" in first.out
    assert main(_openai_args(fake_llm, tmp_path)) == 0
    second = capsys.readouterr()
    assert len(fake_llm.requests) == len(ANSWERS)  # all answered from the cache
    assert second.out == first.out
    assert "cache 5 hits / 0 misses" in second.err and "0 prompt + 0 completion tokens" in second.err
    assert "5 calls" in first.err and "55 prompt + 35 completion tokens" in first.err


def test_unusable_llm_falls_back_to_rules_unless_told_not_to(fake_llm, tmp_path, capsys):
    fake_llm.push(*[Reply("I cannot help with that.")] * 3)
    args = [*_openai_args(fake_llm, tmp_path), "--no-cache"]
    assert main(args) == 0
    assert "1 fallbacks" in capsys.readouterr().err
    fake_llm.push(*[Reply("I cannot help with that.")] * 3)
    assert main([*args, "--no-fallback"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dysen: error:") and "action planning" in err


def test_batch_plans_a_file_and_resumes(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves right\n\na blue square jumps, then it shrinks\n")
    out = tmp_path / "plans.jsonl"
    assert main(["plan", "--batch", str(prompts), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["1", "3"] and all(r["dsg"] for r in records)
    assert main(["plan", "--batch", str(prompts), "--out", str(out)]) == 0
    assert out.read_text().count("\n") == 2  # nothing redone
    assert "planned 2 of 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan"], "either a PROMPT or --batch"),
        (["plan", "   "], "empty"),
        (["plan", "x", "--planner", "openai"], "needs a model"),
        (["plan", "x", "--planner", "replay"], "recorded answers"),
        (["plan", "--batch", "missing.txt", "--out", "o.jsonl"], "no such prompts file"),
        (["plan", "--batch", "p.txt", "--out", "o.jsonl", "--layout", "0"], "--layout plans one PROMPT"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
