"""What one row of an evaluation is: which weights, which planner, and the ablations of Dysen-VDM.

A ``Variant`` names a source of videos: a model (a pipeline folder, or the one ``dysen generate`` would
use for a config: the shipped trained model, else random weights), the ground-truth renders, the renders
after a round trip through a model's autoencoder (the ceiling of that model), a folder of videos
already written, or a pretrained backbone, alone or under DSG control (``dysen.eval.backbone_rows``). The
ablation rows of Dysen-VDM (paper §5.4, dysen_spec.md §7) are:

* the full model with its planner;
* the text-only backbone: a model trained with the same compute but no DSG (its own folder);
* no imagination: the full model's planner without Step III, so the plan is Step II's raw per-step
  graphs of the events (the LLM planner: neither the per-step enrichment nor the polish; the rules
  planner: no entities, attributes, relations or demonstration facts beyond the events);
* random demonstrations: the full model's planner with demonstrations drawn at random from the same
  bank instead of retrieved or chosen by the RL policy (the rules planner takes only its imagined,
  non-action facts from them).

Both run with the rules planner too. A planner without demonstrations has no bank to draw from, so its
'random demonstrations' row is reported as not run, with the reason. ``weights_of`` hashes every
safetensors file of a model so that a report says exactly which weights made its numbers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dysen.errors import DysenError
from dysen.eval.benchmark import GOLD_FILE, ClipSelection, VideoSampling

if TYPE_CHECKING:
    from dysen.eval.backbone_rows import BackboneRow
    from dysen.eval.prompt_set import PromptRecord
    from dysen.pipeline import DysenVDMPipeline
    from dysen.planner.build import PlannerOptions
    from dysen.planner.types import Planner

AUTOENCODER_ROW = "ground truth through the autoencoder"

Source = Literal["model", "renders", "reconstructions", "folder", "backbone"]
Demos = Literal["default", "random"]


@dataclass(frozen=True)
class Variant:
    """One row of a comparison: where its videos come from and how they are made."""

    name: str
    source: Source = "model"
    model: Path | None = None
    """A pipeline folder; None: the shipped model of ``config``, else random weights of ``config``."""
    config: str = "shapes-tiny"
    planner: PlannerOptions | None = None
    """The planner; None: the one the model's config names, with ``planner_changes``."""
    planner_changes: Mapping[str, Any] | None = None
    """``PlannerOptions`` fields that replace the model's own planner settings (``changed_options``), e.g.
    ``{"demos": "none"}``; used when ``planner`` is None."""
    imagination: bool = True
    """False: the planner skips Step III (``ablate``)."""
    demos: Demos = "default"
    """'random': the planner's demonstrations are drawn at random from the same bank (``ablate``)."""
    sampling: VideoSampling = field(default_factory=VideoSampling)
    folder: Path | None = None
    """The videos of a 'folder' variant."""
    gold: Path | None = None
    """A 'folder' variant's gold DSGs (JSONL of ``{"id", "dsg"}``); None: the folder's own (``score_folder``)."""
    skip: str | None = None
    """Why the row is not run (reported instead of numbers)."""
    clips: ClipSelection = field(default_factory=ClipSelection)
    """Which Dynamic Shapes clips the row scores (default: the benchmark's test clips, the default world)."""
    backbone: BackboneRow | None = None
    """The pretrained backbone of a 'backbone' variant (``dysen.eval.backbone_rows``); its frames follow the video
    spec of ``config``, its planner is ``planner`` (None: the default ``PlannerOptions``)."""


@dataclass(frozen=True)
class ResolvedModel:
    """The weights a variant runs: the folder (None for random weights) and how to describe them."""

    folder: Path | None
    description: str
    weights: dict[str, str]
    """sha256 of every ``*.safetensors`` file, by path relative to the folder."""


def weights_of(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of every safetensors file under a model folder, by relative path."""
    from dysen.eval.features.weights import sha256_of

    root = Path(folder)
    return {str(p.relative_to(root)): sha256_of(p) for p in sorted(root.rglob("*.safetensors"))}


def resolve_model(model: Path | None, config: str) -> ResolvedModel:
    """The folder ``load_pipeline(model, config=config)`` will read, with its weight hashes (see its rule)."""
    from dysen.pipeline import INDEX_NAME, shipped_model

    if model is not None:
        if not (Path(model) / INDEX_NAME).is_file():
            raise DysenError(f"--model {model} is not a Dysen-VDM folder ({INDEX_NAME} is missing)")
        return ResolvedModel(Path(model), str(model), weights_of(model))
    shipped = shipped_model(str(config))
    if shipped is not None:
        return ResolvedModel(shipped, f"the shipped {config} model ({shipped})", weights_of(shipped))
    return ResolvedModel(None, f"RANDOM weights built from {config} (seed 0): not a trained model", {})


class AblationUnavailable(DysenError):
    """The planner cannot be ablated as asked (e.g. random demonstrations for a planner without any)."""


def ablate(planner: Planner, *, imagination: bool, random_demos: bool, seed: int = 0) -> Planner:
    """A copy of a ``DysenPlanner`` or ``RulesPlanner`` without Step III and/or with random demonstrations
    drawn from its selector's bank (an RL policy's candidates, or a retrieval bank)."""
    from dysen.planner.demos import RandomSelector
    from dysen.planner.dysen import DysenPlanner
    from dysen.planner.rules import RulesPlanner

    if not isinstance(planner, DysenPlanner | RulesPlanner):
        raise DysenError(f"ablations apply to DysenPlanner and RulesPlanner, not {type(planner).__name__}")
    selector = planner.selector
    if random_demos:
        bank = getattr(selector, "bank", None) or getattr(selector, "pool", None)
        if bank is None:
            raise AblationUnavailable(
                "random demonstrations need a planner that takes demonstrations; this one plans without any "
                "(--demos none, or the rules planner without a policy): pass --demos shapes or --policy FILE"
            )
        selector = RandomSelector(bank, seed=seed)
    if isinstance(planner, RulesPlanner):
        return RulesPlanner(planner.num_steps, selector, imagination=imagination and planner.imagination)
    settings = planner.settings
    fallback = planner.fallback
    if not imagination and isinstance(fallback, RulesPlanner):  # a failed plan must not bring Step III back
        fallback = RulesPlanner(fallback.num_steps, fallback.selector, imagination=False)
    return DysenPlanner(
        planner.backend, selector=selector, shots=settings.shots, output=settings.output,
        max_repairs=settings.max_repairs, fallback=fallback, sampling=settings.sampling,
        imagination=imagination and settings.imagination, polish=imagination and settings.polish,
        max_steps=settings.max_steps,
    )  # fmt: skip


def load_variant(variant: Variant, device: str = "cpu") -> tuple[DysenVDMPipeline, ResolvedModel]:
    """The pipeline of a 'model' variant on ``device``, and the weights it runs."""
    from dysen.pipeline import load_pipeline

    resolved = resolve_model(variant.model, variant.config)
    planner = None
    if variant.planner is not None:
        from dysen.planner.build import build_planner

        planner = build_planner(variant.planner)
    pipe = load_pipeline(  # planner None: the model's own, changed by planner_changes
        resolved.folder, config=variant.config, planner=planner, planner_changes=variant.planner_changes
    )
    if not variant.imagination or variant.demos == "random":
        pipe.planner = ablate(pipe.planner, imagination=variant.imagination, random_demos=variant.demos == "random")
    return pipe.to(device), resolved


def ablation_variants(
    full: Path | None,
    text_only: Path | None,
    *,
    config: str = "shapes-tiny",
    planner: PlannerOptions | None = None,
    planner_changes: Mapping[str, Any] | None = None,
    sampling: VideoSampling | None = None,
) -> list[Variant]:
    """The ablation table's rows: ground truth, its round trip through the full model's autoencoder (the ceiling of
    both models, which share it), full Dysen-VDM, text-only backbone, no imagination, random demonstrations."""
    sampling = sampling or VideoSampling()
    full_row = Variant(
        "Dysen-VDM (full)", model=full, config=config, planner=planner, planner_changes=planner_changes,
        sampling=sampling,
    )  # fmt: skip
    return [
        Variant("ground truth (renders)", source="renders", config=config, sampling=sampling),
        replace(full_row, name=AUTOENCODER_ROW, source="reconstructions", planner=None, planner_changes=None),
        full_row,
        _text_only_variant(text_only, full, config, sampling),
        replace(full_row, name="no imagination", imagination=False),
        replace(full_row, name="random demonstrations", demos="random"),
    ]


def _text_only_variant(text_only: Path | None, full: Path | None, config: str, sampling: VideoSampling) -> Variant:
    """The text-only row: ``text_only``; else, beside the shipped full model, the shipped '<config>-text-only'
    model (trained by the same commands); else not run, with the reason."""
    name = "text-only backbone"
    if text_only is not None:
        return Variant(name, model=text_only, config=config, sampling=sampling)
    from dysen.pipeline import shipped_model

    preset = f"{config}-text-only"
    if full is not None:
        reason = f"the full model is {full}: give its text-only backbone with --text-only DIR"
    elif shipped_model(preset) is None:
        reason = f"no text-only model given (--text-only DIR) or shipped ({preset})"
    else:
        return Variant(name, config=preset, sampling=sampling)
    return Variant(name, sampling=sampling, skip=reason)


def sampling_record(sampling: VideoSampling) -> dict[str, object]:
    """How a variant sampled, for reports."""
    return {
        "steps": sampling.steps, "guidance": sampling.guidance, "dsg_guidance": sampling.dsg_guidance,
        "sampler": sampling.sampler, "eta": sampling.eta, "seed": sampling.seed, "plan": sampling.plan,
    }  # fmt: skip


def planner_record(variant: Variant, model_planner: PlannerOptions) -> dict[str, object]:
    """Which planner a variant used, for reports (``model_planner``: the settings in the model's config)."""
    from dysen.planner.build import changed_options, demo_source

    options = variant.planner
    backend = "the model's (config)" if options is None else options.backend
    if options is None:
        options = changed_options(model_planner, variant.planner_changes or {})
        if variant.planner_changes:
            backend += ", changed: " + ", ".join(f"{k} {v}" for k, v in variant.planner_changes.items())
    source, policy = demo_source(options), options.policy
    if options.backend == "rules" and not variant.imagination:  # it reads demonstrations only to imagine
        source, policy = "none", None
    return {
        "backend": backend, "model": None if variant.planner is None else options.model,
        "imagination": variant.imagination, "demos": variant.demos, "source": source,
        "policy": None if policy is None else str(policy),
    }  # fmt: skip


def run_variant(
    variant: Variant, num: int, *, device: str = "cpu", save_dir: Path | None = None, progress: bool = True
) -> dict[str, object]:
    """Run one row of the Dynamic Shapes benchmark: its videos, their scores, the summary and provenance; a row
    that cannot run (``skip``, or an ablation its planner does not allow) says why instead."""
    row: dict[str, object] = {"name": variant.name, "source": variant.source}
    if variant.skip is not None:
        return {**row, "skipped": variant.skip}
    try:
        return {**row, **_run_row(variant, num, device=device, save_dir=save_dir, progress=progress)}
    except AblationUnavailable as err:
        return {**row, "skipped": str(err)}


def _run_row(variant: Variant, num: int, *, device: str, save_dir: Path | None, progress: bool) -> dict[str, object]:
    """The videos, scores, summary and provenance of a variant that runs (see ``run_variant``)."""
    from dysen.config import load_config
    from dysen.eval.benchmark import (
        benchmark_clips,
        score_folder,
        score_pipeline,
        score_reconstructions,
        score_renders,
        shapes_config_for,
        summarise,
    )

    row: dict[str, object] = {}
    clock = time.perf_counter()
    if variant.source == "folder":
        if variant.folder is None:
            raise DysenError(f"variant {variant.name!r} reads videos but names no folder")
        results = score_folder(variant.folder, gold=variant.gold, progress=progress)
        row["videos"] = str(variant.folder)
        if results.skipped:
            files = [{"file": file, "reason": why} for file, why in results.skipped]
            row["skipped_videos"] = {"count": len(files), "files": files}
        if variant.gold is not None:
            row["scored_against"] = f"the gold DSGs of {variant.gold}"
        elif (variant.folder / GOLD_FILE).is_file():
            row["scored_against"] = f"the gold DSGs of {variant.folder / GOLD_FILE}"
        else:
            row["scored_against"] = "the <id>.dsg.json beside each video: the plan it followed, not a gold DSG"
    elif variant.source == "renders":
        shapes = shapes_config_for(load_config(variant.config).video, variant.clips)
        clips = benchmark_clips(num, variant.sampling.seed, shapes, variant.clips)
        results = score_renders(clips, shapes, progress=progress)
        row["renderer"] = f"{variant.clips.describe()}, seed {variant.sampling.seed}"
    elif variant.source == "reconstructions":
        pipe, resolved = load_variant(variant, device)
        shapes = shapes_config_for(pipe.config.video, variant.clips)
        clips = benchmark_clips(num, variant.sampling.seed, shapes, variant.clips)
        results = score_reconstructions(pipe.vae, clips, shapes, progress=progress)
        row.update(model=resolved.description, weights=resolved.weights)
        seed = variant.sampling.seed
        row["renderer"] = f"{variant.clips.describe()}, seed {seed}, encoded and decoded (posterior means)"
    elif variant.source == "backbone":
        from dysen.eval.backbone_rows import run_backbone_row

        results, record = run_backbone_row(variant, num, device=device, save_dir=save_dir, progress=progress)
        row.update(record)
    else:
        pipe, resolved = load_variant(variant, device)
        shapes = shapes_config_for(pipe.config.video, variant.clips)
        clips = benchmark_clips(num, variant.sampling.seed, shapes, variant.clips)
        folder = None
        if save_dir is not None:
            folder = save_dir / slug(variant.name)
            folder.mkdir(parents=True, exist_ok=True)
        sampling = variant.sampling.for_model(pipe.config.diffusion)  # the model's guidance unless given
        results = score_pipeline(
            pipe, clips, sampling, save_dir=folder, progress=progress, desc=variant.name, world_colours=shapes.colours
        )
        row["captions"] = variant.clips.describe()
        row.update(
            model=resolved.description, weights=resolved.weights, planner=planner_record(variant, pipe.config.planner)
        )
        row["sampling"] = sampling_record(sampling)
        row["seeds"] = [variant.sampling.seed, variant.sampling.seed + len(clips) - 1]
        if folder is not None:
            row["videos"] = str(folder)
    frames, height, width = results[0].size
    row.update(num_samples=len(results), frames=frames, resolution=[height, width])
    row["wall_s"] = round(time.perf_counter() - clock, 2)
    row["summary"] = summarise(results)
    row["clips"] = [r.to_record() for r in results]
    return row


def slug(name: str) -> str:
    """A folder name for a variant: lower case, words joined by '-'."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split()) or "variant"


def run_prompt_variant(
    variant: Variant,
    records: Sequence[PromptRecord],
    *,
    device: str = "cpu",
    save_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """A prompt-set row (``dysen.eval.prompt_set``): each record planned and generated by a 'model' variant (seed
    ``seed + i``), scored against its plan and matched to its expected events; the summary with standard errors,
    per-prompt verdicts and provenance."""
    from dysen.eval.prompt_set import run_prompt_set
    from dysen.eval.prompt_summary import summarise_prompts

    if variant.source != "model":
        raise DysenError("a prompt set is evaluated on a model (--model DIR or the shipped one)")
    clock = time.perf_counter()
    pipe, resolved = load_variant(variant, device)
    sampling = variant.sampling.for_model(pipe.config.diffusion)  # the model's steps and guidance unless given
    results = run_prompt_set(pipe, records, sampling, save_dir=save_dir, progress=progress)
    video = pipe.config.video
    return {
        "name": variant.name, "source": variant.source, "model": resolved.description, "weights": resolved.weights,
        "planner": planner_record(variant, pipe.config.planner), "sampling": sampling_record(sampling),
        "seeds": [sampling.seed, sampling.seed + len(records) - 1], "num_samples": len(results),
        "frames": video.num_frames, "resolution": [video.height, video.width],
        **({"videos": str(save_dir)} if save_dir is not None else {}),
        "wall_s": round(time.perf_counter() - clock, 2),
        "summary": summarise_prompts(results).to_dict(),
        "prompts": [r.to_record() for r in results],
    }  # fmt: skip
