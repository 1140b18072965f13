"""Every CLI default is its dataclass's: the test walks each subcommand's parser and holds each flag that sets a
dataclass field to that field's default (``RENAMED`` maps the flags spelled differently), and each help text to
the default it resolves to."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from dysen.cli import COMMANDS, build_parser
from dysen.cli.options import PLANNER_FLAGS, SAMPLING_FLAGS, SHIPPED, HelpFormatter
from dysen.cli.train import STAGE_LR
from dysen.data.shapes import ShapesConfig
from dysen.diffusion.schedules import DiffusionConfig, SamplerName
from dysen.pipeline import SHIPPED_MODELS, read_pipeline_config
from dysen.planner.build import BACKENDS, PlannerOptions
from dysen.planner.rl import PAPER_POLICY
from dysen.train.loop import TrainConfig
from dysen.train.stages import VDMTask
from dysen.train.vae_loss import VAELossConfig
from dysen.web.options import DemoLimits, PageOptions

TRAINING = ("train-vae", "train-vdm", "finetune")
OWN_PLANNER = ("plan", "train-dysen", "dsg annotate")  # build their own planner: PlannerOptions' defaults
MODEL_PLANNER = ("generate", "eval", "demo")  # change the model's planner: every planner flag unset by default

NOT_PLANNER = {"train-dysen": ("shots",), "dsg annotate": ("timeout",), "eval": ("device",)}
"""Flags named like a ``PlannerOptions`` field that are not the planner's: the policy's shots (PolicyConfig); a
timeout the VLM shares (unset: each one's own, see test_data_and_annotate_defaults); the models' torch device."""

RENAMED: dict[str, dict[str, str]] = {
    "TrainConfig": {"warmup": "warmup_steps", "workers": "num_workers"},
    "ShapesConfig": {"frames": "num_frames"},
    "ClipSampling": {"frames": "num_frames"},
    "ShardOptions": {"format": "video_format"},
    "PlannerOptions": PLANNER_FLAGS,
    "DemoLimits": {"max_prompt": "max_prompt_chars"},
}
"""Flag dest -> dataclass field, where the two are spelled differently."""


def _fields(cls: Any) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def _subparsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in COMMANDS:
        head, _, tail = name.partition(" ")
        sub = top.choices[head]
        if tail:
            nested = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
            sub = nested.choices[tail]
        yield name, sub


PARSERS = dict(_subparsers())


def _flags(name: str) -> dict[str, argparse.Action]:
    """The options of subcommand ``name`` by dest (deprecated aliases, which share a dest, left out)."""
    return {a.dest: a for a in PARSERS[name]._actions if a.option_strings and a.help != argparse.SUPPRESS}


def _field_flags(name: str, cls: Any) -> dict[str, argparse.Action]:
    """The flags of ``name`` whose dest names a field of ``cls`` (directly or through ``RENAMED``), by field."""
    renamed = RENAMED.get(cls.__name__, {})
    fields = _fields(cls)
    out = {}
    for dest, action in _flags(name).items():
        if dest not in renamed and dest in renamed.values():  # e.g. generate's --model, a folder, not the LLM
            continue
        if cls is PlannerOptions and dest in NOT_PLANNER.get(name, ()):
            continue
        field = renamed.get(dest, dest)
        if field in fields:
            out[field] = action
    return out


@pytest.mark.parametrize("name", TRAINING)
def test_training_flags_default_to_train_config(name: str) -> None:
    defaults, flags = _fields(TrainConfig), _field_flags(name, TrainConfig)
    assert {"steps", "batch_size", "warmup_steps", "num_workers", "ema_decay", "sample_every"} <= set(flags)
    for field, action in flags.items():
        if field == "lr":  # each stage's own peak LR; TrainConfig.lr is the library's stage-agnostic default
            assert action.default == STAGE_LR[name]
        else:
            assert action.default == defaults[field], f"{name} {action.option_strings[0]}"


def test_vae_loss_flags_default_to_vae_loss_config_and_vae_task_takes_it() -> None:
    flags = _field_flags("train-vae", VAELossConfig)
    assert set(flags) == set(_fields(VAELossConfig))  # every loss setting has its flag
    for field, action in flags.items():
        assert action.default == _fields(VAELossConfig)[field], action.option_strings[0]
    assert (VAELossConfig().disc_start, VAELossConfig().disc_weight) == (50001, 0.0)  # what shapes-tiny trained with


@pytest.mark.parametrize("name", ("train-vdm", "finetune"))
def test_sample_video_flags_default_to_vdm_task(name: str) -> None:
    params = inspect.signature(VDMTask.__init__).parameters
    flags = _flags(name)
    for dest in ("sample_steps", "sample_guidance"):
        assert flags[dest].default == params[dest].default


@pytest.mark.parametrize("name", OWN_PLANNER)
def test_own_planner_flags_default_to_planner_options(name: str) -> None:
    defaults, flags = _fields(PlannerOptions), _field_flags(name, PlannerOptions)
    assert {"backend", "model", "base_url"} <= set(flags)
    for field, action in flags.items():
        dest = action.dest
        expected = not defaults[field] if dest.startswith("no_") else defaults[field]
        assert action.default == expected, f"{name} {action.option_strings[0]}"
    backends = typing.get_args(typing.get_type_hints(PlannerOptions)["backend"])
    assert tuple(flags["backend"].choices) == BACKENDS == backends


@pytest.mark.parametrize("name", MODEL_PLANNER)
def test_model_planner_and_sampling_flags_default_to_the_models_settings(name: str) -> None:
    flags = _field_flags(name, PlannerOptions)
    assert {"model", "demos", "policy"} <= set(flags)
    assert all(action.default is None for action in flags.values())
    shipped = read_pipeline_config(SHIPPED_MODELS[SHIPPED]).diffusion
    sampling = {dest: a for dest, a in _flags(name).items() if dest in SAMPLING_FLAGS}
    assert "steps" in sampling
    for dest, action in sampling.items():
        value = getattr(shipped, dest)
        assert action.default is None
        assert f"the model's; {SHIPPED}: {'unset' if value is None else value})" in action.help


def test_sampler_choices_are_the_diffusion_configs() -> None:
    assert tuple(_flags("generate")["sampler"].choices) == typing.get_args(SamplerName)
    assert set(SAMPLING_FLAGS) <= set(_fields(DiffusionConfig))


def test_train_dysen_policy_flags_name_the_paper_preset() -> None:
    flags = _flags("train-dysen")
    for field in ("candidates", "shots", "epochs", "batch_size", "train_number", "lr"):
        assert flags[field].default is None and f"paper: {getattr(PAPER_POLICY, field):g}" in flags[field].help


def test_data_and_annotate_defaults() -> None:
    from dysen.annotate import DEFAULT_STEPS, VLMOptions
    from dysen.cli.data import ANNOTATE_STEPS, VLM_TIMEOUT_S

    for field, action in _field_flags("data shapes", ShapesConfig).items():
        assert action.default == _fields(ShapesConfig)[field], action.option_strings[0]
    assert (ANNOTATE_STEPS, VLM_TIMEOUT_S) == (DEFAULT_STEPS, VLMOptions.timeout_s)
    assert _flags("dsg annotate")["steps"].default == DEFAULT_STEPS


def test_data_shards_flags_default_to_shard_options_and_clip_sampling() -> None:
    from dysen.data.datasets import ClipSampling
    from dysen.data.shards import ShardOptions

    for cls, expected in ((ShardOptions, {"prefix", "max_count", "max_bytes", "video_format"}),
                          (ClipSampling, {"num_frames", "size"})):  # fmt: skip
        flags = _field_flags("data shards", cls)
        assert expected <= set(flags)
        for field, action in flags.items():
            if (cls, field) != (ClipSampling, "stride"):  # unset: 1, or the whole video for activitynet
                assert action.default == _fields(cls)[field], action.option_strings[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_prints_each_resolved_default(name: str) -> None:
    formatter = HelpFormatter(prog="dysen")
    for action in _flags(name).values():
        unset = action.default is None or action.default is False or action.default == []
        if unset or isinstance(action, argparse._HelpAction):
            continue
        text = formatter._expand_help(action)
        assert str(action.default) in text, f"{name} {action.option_strings[0]}: {text!r}"


def test_shipped_sampling_defaults_in_help_are_read_from_its_json() -> None:
    index = json.loads((SHIPPED_MODELS[SHIPPED] / "model_index.json").read_text())
    steps = index["config"]["diffusion"]["steps"]
    assert f"{SHIPPED}: {steps})" in _flags("generate")["steps"].help


def test_demo_flags_default_to_the_demo_settings() -> None:
    limits, page = {"max_prompt_chars", "max_steps", "max_frames"}, {"concurrency", "queue_size"}
    for cls, fields in ((DemoLimits, limits), (PageOptions, page)):
        flags = _field_flags("demo", cls)
        assert fields <= set(flags), cls.__name__
        for field in fields:
            assert flags[field].default == _fields(cls)[field], f"demo {flags[field].option_strings[0]}"


def test_the_plan_budget_flag_reaches_the_planner_settings() -> None:
    from dysen.cli.options import own_planner

    args = build_parser().parse_args(["plan", "a red circle moves right", "--plan-budget", "12.5"])
    assert own_planner(args).plan_budget_s == 12.5
    assert own_planner(build_parser().parse_args(["plan", "x"])).plan_budget_s == PlannerOptions().plan_budget_s


def test_the_llm_boxes_flag_reaches_the_llm_planner() -> None:
    from dysen.cli.options import own_planner
    from dysen.planner.build import build_planner

    args = build_parser().parse_args(["plan", "x", "--planner", "replay", "--replay", "r.jsonl", "--llm-boxes"])
    options = own_planner(args)
    assert options.llm_boxes and not own_planner(build_parser().parse_args(["plan", "x"])).llm_boxes
    assert dataclasses.replace(options, replay=None, backend="openai", model="m").llm_boxes
    planner = build_planner(dataclasses.replace(options, backend="openai", model="m", cache=False))
    assert planner.settings.layout


def test_eval_zero_shot_defaults() -> None:
    from dysen.cli.eval import I3D_BN_EPS, NUM_REAL
    from dysen.eval.features.i3d import TATS_BN_EPS
    from dysen.eval.protocols import NUM_REAL as PROTOCOL_NUM_REAL

    assert (NUM_REAL, I3D_BN_EPS) == (PROTOCOL_NUM_REAL, TATS_BN_EPS)
