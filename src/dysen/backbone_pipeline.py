"""``BackbonePipeline``: prompt (or plan) -> video with a pretrained backbone (Wan, ModelScope). Inference only.

prompt (+ the negative prompt, "" by default) -> the backbone's text states -> seeded unit noise -> the one
sampler (``dysen.diffusion.sampler.denoise``) with the backbone's own scheduler and classifier-free guidance
(Ho & Salimans 2022, eq. 6, as the passes of ``dysen.diffusion.guidance``) -> the backbone's VAE -> uint8 frames.

With DSG control on (``ControlSettings.strength``, ``self_strength`` or ``energy`` > 0): the prompt is planned
(Dysen's planner, or a given DSG), its boxes imagined where it has none (``imagine_layout``, seeded by the video's
seed), mapped onto the latent frames and token grid (``dysen.backbones.schedule``), one phrase per object and event
appended to the prompt (``dysen.backbones.phrases``), and for the first steps the backbone's cross-attention
biased, its self-attention masked by the boxes (``self_strength``; ``dysen.backbones.control``) and the latents
moved by the gradient of a layout energy on the cross-attention maps (``energy``; ``dysen.backbones.energy``);
the processors are removed after the run. All three 0 is the uncontrolled backbone, bit for bit. With a trained DSG
adapter (``dysen.backbones.adapter``), every prompt is planned the same way and the adapter's layers read the plan's
objects in their boxes (the unconditional pass sees the null DSG); the prompt is then read as written unless
control is on too.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dysen.backbones.base import Backbone, BackboneError, BackboneOptions, Text
from dysen.backbones.control import ControlSettings, ControlState, controlled, phrase_values
from dysen.backbones.folder import load_backbone
from dysen.backbones.phrases import PhrasedPrompt, adjectives, event_phrase, object_phrase, phrase_prompt
from dysen.backbones.schedule import ControlError, ControlSchedule, build_schedule
from dysen.diffusion.guidance import GuidancePass, guidance_passes, stack_text
from dysen.diffusion.sampler import DenoisingStep, denoise, scale_model_input
from dysen.diffusion.sampling import step_kwargs
from dysen.dsg.types import DynamicSceneGraph
from dysen.planner.layout import imagine_layout
from dysen.planner.motion import with_motion
from dysen.planner.types import Planner

if TYPE_CHECKING:
    from dysen.backbones.adapter import DSGAdapter, Grounding


@dataclass(frozen=True)
class BackboneSampling:
    """How one video is sampled with a backbone (``resolve`` fills unset fields from the backbone's defaults)."""

    steps: int  # denoising steps
    guidance: float  # classifier-free guidance scale (1: the prompt alone; 0: the negative prompt alone)
    eta: float  # DDIM's η (0 for every other scheduler)

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) or self.steps < 1:
            problems.append(f"steps must be a whole number >= 1, got {self.steps!r}")
        for name in ("guidance", "eta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if problems:
            raise BackboneError("; ".join(problems))

    @classmethod
    def resolve(
        cls, backbone: Backbone, *, steps: int | None = None, guidance: float | None = None, eta: float | None = None
    ) -> BackboneSampling:
        """The settings with each unset one from ``backbone.defaults``; refuses more steps than noise levels."""
        settings = cls(
            steps=backbone.defaults.steps if steps is None else steps,
            guidance=backbone.defaults.guidance if guidance is None else guidance,
            eta=0.0 if eta is None else eta,
        )
        if settings.steps > backbone.num_train_timesteps:
            raise BackboneError(
                f"steps must be at most the backbone's {backbone.num_train_timesteps} noise levels, "
                f"got {settings.steps}"
            )
        return settings


@dataclass(frozen=True, eq=False)
class BackboneVideo:
    """One generated video and where the time went."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    prompt: str
    seed: int  # of the initial noise (and of a stochastic scheduler's noise)
    fps: int  # the backbone's frame rate
    timings: dict[str, float]  # seconds spent in "plan" (with control), "encode", "sample", "decode"
    dsg: DynamicSceneGraph | None = None  # the plan it followed, with its boxes (None: uncontrolled)
    text: str | None = None  # what the text encoder read: the prompt and its phrases (None: the prompt)
    dropped_phrases: tuple[str, ...] = ()  # phrases left out, unreadable by the text encoder (``drop_cut_phrases``)


@dataclass(frozen=True, eq=False)
class ControlPlan:
    """Everything a controlled run needs besides the noise: the plan, its schedule and the phrased prompt."""

    dsg: DynamicSceneGraph
    schedule: ControlSchedule
    phrased: PhrasedPrompt


class BackbonePipeline:
    """A backbone and the one sampler: ``pipe(prompt, seed=…)`` -> ``BackboneVideo``; ``planner`` plans prompts
    for DSG control and the adapter (None: Dysen's rules planner, built when first needed); ``adapter``, a trained
    DSG adapter of this backbone (``dysen.backbones.adapter``; ``load_adapter`` reads one), follows every plan."""

    def __init__(self, backbone: Backbone, planner: Planner | None = None, adapter: DSGAdapter | None = None) -> None:
        self.backbone = backbone
        self._planner = planner
        self.adapter = adapter
        self._labels: Any = None

    @classmethod
    def from_folder(
        cls, folder: str | Path, options: BackboneOptions | None = None, planner: Planner | None = None
    ) -> BackbonePipeline:
        """Load the backbone in the local diffusers folder ``folder`` (``dysen.backbones.folder``)."""
        return cls(load_backbone(folder, options), planner)

    def load_adapter(self, folder: str | Path) -> None:
        """Follow every plan with the DSG adapter in ``folder`` (refused unless trained for this backbone)."""
        from dysen.backbones.adapter import load_adapter

        self.adapter = load_adapter(folder, self.backbone.denoiser.config).to(self.backbone.device).eval()

    def grounding(self, plan: ControlPlan, passes: tuple[GuidancePass, ...]) -> Grounding:
        """The adapter's grounding tokens of ``plan`` (its objects in their boxes, per latent frame) for the
        guidance passes (the unconditional one sees the null DSG)."""
        from dysen.encoders.text import MiniLMTextEncoder
        from dysen.models.graph_batch import GraphBatch

        assert self.adapter is not None
        if self._labels is None:
            self._labels = MiniLMTextEncoder()  # the adapter's RGTrm reads MiniLM label vectors (as it trained)
        schedule = plan.schedule
        graphs = GraphBatch.from_dsgs([plan.dsg], schedule.num_frames).with_label_embeddings(self._labels)
        objects = self.adapter.rgtrm(graphs.to(self.backbone.device)).objects
        assert objects is not None  # an adapter's RGTrm grounds objects (AdapterConfig)
        grounding = self.adapter.ground(objects, schedule.frames_of_latent)
        return grounding.for_passes([p.sees_text for p in passes])

    @property
    def planner(self) -> Planner:
        """The planner of controlled runs."""
        if self._planner is None:
            from dysen.planner.build import PlannerOptions, build_planner

            self._planner = build_planner(PlannerOptions(colours=None))  # a backbone draws any colour
        return self._planner

    def plan_control(
        self, prompt: str | None, dsg: DynamicSceneGraph | None, seed: int, num_frames: int, height: int, width: int,
        phrases: bool = True, drop_cut: bool = False,
    ) -> ControlPlan:  # fmt: skip
        """The plan of ``prompt`` (or ``dsg``) with boxes, its schedule on this backbone, and the prompt with the
        phrases of its objects and events (without them unless ``phrases``: what the adapter alone reads);
        ``ControlError`` for a plan without boxes or phrases the text encoder cannot read (with ``drop_cut`` those
        phrases are left out instead, and their objects and events not steered)."""
        backbone = self.backbone
        if dsg is None:
            dsg = self.planner.plan(prompt)  # type: ignore[arg-type]
        if any(event.motion is None for event in dsg.events):  # dysen's planners have set them; a given plan may not
            dsg = with_motion(dsg, palette=None)  # a backbone draws any colour: keep them as written
        dsg = imagine_layout(dsg, seed=seed)  # kept as it is when it has boxes
        if dsg.boxes is None:
            raise ControlError(
                "no layout keeps all of the plan's objects in frame and apart, so there is nothing to steer towards: "
                "give a plan with boxes (dysen plan --layout SEED, edited), another --seed, or --control-strength 0"
            )
        schedule = build_schedule(dsg, backbone.geometry, num_frames, height, width)
        text = backbone.clean_prompt(prompt if prompt is not None else _describe(dsg))
        objects = [item.name for item in schedule.objects] if phrases else []
        events = [(item.index, item.event) for item in schedule.events] if phrases else []
        phrased = phrase_prompt(
            text, objects, events, backbone.tokenizer, backbone.max_text_tokens, adjectives(dsg), drop_cut=drop_cut
        )
        return ControlPlan(dsg, schedule, phrased)

    @torch.no_grad()  # not inference mode: energy guidance differentiates through the denoiser
    def __call__(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        steps: int | None = None,
        guidance: float | None = None,
        eta: float | None = None,
        seed: int = 0,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        callback: Callable[[DenoisingStep], None] | None = None,
        progress: bool = True,
        dsg: DynamicSceneGraph | None = None,
        control: ControlSettings | None = None,
        drop_cut_phrases: bool = False,
    ) -> BackboneVideo:
        """Generate one video of ``prompt``; unset sizes and settings are the backbone's defaults. Sizes the
        backbone cannot take raise ``BackboneSizeError`` before anything is allocated. ``control`` (default: off)
        steers it by the plan of ``prompt``, or by ``dsg`` when given (``prompt`` may then be None); a plan whose
        phrases the text encoder cannot all read is refused, or with ``drop_cut_phrases`` steered by those it can.
        Same arguments, same video."""
        backbone, defaults = self.backbone, self.backbone.defaults
        control = control or ControlSettings()
        settings = BackboneSampling.resolve(backbone, steps=steps, guidance=guidance, eta=eta)
        size = backbone.geometry.video_size(num_frames, height, width)
        shape = backbone.latent_shape(*size)  # (c, t, h, w)
        if prompt is None and (dsg is None or not (control.enabled or self.adapter is not None)):
            raise BackboneError("give a prompt (a plan alone is followed only with DSG control on or an adapter)")
        timings: dict[str, float] = {}

        plan = None
        if control.enabled or self.adapter is not None:
            clock = time.perf_counter()
            plan = self.plan_control(prompt, dsg, seed, *size, phrases=control.enabled, drop_cut=drop_cut_phrases)
            timings["plan"] = time.perf_counter() - clock

        clock = time.perf_counter()
        passes = guidance_passes(settings.guidance, 0.0)  # (∅) and (text) of plain CFG; one pass at scale 0 or 1
        text = plan.phrased.text if plan is not None else prompt
        states, mask = backbone.encode_prompt([text, negative_prompt])  # type: ignore[list-item]  # [2, L, D], [2, L]
        conditions = stack_text(passes, (states[:1], mask[:1]), (states[1:], mask[1:]))  # [P, L, D], [P, L]
        timings["encode"] = time.perf_counter() - clock

        clock = time.perf_counter()
        scheduler = backbone.make_scheduler()
        scheduler.set_timesteps(settings.steps)
        generator = torch.Generator("cpu").manual_seed(seed)
        extra = step_kwargs(scheduler, settings.eta, generator)
        noise = torch.randn((1, *shape), generator=generator).to(backbone.device)  # [1, c, t, h, w]
        if plan is None:
            latents = denoise(
                backbone.denoise_fn, scheduler, noise, conditions, passes,
                step_kwargs=extra, callback=callback, progress=progress,
            )  # fmt: skip
        else:
            state = self.control_state(plan, control, passes, settings.steps) if control.enabled else None
            grounding = self.grounding(plan, passes) if self.adapter is not None else None
            guide = None
            if state is not None:
                guide = self.energy_guide(state, control.energy, scheduler, conditions, passes, grounding)
            latents = self._denoise_controlled(
                state, scheduler, noise, conditions, passes, extra, callback, progress, guide, grounding
            )  # fmt: skip
        timings["sample"] = time.perf_counter() - clock

        clock = time.perf_counter()
        frames = backbone.decode_latents(latents).numpy()  # uint8 [T, H, W, 3]
        timings["decode"] = time.perf_counter() - clock
        prompt = prompt if prompt is not None else _describe(plan.dsg)  # type: ignore[union-attr]
        dsg_out, text_out = (plan.dsg, text) if plan is not None else (None, None)
        dropped = plan.phrased.dropped if plan is not None else ()
        return BackboneVideo(frames, prompt, seed, defaults.fps, timings, dsg_out, text_out, dropped)

    def control_state(
        self, plan: ControlPlan, control: ControlSettings, passes: tuple[GuidancePass, ...], steps: int
    ) -> ControlState:
        """The state the control processors of one run read (the bias on the passes that see the prompt)."""
        values, tokens = phrase_values(plan.schedule, plan.phrased, self.backbone.max_text_tokens)
        regions = torch.stack([item.masks for item in plan.schedule.objects]) if plan.schedule.objects else None
        return ControlState(
            values, tokens, control.strength, [p.sees_text for p in passes], control.active_steps(steps),
            self.backbone.token_layout, regions, control.self_strength,
        )  # fmt: skip

    def energy_guide(
        self, state: ControlState, eta: float, scheduler: Any, conditions: Text, passes: tuple[GuidancePass, ...],
        grounding: Grounding | None = None,
    ) -> Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor] | None:  # fmt: skip
        """The ``guide`` of ``denoise`` for energy guidance at step size ``eta`` (None at 0): before each steered
        step, one gradient step of the latents on the layout energy of the text pass's cross-attention maps (with
        the adapter, if any, reading the text pass's rows of ``grounding``)."""
        if eta <= 0 or not state.active_steps:
            return None
        from dysen.backbones.energy import AttentionRecorder, guided_latents, layout_energy, recording

        backbone, count = self.backbone, len(state.regions)
        text_pass = [p.sees_text for p in passes].index(True)
        text = tuple(part[text_pass : text_pass + 1] for part in conditions)  # ([1, L, D], [1, L])
        recorder = AttentionRecorder(backbone.cross_attention_probs)
        objects = state.tokens[:count]  # [K, L]: the objects' phrases come first (``phrase_values``)
        adapter, text_grounding = self.adapter, grounding.select([text_pass]) if grounding is not None else None

        def energy_of(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            recorder.maps.clear()
            recorder.on = True
            try:
                backbone.denoise_fn(scale_model_input(scheduler, x, t), t, text)  # type: ignore[arg-type]
            finally:
                recorder.on = False
            return layout_energy(recorder.maps, state.regions, objects, backbone.token_layout)

        def guide(latents: torch.Tensor, index: int, t: torch.Tensor) -> torch.Tensor:
            if index >= state.active_steps or not count:
                return latents
            adapted = adapter.grounded(text_grounding) if adapter is not None else nullcontext()
            with state.suspended(), recording(backbone.cross_attentions(), recorder), adapted:  # the text pass alone
                moved = guided_latents(latents, lambda x: energy_of(x, t.to(latents.device)), eta)
            recorder.maps.clear()
            return moved

        return guide

    def _denoise_controlled(
        self, state: ControlState | None, scheduler: object, noise: torch.Tensor, conditions: Text,
        passes: tuple[GuidancePass, ...], extra: dict, callback: Callable[[DenoisingStep], None] | None,
        progress: bool, guide: Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor] | None = None,
        grounding: Grounding | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """``denoise`` with the control processors (``state``; None: no control) and the adapter's layers installed;
        each model call is one step (``begin_step``)."""
        backbone = self.backbone

        def model_fn(x: torch.Tensor, t: torch.Tensor, c: Text) -> torch.Tensor:
            if state is not None:
                state.begin_step()
            return backbone.denoise_fn(x, t, c)

        steered: AbstractContextManager[Any] = nullcontext()
        if state is not None:
            cross = backbone.cross_attentions() if state.strength > 0 else {}
            own = backbone.self_attentions() if state.self_strength > 0 else {}
            steered = controlled(cross, state, own)
        adapted: AbstractContextManager[Any] = nullcontext()
        if self.adapter is not None:
            adapted = self.adapter.installed(backbone.adapter_sites(), grounding)
        with steered, adapted:
            return denoise(
                model_fn, scheduler, noise, conditions, passes, step_kwargs=extra, callback=callback,
                progress=progress, guide=guide,
            )  # fmt: skip


def _describe(dsg: DynamicSceneGraph) -> str:
    """A prompt for a plan given without one: its events' phrases, in order."""
    words = adjectives(dsg)
    phrases = [event_phrase(event, words) for event in dsg.events]
    phrases = phrases or [object_phrase(name, words) for graph in dsg.graphs for name in graph.objects]
    return ", then ".join(dict.fromkeys(phrases)) or "an empty scene"
