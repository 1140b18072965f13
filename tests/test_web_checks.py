"""dysen.web.checks: the web demo's input limits, edited-plan reader and planner choice (no browser, no Gradio)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from dysen.cli import main
from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.web.checks import (
    NO_KEY_ENV,
    DemoInputError,
    DemoLimits,
    FrameRule,
    check_prompt,
    check_settings,
    planner_options,
    read_plan,
    show_plan,
)

LIMITS = DemoLimits(max_prompt_chars=40, max_plan_chars=2000, max_steps=10, max_frames=16)
DSG = DynamicSceneGraph.from_events([Event(agent="circle", predicate="moves right", start=0, end=2)])


def test_prompt_is_stripped_and_bounded() -> None:
    assert check_prompt("  a red circle moves right \n", LIMITS) == "a red circle moves right"
    with pytest.raises(DemoInputError, match="the prompt is empty"):
        check_prompt("   ", LIMITS)
    assert check_prompt("", LIMITS, required=False) is None
    with pytest.raises(DemoInputError, match="the prompt has 41 characters; the limit is 40"):
        check_prompt("x" * 41, LIMITS)


def test_settings_within_limits_are_converted() -> None:
    settings = check_settings(4.0, 8.0, 3.0, 7.5, 2, frames_rule=FrameRule(2, 2), limits=LIMITS)
    assert (settings.steps, settings.frames, settings.seed, settings.guidance, settings.plan_scale) == (
        4,
        8,
        3,
        7.5,
        2,
    )
    assert isinstance(settings.steps, int) and isinstance(settings.plan_scale, float)


@pytest.mark.parametrize(
    "steps,frames,seed,guidance,message",
    [
        (11, 8, 0, 7.5, "steps must be from 1 to 10, got 11"),
        (0, 8, 0, 7.5, "steps must be from 1 to 10, got 0"),
        (2.5, 8, 0, 7.5, "steps must be a whole number"),
        (None, 8, 0, 7.5, "steps must be a whole number"),
        (2, 18, 0, 7.5, "frames must be from 2 to 16, got 18"),
        (2, 7, 0, 7.5, "frames must be a multiple of 2"),
        (2, 8, -1, 7.5, "seed must be from 0 to"),
        (2, 8, 0, math.nan, "guidance must be a number from 0 to 30"),
        (2, 8, 0, 31, "guidance must be a number from 0 to 30, got 31"),
    ],
)
def test_settings_out_of_bounds_say_which_and_why(steps, frames, seed, guidance, message) -> None:
    with pytest.raises(DemoInputError, match=message):
        check_settings(steps, frames, seed, guidance, 1.0, frames_rule=FrameRule(2, 2), limits=LIMITS)


def test_frame_rules_of_a_dysen_autoencoder_and_a_causal_4x_vae() -> None:
    wan = FrameRule(1, 4)
    assert [n for n in range(1, 18) if wan.takes(n)] == [1, 5, 9, 13, 17] and wan.largest_up_to(16) == 13
    with pytest.raises(DemoInputError, match=r"frames must be 1 \+ 4·m \(1, 5, 9, …\) for this model"):
        check_settings(2, 8, 0, 7.5, 1.0, frames_rule=wan, limits=LIMITS)
    assert check_settings(2, 9, 0, 7.5, 1.0, frames_rule=wan, limits=LIMITS).frames == 9


def test_plan_reads_the_shown_json_and_the_tuple_text() -> None:
    assert read_plan(show_plan(DSG), LIMITS) == DSG
    assert read_plan(DSG.to_text(), LIMITS) == DSG
    assert read_plan("  \n", LIMITS) is None


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"graphs": [', "not valid JSON"),
        ('{"graphs": []}', r"graphs: .*at least 1"),
        ('{"events": [{"agent": "circle", "predicate": "moves", "start": 2, "end": 1}], "graphs": [{}, {}, {}]}',
         "end > start"),
        ('{"events": [{"agent": "circle", "predicate": "moves", "start": 0, "end": 5}], "graphs": [{}]}',
         "ends at 5v but there are only 1 time steps"),
        ("(circle, moves right, (0v, 2v)\n0 SG: (circle", "line"),
    ],
)  # fmt: skip
def test_bad_edits_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(DemoInputError, match=message) as info:
        read_plan(text, LIMITS)
    assert str(info.value).startswith("the plan cannot be used:") and "press Plan" in str(info.value)


def test_overlong_plan_is_refused_before_parsing() -> None:
    with pytest.raises(DemoInputError, match="the plan has 2001 characters; the limit is 2000"):
        read_plan('{"a": "' + "x" * 1992 + '"}', LIMITS)


def test_rules_planner_needs_nothing() -> None:
    options = planner_options("rules", "http://evil.example/v1", "m", trusted_url=None, api_key_env="OPENAI_API_KEY")
    assert options.backend == "rules" and options.base_url is None


def test_the_server_key_goes_only_to_the_endpoint_the_server_trusts() -> None:
    trusted = "http://127.0.0.1:8000/v1"
    same = planner_options("openai", trusted + "/ ", " llama ", trusted_url=trusted, api_key_env="MY_KEY")
    assert (same.base_url, same.model, same.api_key_env) == (trusted, "llama", "MY_KEY")
    other = planner_options("openai", "http://evil.example/v1", "llama", trusted_url=trusted, api_key_env="MY_KEY")
    assert other.base_url == "http://evil.example/v1" and other.api_key_env == NO_KEY_ENV
    openai = planner_options("openai", "", "gpt-4o-mini", trusted_url=None, api_key_env="MY_KEY")
    assert openai.base_url is None and openai.api_key_env == "MY_KEY"
    not_openai = planner_options("openai", "", "gpt-4o-mini", trusted_url=trusted, api_key_env="MY_KEY")
    assert not_openai.base_url is None and not_openai.api_key_env == NO_KEY_ENV


@pytest.mark.parametrize("backend", ["rules", "openai"])
def test_the_servers_demonstrations_and_policy_reach_every_planner(backend: str) -> None:
    policy = Path("runs/dysen-policy/final")
    options = planner_options(backend, "", "m", trusted_url=None, api_key_env="K", demos="shapes", policy=policy)
    assert (options.backend, options.demos, options.policy) == (backend, "shapes", policy)


@pytest.mark.parametrize(
    "backend,url,model,message",
    [
        ("hf", "", "m", "unknown planner 'hf'; choose one of rules, openai"),
        ("openai", "", " ", "needs a model name"),
        ("openai", "file:///etc/passwd", "m", "must start with http:// or https://"),
        ("openai", "127.0.0.1:8000", "m", "must start with http:// or https://"),
    ],
)
def test_bad_planner_choices_are_refused(backend: str, url: str, model: str, message: str) -> None:
    with pytest.raises(DemoInputError, match=message):
        planner_options(backend, url, model, trusted_url=None, api_key_env="OPENAI_API_KEY")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "30", "--max-steps", "20"], "--steps 30 is more than --max-steps 20"),
    ],
)
def test_demo_command_refuses_bad_flags_in_one_line(argv: list[str], message: str, capsys) -> None:
    assert main(["demo", *argv]) == 1
    assert capsys.readouterr().err == f"dysen: error: {message}\n"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--concurrency", "0"], "argument --concurrency: 0 is out of range: expected >= 1"),
        (["--max-steps=-3"], "argument --max-steps: -3 is out of range: expected >= 1"),
        (["--port", "70000"], "argument --port: 70000 is out of range: expected 1..65535"),
    ],
)
def test_demo_command_refuses_bad_numbers_at_argparse(argv: list[str], message: str, capsys) -> None:
    """Out-of-range numbers stop at argparse since issue 22 (usage, then one error line; exit 2)."""
    with pytest.raises(SystemExit) as exit:
        main(["demo", *argv])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.strip().splitlines()[-1] == f"dysen demo: error: {message}"


def test_demo_command_is_built_and_its_parser_loads_no_gradio() -> None:
    code = (
        "import sys; from dysen.cli import COMMANDS, build_parser; build_parser(); "
        "print('not built' in COMMANDS['demo'].help, 'gradio' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False", "False"]
