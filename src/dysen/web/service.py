"""What the demo page's buttons run, without Gradio: plan a prompt, check an edited plan, generate the files.

The model runs one video at a time (a lock: the networks and the lazily loaded text encoder are shared); the
page's queue bounds how many requests wait. Every request writes into its own folder under ``workdir``;
folders older than ``keep_s`` are removed as new ones are made.

The page's endpoint field reaches only endpoints the operator allowed: the server's own ``--base-url``
(``trusted_url``; none given = OpenAI's API) and each ``--allow-endpoint`` (``allowed_endpoints``). Anything else
is refused before a request is sent (issue 22: a page user's own server could otherwise answer for, and fill the
cache of, everyone). The API key still goes to ``trusted_url`` only; each endpoint has its own planner and its
own cache entries (the cache keys on the endpoint).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.pipeline import DysenVDMPipeline, shipped_model
from dysen.planner.backends.base import normalize_endpoint
from dysen.planner.types import Planner
from dysen.web.checks import (
    DemoInputError,
    DemoLimits,
    Settings,
    check_prompt,
    planner_options,
    read_plan,
)
from dysen.web.engines import DysenEngine, VideoEngine


@dataclass(frozen=True)
class PlanResult:
    """A plan to show: the DSG, its timeline picture, its boxes over time and a one-line summary."""

    dsg: DynamicSceneGraph
    timeline: Path
    summary: str
    boxes: Path | None = None
    """The boxes the generate step uses (the plan's own, else imagined with the page's seed); None when the model
    follows no boxes (a model without layout maps, such as a text-only ablation) or none fit."""


@dataclass(frozen=True)
class Generated:
    """The files of one generated video and the DSG it followed."""

    dsg: DynamicSceneGraph
    mp4: Path
    gif: Path
    dsg_json: Path
    timeline: Path
    summary: str
    boxes: Path | None = None
    """The boxes over time the video followed (imagined with its seed when the plan had none); None when the model
    follows no boxes."""


def uses_random_weights(model: str | os.PathLike[str] | None, config: str) -> bool:
    """Whether ``load_pipeline(model, config=config)`` builds random weights (no folder, no shipped model)."""
    return model is None and shipped_model(config) is None


class DemoService:
    """Planning and generation for the page, over one video engine (a Dysen-VDM pipeline, or a ``VideoEngine`` such
    as a backbone's); thread-safe."""

    def __init__(
        self,
        pipe: DysenVDMPipeline | VideoEngine,
        workdir: str | os.PathLike[str],
        *,
        limits: DemoLimits | None = None,
        trusted_url: str | None = None,
        allowed_endpoints: Sequence[str] = (),
        api_key_env: str = "OPENAI_API_KEY",
        demos: str = "auto",
        policy: str | os.PathLike[str] | None = None,
        keep_s: float = 3600.0,
    ) -> None:
        self.limits, self.keep_s, self.demos = limits or DemoLimits(), keep_s, demos
        if isinstance(pipe, DysenVDMPipeline):
            pipe = DysenEngine(pipe, self.limits.max_frames)
        self.engine: VideoEngine = pipe
        self.policy = None if policy is None else Path(policy)
        self.trusted_url, self.api_key_env = trusted_url, api_key_env
        self.allowed_endpoints = _allowed(trusted_url, allowed_endpoints)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._model_lock, self._planners_lock = threading.Lock(), threading.Lock()
        self._planners: dict[tuple[str, str | None, str | None], Planner] = {}

    @property
    def pipe(self) -> Any:
        """The engine's pipeline."""
        return self.engine.pipe  # type: ignore[attr-defined]

    @property
    def follows_boxes(self) -> bool:
        """Whether the model is grounded in the plan's boxes (layout maps); a text-only model ignores them."""
        return self.engine.follows_boxes

    @property
    def frame_multiple(self) -> int:
        """The step between the frame counts the model takes."""
        return self.engine.frames.step

    @property
    def default_frames(self) -> int:
        return self.engine.default_frames

    def planner(self, backend: str, base_url: str | None = None, model: str | None = None) -> Planner:
        """The planner the page chose (built once per backend / endpoint / model)."""
        from dysen.planner.build import build_planner

        options = planner_options(
            backend, base_url, model, trusted_url=self.trusted_url, api_key_env=self.api_key_env, demos=self.demos,
            policy=self.policy,
        )  # fmt: skip
        endpoint = None if options.backend == "rules" else normalize_endpoint(options.base_url)
        if endpoint is not None and endpoint not in self.allowed_endpoints:
            raise DemoInputError(
                f"the endpoint {endpoint} is not allowed on this server "
                f"(allowed: {', '.join(self.allowed_endpoints)}); "
                f"its operator can allow it with: dysen demo --allow-endpoint {endpoint}"
            )
        key = (options.backend, endpoint, options.model)
        with self._planners_lock:
            if key not in self._planners:
                self._planners[key] = build_planner(options)
            return self._planners[key]

    def plan(
        self, prompt: str | None, backend: str = "rules", base_url: str | None = None, model: str | None = None,
        seed: int = 0,
    ) -> PlanResult:
        """Plan ``prompt`` with the chosen planner and draw the plan (its boxes imagined with ``seed``)."""
        text = check_prompt(prompt, self.limits)
        from dysen.planner.colours import collected_warnings

        with collected_warnings() as said:  # colours the world lacks, replaced while planning
            dsg = self.planner(backend, base_url, model).plan(text)  # type: ignore[arg-type]
        return self._drawn(dsg, text, f"planned with {backend}", seed, said)

    def check(self, plan_text: str | None, prompt: str | None = None, seed: int = 0) -> PlanResult:
        """Validate an edited plan and draw it; ``DemoInputError`` says what is wrong."""
        dsg = read_plan(plan_text, self.limits)
        if dsg is None:
            raise DemoInputError("the plan is empty: press Plan to plan the prompt, or paste a DSG")
        return self._drawn(dsg, check_prompt(prompt, self.limits, required=False), "the plan is valid", seed)

    def generate(
        self,
        prompt: str | None,
        plan_text: str | None,
        settings: Settings,
        *,
        backend: str = "rules",
        base_url: str | None = None,
        model: str | None = None,
        progress: bool = True,
    ) -> Generated:
        """Render a video from the (edited) plan, or from the prompt planned now when the plan is empty."""
        from dysen.atomic import write_text_atomic
        from dysen.data.video import write_video
        from dysen.dsg.render import save_timeline

        text = check_prompt(prompt, self.limits, required=False)
        dsg = read_plan(plan_text, self.limits)
        if dsg is None:
            if text is None:
                raise DemoInputError("give a prompt, or a plan to follow")
            dsg = self.planner(backend, base_url, model).plan(text)
        with self._model_lock:
            result = self.engine.render(text, dsg, settings, progress)
        folder = self._new_folder("video")
        fps = result.fps
        mp4 = write_video(folder / "video.mp4", result.frames, fps)
        gif = write_video(folder / "video.gif", result.frames, fps)
        dsg_json = folder / "video.dsg.json"
        write_text_atomic(dsg_json, result.dsg.to_json(indent=2) + "\n")
        timeline = save_timeline(result.dsg, folder / "video.dsg.png", title=result.prompt)
        boxes = self._boxes_picture(result.dsg, settings.seed, folder / "video.boxes.png")
        frames, height, width = result.frames.shape[:3]
        seconds = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
        summary = f"{frames} frames, {width}x{height} at {fps} fps, seed {result.seed}; seconds: {seconds}"
        summary += f"; {result.note}" if result.note else ""
        return Generated(result.dsg, mp4, gif, dsg_json, timeline, summary, boxes)

    def _drawn(
        self, dsg: DynamicSceneGraph, title: str | None, what: str, seed: int = 0, said: list[str] | None = None
    ) -> PlanResult:
        from dysen.dsg.render import save_timeline
        from dysen.planner.colours import colour_warnings
        from dysen.planner.motion import motion_warnings, with_motion

        folder = self._new_folder("plan")
        timeline = save_timeline(dsg, folder / "plan.png", title=title)
        palette = self.engine.palette
        moving = with_motion(dsg, palette)
        boxes = self._boxes_picture(moving, seed, folder / "plan.boxes.png")  # the page labels it

        summary = f"{what}: {len(dsg.events)} events over {dsg.num_steps} time steps"
        if not self.follows_boxes:
            summary += "; this model follows no boxes (it has no layout maps), so none are drawn"
        warnings = [*(said or []), *colour_warnings(dsg, palette)]  # colours the model lacks (edited plans too)
        warnings += motion_warnings(moving)  # motions nobody will draw (an edited plan's too)
        summary += "".join(f"; {line}" for line in warnings)
        return PlanResult(dsg, timeline, summary, boxes)

    def _boxes_picture(self, dsg: DynamicSceneGraph, seed: int, path: Path) -> Path | None:
        """The boxes over time the model follows (the plan's own, else imagined with ``seed``), or None if it
        follows none."""
        from dysen.dsg.render import save_boxes

        return save_boxes(_with_boxes(dsg, seed), path) if self.follows_boxes else None

    def _new_folder(self, kind: str) -> Path:
        """A fresh folder for one request's files, after removing those older than ``keep_s``."""
        cutoff = time.time() - self.keep_s
        for old in self.workdir.iterdir():
            try:
                if old.is_dir() and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:  # removed meanwhile by another request
                continue
        folder = self.workdir / f"{kind}-{uuid.uuid4().hex}"
        folder.mkdir()
        return folder


def _with_boxes(dsg: DynamicSceneGraph, seed: int) -> DynamicSceneGraph:
    """``dsg`` with the boxes generation uses: its own, else imagined with ``seed`` as the pipeline does."""
    from dysen.planner.layout import imagine_layout

    return imagine_layout(dsg, seed=seed)


def _allowed(trusted_url: str | None, extra: Sequence[str]) -> tuple[str, ...]:
    """The endpoints the page may reach, normalised: the server's own (None = OpenAI's API), then ``extra``."""
    for url in extra:
        if not url.strip().lower().startswith(("http://", "https://")):
            raise DysenError(f"an allowed endpoint must be an http(s) URL, e.g. http://127.0.0.1:8000/v1; got {url!r}")
    return tuple(dict.fromkeys(normalize_endpoint(url) for url in (trusted_url, *extra)))
