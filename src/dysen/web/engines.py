"""What makes the demo's videos: the one narrow interface the page and ``DemoService`` speak (``VideoEngine``), and
its two implementations, a Dysen-VDM pipeline (``DysenEngine``) and a pretrained backbone under training-free DSG
control (``BackboneEngine``, ``dysen demo --backbone DIR``).

Both follow a plan: its third control, the *plan scale*, is Dysen-VDM's DSG guidance s_dsg or the backbone's
control strength (0: the backbone alone, the plan not followed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dysen.dsg.types import DynamicSceneGraph
from dysen.web.checks import FrameRule, Settings

if TYPE_CHECKING:
    from dysen.backbone_pipeline import BackbonePipeline
    from dysen.pipeline import DysenVDMPipeline


@dataclass(frozen=True, eq=False)
class Rendered:
    """One video of the demo and the plan it followed."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    dsg: DynamicSceneGraph  # the plan it followed (as given, when the engine ignored it: see ``note``)
    prompt: str
    seed: int
    fps: int
    timings: dict[str, float]
    note: str = ""  # said beside the summary (e.g. "the plan was not followed")


@dataclass(frozen=True)
class PageStart:
    """Where the page's sampling controls start."""

    steps: int
    guidance: float
    plan_scale: float


class VideoEngine(Protocol):
    """What ``DemoService`` and the page need of a video model."""

    title: str  # the page's heading
    plan_scale_label: str  # the third slider's label
    plan_scale_fixed: bool  # the operator fixed the plan scale: the slider only shows it
    palette: tuple[str, ...]  # the colours it draws (plans are checked against them)
    follows_boxes: bool  # whether a plan's boxes steer it (the page then draws them)
    frames: FrameRule  # the frame counts it takes
    default_frames: int  # within ``DemoLimits.max_frames``

    def start(self, steps: int | None, guidance: float | None, plan_scale: float | None) -> PageStart:
        """The controls' start: each unset one the model's own."""
        ...

    def render(self, prompt: str | None, dsg: DynamicSceneGraph, settings: Settings, progress: bool) -> Rendered:
        """A video of ``dsg`` (and ``prompt``) with ``settings``; ``settings.plan_scale`` is the plan scale."""
        ...


class DysenEngine:
    """A Dysen-VDM pipeline (``dysen demo``, ``--model DIR``)."""

    title = "Dysen-VDM"
    plan_scale_label = "DSG guidance"
    plan_scale_fixed = False

    def __init__(self, pipe: DysenVDMPipeline, max_frames: int) -> None:
        self.pipe = pipe
        self.palette = pipe.config.planner.colours
        self.follows_boxes = bool(pipe.unet.config.layout)
        self.frames = _frame_rule(pipe)
        self.default_frames = min(pipe.config.video.num_frames, max_frames)

    def start(self, steps: int | None, guidance: float | None, plan_scale: float | None) -> PageStart:
        from dysen.diffusion.sampler import SamplingSettings

        diffusion = self.pipe.config.diffusion
        s = SamplingSettings.resolve(diffusion, steps=steps, guidance=guidance, dsg_guidance=plan_scale)
        return PageStart(s.steps, s.guidance, s.dsg_guidance)

    def render(self, prompt: str | None, dsg: DynamicSceneGraph, settings: Settings, progress: bool) -> Rendered:
        result = self.pipe(
            prompt, dsg=dsg, steps=settings.steps, guidance=settings.guidance, dsg_guidance=settings.plan_scale,
            seed=settings.seed, num_frames=settings.frames, progress=progress,
        )  # fmt: skip
        fps = self.pipe.config.video.fps
        return Rendered(result.frames, result.dsg, result.prompt, result.seed, fps, result.timings)


class BackboneEngine:
    """A pretrained backbone steered by the plan (``dysen demo --backbone DIR``): the plan scale is the control
    strength (fixed by ``--control-strength``, else the page's slider)."""

    plan_scale_label = "DSG control strength"
    follows_boxes = True

    def __init__(
        self,
        pipe: BackbonePipeline,
        max_frames: int,
        *,
        height: int | None = None,
        width: int | None = None,
        strength: float | None = None,
        control_steps: float = 0.4,
        self_strength: float = 0.0,
    ) -> None:
        from dysen.backbones.control import ControlSettings
        from dysen.world.colours import DEFAULT_PALETTE

        self.pipe, self.control_steps, self.strength = pipe, control_steps, strength
        self.self_strength = self_strength
        geometry = pipe.backbone.geometry
        _, self.height, self.width = geometry.video_size(None, height, width)
        ControlSettings(strength or 0.0, control_steps, self_strength)  # checked now, not on the first request
        adapter = " + DSG adapter" if pipe.adapter is not None else ""
        self.title = f"{pipe.backbone.name} backbone{adapter} + DSG control (preview)"
        self.plan_scale_fixed = strength is not None
        self.palette = DEFAULT_PALETTE
        self.frames = FrameRule(1, geometry.temporal_factor)
        self.default_frames = self.frames.largest_up_to(min(geometry.defaults.num_frames, max_frames))
        geometry.latent_shape(self.default_frames, self.height, self.width)  # a size it cannot take: refused now

    def start(self, steps: int | None, guidance: float | None, plan_scale: float | None) -> PageStart:
        defaults = self.pipe.backbone.defaults
        scale = self.strength if self.strength is not None else plan_scale
        return PageStart(
            defaults.steps if steps is None else steps,
            defaults.guidance if guidance is None else guidance,
            1.0 if scale is None else scale,
        )

    def render(self, prompt: str | None, dsg: DynamicSceneGraph, settings: Settings, progress: bool) -> Rendered:
        from dysen.backbones.control import ControlSettings

        strength = self.strength if self.strength is not None else settings.plan_scale
        control = ControlSettings(strength, self.control_steps, self.self_strength if strength > 0 else 0.0)
        result = self.pipe(
            prompt, dsg=dsg, steps=settings.steps, guidance=settings.guidance, seed=settings.seed,  # type: ignore[arg-type]
            num_frames=settings.frames, height=self.height, width=self.width, control=control, progress=progress,
        )  # fmt: skip
        note = "" if result.dsg is not None else "control strength 0: the backbone alone, the plan was not followed"
        followed = result.dsg if result.dsg is not None else dsg
        return Rendered(result.frames, followed, result.prompt, result.seed, result.fps, result.timings, note)


def _frame_rule(pipe: DysenVDMPipeline) -> FrameRule:
    """The frame counts a Dysen-VDM autoencoder takes: multiples of its smallest one (its temporal factor)."""
    from dysen.errors import DysenError

    video = pipe.config.video
    for frames in range(1, 65):
        try:
            pipe.vae.latent_shape(frames, video.height, video.width)
        except DysenError:
            continue
        return FrameRule(frames, frames)
    raise DysenError(f"the model's autoencoder accepts no frame count up to 64 at {video.height}x{video.width}")
