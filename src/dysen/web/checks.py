"""What the web demo checks before it spends any compute: input limits, an edited plan, the planner asked for.

Pure functions (no Gradio, no torch) so that every message the page can show is unit-tested. Each failure
is a ``DemoInputError`` whose text says what was wrong and what to do; the page shows it as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.planner.build import PlannerOptions
from dysen.web.options import DemoLimits

PLANNERS: tuple[str, ...] = ("rules", "openai")
"""The planner backends a page may choose: the offline rules, or an OpenAI-compatible endpoint."""

NO_KEY_ENV = "DYSEN_DEMO_ENDPOINT_WITHOUT_KEY"
"""An environment variable name that is never set: used as ``api_key_env`` for endpoints typed in the page, so the
server's API key goes only to the endpoint the server was started with."""


class DemoInputError(DysenError):
    """A request from the demo page is out of bounds or unreadable (the message is shown on the page)."""


def check_prompt(prompt: str | None, limits: DemoLimits, *, required: bool = True) -> str | None:
    """The prompt with surrounding whitespace removed; ``None`` when empty and not ``required``."""
    text = (prompt or "").strip()
    if not text:
        if required:
            raise DemoInputError("the prompt is empty: describe who does what, e.g. 'a red circle moves right'")
        return None
    if len(text) > limits.max_prompt_chars:
        raise DemoInputError(
            f"the prompt has {len(text)} characters; the limit is {limits.max_prompt_chars}: shorten it"
        )
    return text


@dataclass(frozen=True)
class FrameRule:
    """The frame counts a model takes: ``first + step·m`` for m >= 0 (Dysen-VDM: multiples of its autoencoder's
    temporal factor, ``first == step``; a causal 4x VAE: 1, 5, 9, …)."""

    first: int
    step: int

    def takes(self, frames: int) -> bool:
        return frames >= self.first and (frames - self.first) % self.step == 0

    def largest_up_to(self, frames: int) -> int:
        """The most frames it takes that are at most ``frames`` (at least ``first``)."""
        return self.first + max(0, frames - self.first) // self.step * self.step

    def describe(self) -> str:
        if self.first == self.step:
            return f"a multiple of {self.step}"
        return f"{self.first} + {self.step}·m ({', '.join(str(self.first + self.step * m) for m in range(3))}, …)"


@dataclass(frozen=True)
class Settings:
    """The sampling settings of one generate request, checked."""

    steps: int
    frames: int
    seed: int
    guidance: float
    plan_scale: float
    """How strongly the video follows the plan: Dysen-VDM's DSG guidance s_dsg, a backbone's control strength."""


def check_settings(
    steps: float, frames: float, seed: float, guidance: float, plan_scale: float, *, frames_rule: FrameRule,
    limits: DemoLimits,
) -> Settings:  # fmt: skip
    """Whole numbers within ``limits``; ``frames`` one the model takes (``frames_rule``)."""
    steps_i = _whole("steps", steps, 1, limits.max_steps)
    frames_i = _whole("frames", frames, frames_rule.first, limits.max_frames)
    if not frames_rule.takes(frames_i):
        raise DemoInputError(
            f"frames must be {frames_rule.describe()} for this model's autoencoder, got {frames_i}"
        )
    seed_i = _whole("seed", seed, 0, 2**32 - 1)
    scales = []
    for name, value in (("guidance", guidance), ("DSG guidance", plan_scale)):
        if value is None or not math.isfinite(float(value)) or not 0.0 <= float(value) <= limits.max_guidance:
            raise DemoInputError(f"{name} must be a number from 0 to {limits.max_guidance:g}, got {value}")
        scales.append(float(value))
    return Settings(steps_i, frames_i, seed_i, scales[0], scales[1])


def _whole(name: str, value: float | None, low: int, high: int) -> int:
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)) or float(value) != int(value):
        raise DemoInputError(f"{name} must be a whole number from {low} to {high}, got {value}")
    if not low <= int(value) <= high:
        raise DemoInputError(f"{name} must be from {low} to {high}, got {int(value)}")
    return int(value)


def read_plan(text: str | None, limits: DemoLimits) -> DynamicSceneGraph | None:
    """The DSG in an edited plan: JSON (as shown by the page) or the paper's tuple text; ``None`` when empty.

    Besides ``max_plan_chars``, the plan is held to the bounds of every DSG (``dysen.dsg.DSGLimits``: events, steps,
    objects, facts, label length), which keep its picture and layout small."""
    body = (text or "").strip()
    if not body:
        return None
    if len(body) > limits.max_plan_chars:
        raise DemoInputError(f"the plan has {len(body)} characters; the limit is {limits.max_plan_chars}")
    try:
        if body.startswith("{"):
            return DynamicSceneGraph.from_json(body)
        return DynamicSceneGraph.from_text(body)
    except DysenError as err:
        raise DemoInputError(f"the plan cannot be used: {err}. Fix it, or press Plan to start again") from None


def show_plan(dsg: DynamicSceneGraph) -> str:
    """The text of ``dsg`` the page shows for editing (indented JSON)."""
    return dsg.to_json(indent=2)


def planner_options(
    backend: str, base_url: str | None, model: str | None, *, trusted_url: str | None, api_key_env: str,
    demos: str = "auto", policy: Path | None = None,
) -> PlannerOptions:  # fmt: skip
    """The planner a page asks for (``demos``, ``policy`` as in ``PlannerOptions``, set by the server). The server's
    API key (``api_key_env``) is used only when ``base_url`` is the endpoint the server was started with
    (``trusted_url``; ``None`` = OpenAI's API), never for one typed in."""
    if backend not in PLANNERS:
        raise DemoInputError(f"unknown planner {backend!r}; choose one of {', '.join(PLANNERS)}")
    if backend == "rules":
        return PlannerOptions(backend="rules", demos=demos, policy=policy)
    name = (model or "").strip()
    if not name:
        raise DemoInputError("the openai planner needs a model name: the model the endpoint serves, e.g. gpt-4o-mini")
    url = _endpoint(base_url)
    key_env = api_key_env if url == _endpoint(trusted_url) else NO_KEY_ENV
    return PlannerOptions(backend="openai", model=name, base_url=url, api_key_env=key_env, demos=demos, policy=policy)


def _endpoint(url: str | None) -> str | None:
    """A normalised endpoint URL (``None``: OpenAI's API); ``DemoInputError`` unless it is http(s)."""
    text = (url or "").strip().rstrip("/")
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DemoInputError(
            f"the endpoint URL {text!r} must start with http:// or https://, e.g. http://127.0.0.1:8000/v1"
        )
    return text
