"""Backbone rows of the Dynamic Shapes benchmark: a pretrained backbone (``BackbonePipeline``), alone or under
training-free DSG control, scored exactly as a model row.

The protocol is the model rows': caption i of the clip selection with seed ``seed + i``, scored against its gold
DSG by the same scorer, summarised by the same ``summarise`` (with its standard errors). What differs follows from
the backbone's own geometry:

* frames: the fewest the backbone takes that are at least the benchmark's (16 for shapes-tiny; Wan's causal 4x VAE
  takes 1 + 4m frames, so 17; a per-frame VAE 16). All of them are scored: the scorer aligns the gold DSG to the
  length of whatever video it is given (as for a folder of files), and the control plan is aligned to that same
  count, so the gold's event windows and the plan's agree. Dropping the 17th frame would shift the last window.
* size and frame rate: the backbone's own (``BackboneRow.height``/``width`` to change the size); frames larger than
  ``SCORE_BUDGET`` are scaled down before scoring, as ``score_folder`` scales a file.
* control: strength 0 is the backbone alone, bit for bit (nothing is planned); strength > 0 plans each caption
  (the row's planner, or the gold DSG with ``plan='gold'``), imagines its boxes with the caption's seed and steers
  the cross-attention (``dysen.backbones.control``); a self-attention strength > 0 masks the self-attention by the
  same boxes, and an energy η > 0 moves the latents towards cross-attention inside them (``dysen.backbones.energy``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from dysen.errors import DysenError
from dysen.eval.benchmark import GOLD_FILE, SCORE_BUDGET, ClipResult, VideoSampling, score_clip

if TYPE_CHECKING:
    from dysen.backbone_pipeline import BackbonePipeline
    from dysen.backbones.base import Backbone
    from dysen.backbones.control import ControlSettings
    from dysen.eval.variants import Variant
    from dysen.world import ShapesClip

DEFAULT_CONTROL_STEPS = 0.4
"""Share of the denoising steps steered when none is given (``ControlSettings.steps``' default)."""


@dataclass(frozen=True)
class BackboneRow:
    """The backbone of a benchmark row and how it runs."""

    folder: Path
    """A local diffusers folder (``dysen.backbones.folder``)."""
    strength: float = 0.0
    """Control strength (logit bias); 0: the backbone alone."""
    control_steps: float = DEFAULT_CONTROL_STEPS
    """Share of the denoising steps that are steered (the first ones)."""
    height: int | None = None
    """Video height (None: the backbone's)."""
    width: int | None = None
    """Video width (None: the backbone's)."""
    dtype: str = "float32"
    """Weights of the denoiser and text encoder (the VAE stays float32)."""
    self_strength: float = 0.0
    """Self-attention masking by the boxes (logit bias); 0: off."""
    energy: float = 0.0
    """Energy guidance's step size η on the cross-attention maps; 0: off."""
    adapter: Path | None = None
    """A trained DSG adapter of the backbone (``dysen train-adapter``); None: none."""

    def control(self) -> ControlSettings:
        """The control settings of this row (checked)."""
        from dysen.backbones.control import ControlSettings

        return ControlSettings(self.strength, self.control_steps, self.self_strength, self.energy)

    @property
    def controlled(self) -> bool:
        """Whether the row steers the backbone (and so plans its captions)."""
        return self.control().enabled or self.adapter is not None


def row_name(
    name: str, strength: float, self_strength: float = 0.0, energy: float = 0.0, adapter: bool = False
) -> str:
    """The report name of a backbone row: ``name`` alone, ``name + DSG control s=S`` under control, with
    ``, self-attention mask m=M`` when its self-attention is masked and ``, energy η=E`` under energy guidance
    (or those alone after ``+``), then ``+ adapter`` with a DSG adapter."""
    if adapter:
        return row_name(name, strength, self_strength, energy) + " + adapter"
    parts = [f"DSG control s={strength:g}"] if strength > 0 else []
    parts += [f"self-attention mask m={self_strength:g}"] if self_strength > 0 else []
    parts += [f"energy η={energy:g}"] if energy > 0 else []
    return " + ".join([name, ", ".join(parts)]) if parts else name


def loaded_backbone(folder: Path, dtype: str, device: str) -> Backbone:
    """The backbone in ``folder``, loaded once for all the rows that share it (a row per control strength): the
    control processors are installed per call and removed after it, so the rows cannot see each other's. A folder
    whose files changed since (size or modification time) is loaded again."""
    folder = folder.resolve()
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    stamp = tuple((str(f), stat.st_size, stat.st_mtime_ns) for f, stat in ((f, f.stat()) for f in files))
    return _load_backbone_once(folder, dtype, device, stamp)


@lru_cache(maxsize=1)
def _load_backbone_once(folder: Path, dtype: str, device: str, stamp: tuple[tuple[str, int, int], ...]) -> Backbone:
    from dysen.backbones.base import BackboneOptions
    from dysen.backbones.folder import load_backbone

    return load_backbone(folder, BackboneOptions(dtype=dtype, device=device))  # type: ignore[arg-type]


def backbone_size(row: BackboneRow, benchmark_frames: int) -> tuple[int, int, int]:
    """``(frames, height, width)`` a backbone row generates, checked against the backbone's configs alone (no
    weights read): a folder that is no supported backbone, or a size it cannot take, is refused here."""
    from dysen.backbones.folder import read_geometry

    geometry = read_geometry(row.folder)
    size = geometry.video_size(geometry.frames_at_least(benchmark_frames), row.height, row.width)
    geometry.latent_shape(*size)
    return size


def scaled_for_scoring(frames: np.ndarray) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames within ``SCORE_BUDGET``'s pixels (scaled down, aspect kept, as ``score_folder``
    reads a large file); frames within it come back as they are."""
    from dysen.data.video import resize_frames

    side = SCORE_BUDGET.short_side(*frames.shape[:3])
    return frames if side is None else resize_frames(frames, side)


def score_backbone(
    pipe: BackbonePipeline,
    clips: Sequence[ShapesClip],
    sampling: VideoSampling,
    row: BackboneRow,
    size: tuple[int, int, int],
    *,
    colours: tuple[str, ...],
    save_dir: Path | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> tuple[list[ClipResult], dict[str, list[str]]]:
    """Generate each clip's caption with the backbone (seed ``sampling.seed + i``, ``size`` frames x height x
    width) and score the video against the clip's gold DSG; with ``save_dir``, write ``<id>.mp4`` (with the plan it
    followed, ``<id>.dsg.json``, under control) and ``gold.jsonl``, so the folder scores again with ``--videos``.
    Also returns, by clip id, the control phrases the text encoder could not read (those objects and events were
    not steered)."""
    from dysen.atomic import write_text_atomic
    from dysen.backbones.schedule import ControlError
    from dysen.data.video import write_video
    from dysen.dsg.io import write_jsonl_atomic

    control, results, dropped = row.control(), [], {}
    frames, height, width = size
    for index, clip in enumerate(tqdm(clips, desc=desc, unit="clip", disable=not progress)):
        clock = time.perf_counter()
        dsg = clip.dsg if sampling.plan == "gold" and row.controlled else None
        try:
            video = pipe(
                clip.caption, dsg=dsg, steps=sampling.steps, guidance=sampling.guidance, seed=sampling.seed + index,
                num_frames=frames, height=height, width=width, control=control, progress=False,
                drop_cut_phrases=True,  # one long caption must not stop a benchmark: its tail is not steered
            )  # fmt: skip
        except ControlError as err:
            raise ControlError(f"caption {clip.id} ({clip.caption!r}): {err}") from None
        seconds = time.perf_counter() - clock
        if video.dropped_phrases:
            dropped[clip.id] = list(video.dropped_phrases)
        scored = scaled_for_scoring(video.frames)
        results.append(
            score_clip(
                clip.id, clip.caption, scored, clip.dsg, fps=video.fps, planned=video.dsg, seconds=seconds,
                colours=colours,
            )  # fmt: skip
        )
        if save_dir is not None:
            write_video(save_dir / f"{clip.id}.mp4", video.frames, video.fps)
            if video.dsg is not None:
                write_text_atomic(save_dir / f"{clip.id}.dsg.json", video.dsg.to_json(indent=2) + "\n")
    if save_dir is not None:
        write_jsonl_atomic(
            save_dir / GOLD_FILE, ({"id": c.id, "caption": c.caption, "dsg": c.dsg.to_dict()} for c in clips)
        )
    return results, dropped


def run_backbone_row(
    variant: Variant, num: int, *, device: str, save_dir: Path | None, progress: bool
) -> tuple[list[ClipResult], dict[str, Any]]:
    """The scored videos of a 'backbone' variant and its provenance (folder, weights, control, sampling)."""
    from dysen.backbone_pipeline import BackbonePipeline, BackboneSampling
    from dysen.config import load_config
    from dysen.eval.benchmark import benchmark_clips, shapes_config_for
    from dysen.eval.variants import slug
    from dysen.planner.build import PlannerOptions, build_planner
    from dysen.world.colours import DEFAULT_PALETTE

    row = variant.backbone
    if row is None:
        raise DysenError(f"variant {variant.name!r} runs a backbone but names none")
    video = load_config(variant.config).video
    size = backbone_size(row, video.num_frames)
    shapes = shapes_config_for(video, variant.clips)
    clips = benchmark_clips(num, variant.sampling.seed, shapes, variant.clips)
    variant = replace(variant, planner=variant.planner or PlannerOptions())
    planning = row.controlled and variant.sampling.plan == "planner"
    planner = build_planner(variant.planner) if planning else None  # type: ignore[arg-type]
    pipe = BackbonePipeline(loaded_backbone(Path(row.folder), row.dtype, device), planner)
    if row.adapter is not None:
        pipe.load_adapter(row.adapter)
    given = variant.sampling
    settings = BackboneSampling.resolve(pipe.backbone, steps=given.steps, guidance=given.guidance)
    folder = None
    if save_dir is not None:
        folder = save_dir / slug(variant.name)
        folder.mkdir(parents=True, exist_ok=True)
    colours = tuple(dict.fromkeys((*DEFAULT_PALETTE, *shapes.colours, *variant.planner.colours)))  # type: ignore[union-attr]
    sampling = VideoSampling(settings.steps, settings.guidance, None, given.seed, given.plan)
    results, dropped = score_backbone(
        pipe, clips, sampling, row, size, colours=colours, save_dir=folder, progress=progress, desc=variant.name
    )
    record = _provenance(variant, pipe, sampling, size, planning)
    record["control"]["dropped_phrases"] = dropped  # clip id -> phrases too long for the text encoder
    record.update(seeds=[given.seed, given.seed + len(clips) - 1], benchmark_frames=video.num_frames)
    if folder is not None:
        record["videos"] = str(folder)
    return results, record


def _provenance(
    variant: Variant, pipe: BackbonePipeline, sampling: VideoSampling, size: tuple[int, int, int], planning: bool
) -> dict[str, Any]:
    """What made a backbone row's videos: the folder and its weights, the control, the sampling and the planner."""
    from dysen.eval.variants import planner_record, weights_of

    row, backbone = variant.backbone, pipe.backbone
    assert row is not None and variant.planner is not None
    control = row.control()
    return {
        "captions": variant.clips.describe(),
        "model": f"the {backbone.name} backbone in {row.folder}",
        "weights": weights_of(row.folder),
        "backbone": {"kind": backbone.name, "dtype": row.dtype, "fps": backbone.defaults.fps},
        "control": {
            "strength": control.strength, "self_strength": control.self_strength, "energy": control.energy,
            "steps": control.steps,
            "steered_steps": control.active_steps(sampling.steps),  # type: ignore[arg-type]
        },
        "sampling": {
            "steps": sampling.steps, "guidance": sampling.guidance, "seed": sampling.seed,
            "plan": sampling.plan if row.controlled else "none (uncontrolled)",
        },
        "planner": planner_record(variant, variant.planner) if planning else None,
        "adapter": None if row.adapter is None else {"folder": str(row.adapter), "weights": weights_of(row.adapter)},
        "generated": {"frames": size[0], "resolution": [size[1], size[2]]},
    }  # fmt: skip
