"""Flag groups that several subcommands share, each declared once: the planner's and the sampling defaults'.

The planner flags are generated from ``PlannerOptions`` (its defaults, its backend list ``BACKENDS``); a
subcommand either builds its own planner (``own=True``: the dataclass defaults) or changes the model's
(``own=False``: every flag defaults to "the model's"). Sampling flags always default to the model's own
settings (``DiffusionConfig`` in its ``model_index.json``, set by ``dysen model set-defaults``); their help names
the shipped model's values, read from its JSON (no torch). ``HelpFormatter`` appends each flag's resolved default
to its help, so no help text restates a number by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Collection, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from dysen.cli.argtypes import nonnegative_int, positive_float
from dysen.planner.build import BACKENDS, PlannerOptions

SHIPPED = "shapes-tiny"
"""The model ``dysen generate`` uses by default; its sampling defaults are quoted in the help."""


class HelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' to every flag whose help does not speak of its default already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default in (argparse.SUPPRESS, [])
        if "default" in text or silent or not action.option_strings:
            return action.help
        return f"{text} (default: %(default)s)"


class DeprecatedAlias(argparse.Action):
    """An old spelling of a flag, kept for one release: it still works and warns on stderr."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        print(f"dysen: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.new}", file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


# -- the planner ---------------------------------------------------------------------------------

PLANNER_FLAGS: dict[str, str] = {
    "planner": "backend",
    "planner_model": "model",
    "base_url": "base_url",
    "api_key_env": "api_key_env",
    "timeout": "timeout_s",
    "plan_budget": "plan_budget_s",
    "answer_format": "answer_format",
    "replay": "replay",
    "no_cache": "cache",
    "cache_path": "cache_path",
    "demos": "demos",
    "policy": "policy",
    "shots": "shots",
    "no_fallback": "fallback",
    "llm_boxes": "llm_boxes",
}
"""Flag dest -> the ``PlannerOptions`` field it sets; ``no_*`` flags set the field to False."""
_SWITCHES = frozenset({"no_cache", "no_fallback", "llm_boxes"})
"""The planner flags that take no value: ``no_*`` turn their field off, the others on."""

_PLANNER_HELP: dict[str, tuple[dict[str, Any], str]] = {
    "planner": ({"choices": BACKENDS}, "planner backend: rules (offline), openai (any OpenAI-compatible server), "
                "hf (a local transformers model), replay (recorded answers)"),
    "planner_model": ({"metavar": "NAME"}, "the planner's LLM: served model name (openai) or path / hub id (hf)"),
    "base_url": ({"metavar": "URL"}, "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama)"),
    "api_key_env": ({"metavar": "VAR"}, "environment variable holding the endpoint's API key"),
    "timeout": ({"type": positive_float, "metavar": "SECONDS"}, "seconds per LLM request"),
    "plan_budget": ({"type": positive_float, "metavar": "SECONDS"}, "seconds one plan may spend on LLM requests in "
                    "all (retries and repairs included); then it falls back or fails"),
    "answer_format": ({"choices": ("text", "json")}, "what the LLM is asked for: tuple text or schema-held JSON"),
    "replay": ({"type": Path, "metavar": "FILE"}, "recorded answers (JSONL) of the replay planner"),
    "no_cache": ({}, "do not answer repeated LLM requests from the cache"),
    "cache_path": ({"type": Path, "metavar": "FILE"}, "LLM cache file (unset: $DYSEN_CACHE_DIR or "
                   "~/.cache/dysen/llm.sqlite)"),
    "demos": ({}, "demonstrations: 'shapes', 'none', a JSONL of gold DSGs, or 'auto' (shapes for LLMs and "
              "policies, none for rules); without --policy they are chosen by similarity"),
    "policy": ({"type": Path, "metavar": "DIR"}, "a trained demonstration policy folder (dysen train-dysen)"),
    "shots": ({"type": nonnegative_int}, "demonstrations per LLM call"),
    "no_fallback": ({}, "fail instead of falling back to the rules planner"),
    "llm_boxes": ({}, "LLM planners: ask the LLM for each object's box at every step (validated, repaired; else "
                  "imagined)"),
}  # fmt: skip


def add_planner_flags(
    p: argparse.ArgumentParser, *, own: bool, only: Collection[str] | None = None, title: str = "planner"
) -> None:
    """The planner flags (``PLANNER_FLAGS``, or ``only`` those dests) as one argument group.

    ``own``: this subcommand builds its own planner, and each flag defaults to ``PlannerOptions``' field;
    otherwise it changes the model's planner, and each flag defaults to None: the model's setting."""
    defaults = {f.name: f.default for f in dataclasses.fields(PlannerOptions)}
    shipped = shipped_index().get("planner", {})
    group = p.add_argument_group(title + ("" if own else ": unset, the model's own settings ('dysen model show')"))
    for dest, field in PLANNER_FLAGS.items():
        if only is not None and dest not in only:
            continue
        kwargs, text = _PLANNER_HELP[dest]
        flag = "--" + dest.replace("_", "-")
        if dest in _SWITCHES:
            action = {"action": "store_true"} if own else {"action": "store_const", "const": True, "default": None}
            group.add_argument(flag, help=text, **action)
            continue
        default = defaults[field] if own else None
        value = shipped.get(field)
        value = f"its own {value}/" if field == "policy" and value else _shown(value)
        help_text = text if own else f"{text} (default: the model's; {SHIPPED}: {value})"
        group.add_argument(flag, default=default, help=help_text, **kwargs)


def add_deprecated_planner_aliases(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """``--backend`` (and, where no pipeline folder is meant, ``--model``) as the old spellings of ``--planner``
    and ``--planner-model``, for one release."""
    p.add_argument("--backend", dest="planner", choices=BACKENDS, action=DeprecatedAlias, new="--planner")
    if model:
        p.add_argument("--model", dest="planner_model", action=DeprecatedAlias, new="--planner-model")


def planner_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PlannerOptions`` fields the planner flags in ``args`` set (flags left at None are left out)."""
    fields = {}
    for dest, field in PLANNER_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            fields[field] = not value if dest.startswith("no_") else value
    return fields


def own_planner(args: argparse.Namespace, **fixed: Any) -> PlannerOptions:
    """The planner of a subcommand with ``add_planner_flags(own=True)``, with ``fixed`` fields on top."""
    return PlannerOptions(**{**planner_fields(args), **fixed})


# -- sampling ------------------------------------------------------------------------------------

SAMPLING_FLAGS: dict[str, tuple[dict[str, Any], str]] = {
    "steps": ({"type": int, "metavar": "N"}, "denoising steps"),
    "guidance": ({"type": float, "metavar": "S"}, "text guidance scale s_text"),
    "dsg_guidance": ({"type": float, "metavar": "S"}, "DSG guidance scale s_dsg (unset in the model: = s_text)"),
    "sampler": ({"choices": ("ddim", "dpmpp", "euler")}, "sampler"),
    "eta": ({"type": float, "metavar": "ETA"}, "DDIM noise: 0 deterministic ODE, 1 as LVDM"),
}
"""The sampling defaults a model carries (``DiffusionConfig`` fields of the same names) and their flags; their values
are checked, all at once, by ``SamplingSettings.resolve`` / ``DiffusionConfig`` (one line naming each bad one)."""


def add_sampling_flags(p: Any, names: Collection[str] = tuple(SAMPLING_FLAGS), note: str = "") -> None:
    """Flags for the sampling settings ``names``; unset, each is the model's own default (``dysen model show``)."""
    shipped = shipped_index().get("diffusion", {})
    for name in SAMPLING_FLAGS:
        if name in names:
            kwargs, text = SAMPLING_FLAGS[name]
            help_text = f"{text}{note} (default: the model's; {SHIPPED}: {_shown(shipped.get(name))})"
            p.add_argument("--" + name.replace("_", "-"), help=help_text, **kwargs)


@cache
def shipped_index() -> Mapping[str, Any]:
    """The shipped model's saved config as plain JSON (``{}`` when the package ships none): a cheap read."""
    path = Path(__file__).resolve().parents[1] / "weights" / SHIPPED / "model_index.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError):
        return {}


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)
