"""The dynamics benchmark on Dynamic Shapes: test captions -> videos -> action faithfulness, aggregated.

Dysen-VDM claims better dynamics (dysen_spec.md §7): the right actions, in the right order, on the right
objects. Every Dynamic Shapes test clip has an exact gold DSG, so any video of its caption is scored
without a learned model by ``dysen.eval.dynamics.score_video`` (object fidelity, action accuracy, order
accuracy) and ``dysen.eval.flow.dynamic_degree`` (VBench-style, Farneback flow). Videos come from a
pipeline (one fixed seed per clip), from the ground-truth renders (the scorer's ceiling), or from a
folder of files already written. ``summarise`` aggregates overall, per action type and per number of
events. Action accuracy is pooled over events; object fidelity and order accuracy average over the clips
where they are defined (order needs two events with disjoint windows).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm.auto import tqdm

from dysen.data.shapes import render_clip
from dysen.data.video import FrameBudget
from dysen.dsg.metrics import action_planning_reliability
from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DysenError, VideoError
from dysen.eval.dynamics import DynamicsScore, score_video
from dysen.eval.flow import DynamicDegree, dynamic_degree, dynamic_share
from dysen.eval.stats import pooled_standard_error, standard_error
from dysen.eval.tracking import DEFAULT_PALETTE, scoring_palette
from dysen.world import ShapesClip, ShapesConfig, sample_clip, vocab
from dysen.world.config import require_split

if TYPE_CHECKING:
    from dysen.config import VideoSpec
    from dysen.diffusion.schedules import DiffusionConfig, SamplerName
    from dysen.models.vae import VideoAutoencoder
    from dysen.pipeline import DysenVDMPipeline

BENCHMARK_SPLIT = "test"
"""The Dynamic Shapes split the benchmark draws its captions and gold DSGs from."""

SCORE_BUDGET = FrameBudget(max_frames=64, max_side=256, max_pixels=16 * 256 * 256)
"""What ``score_folder`` keeps of a video file. dysen's videos (16 frames of at most 256 x 256) are scored as they
are; a longer or larger file is thinned to 64 frames and scaled, as it is decoded, to at most a 256 px short side and
16 x 256 x 256 pixels in all, so a 720p or 800-frame clip scores in bounded memory (the tracker holds ~300 bytes
per pixel of a busy real clip; its lengths are fractions of the frame, so scale does not change its verdicts)."""

GOLD_FILE = "gold.jsonl"
"""In a folder of videos: ``{"id", "dsg"}`` records of the gold DSGs to score against (``read_gold``)."""

PlanSource = Literal["planner", "gold"]


@dataclass(frozen=True)
class VideoSampling:
    """How a pipeline renders each benchmark caption (video sampling; not the planner LLM's sampling)."""

    steps: int | None = None
    """Denoising steps (None: the model's ``config.diffusion.steps``)."""
    guidance: float | None = None
    """s_text (None: the model's ``config.diffusion.guidance``)."""
    dsg_guidance: float | None = None
    """s_dsg of the compositional guidance (None: the model's, else = ``guidance``; 0: the DSG is not used)."""
    seed: int = 0
    """Clip i is sampled with seed ``seed + i``."""
    plan: PlanSource = "planner"
    """'planner': the pipeline plans the caption (Dysen-VDM as used); 'gold': it follows the gold DSG (oracle)."""
    sampler: SamplerName | None = None
    """ddim, dpmpp or euler (None: the model's ``config.diffusion.sampler``)."""
    eta: float | None = None
    """DDIM's η (None: the model's ``config.diffusion.eta``; LVDM samples with 1.0)."""

    def for_model(self, diffusion: DiffusionConfig) -> VideoSampling:
        """The steps, guidance scales, sampler and η a model samples with: unset ones from its config (an unset s_dsg
        = s_text), by the pipeline's own rule (``SamplingSettings.resolve``)."""
        from dysen.diffusion.sampler import SamplingSettings

        settings = SamplingSettings.resolve(
            diffusion, steps=self.steps, guidance=self.guidance, dsg_guidance=self.dsg_guidance, sampler=self.sampler,
            eta=self.eta,
        )  # fmt: skip
        return dataclasses.replace(
            self, steps=settings.steps, guidance=settings.guidance, dsg_guidance=settings.dsg_guidance,
            sampler=settings.sampler, eta=settings.eta,
        )  # fmt: skip


@dataclass(frozen=True)
class ClipResult:
    """One scored video: what it should show (gold), what the model followed (planned) and the scores."""

    id: str
    caption: str
    gold: DynamicSceneGraph
    score: DynamicsScore
    degree: DynamicDegree
    planned: DynamicSceneGraph | None = None
    seconds: float = 0.0
    """Time to make the video (0 for renders and files)."""
    size: tuple[int, int, int] = (0, 0, 0)
    """Frames, height and width of the video."""

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready summary of the clip (events with their verdicts; no frames)."""
        events = [
            {
                "agent": r.event.agent, "predicate": r.event.predicate, "target": r.event.target,
                "frames": list(r.frames), "detected": r.detected, "onset": r.onset, "seen_at": r.seen_at,
            }
            for r in self.score.events
        ]  # fmt: skip
        record: dict[str, Any] = {
            "id": self.id,
            "caption": self.caption,
            "num_events": len(self.gold.events),
            "object_fidelity": self.score.object_fidelity,
            "action_accuracy": self.score.action_accuracy,
            "order_accuracy": self.score.order_accuracy,
            "order_when_seen": self.score.order_when_seen,
            "dynamic": self.degree.dynamic,
            "flow": round(self.degree.flow, 4),
            "events": events,
            "seconds": round(self.seconds, 3),
        }
        if self.planned is not None:
            record["plan_reliability"] = action_planning_reliability(self.planned.events, self.gold.events)
            record["planned_events"] = [e.triplet for e in self.planned.events]
        return record


def score_clip(
    clip_id: str,
    caption: str,
    frames: np.ndarray,
    gold: DynamicSceneGraph,
    *,
    fps: float,
    planned: DynamicSceneGraph | None = None,
    seconds: float = 0.0,
    colours: tuple[str, ...] = DEFAULT_PALETTE,
) -> ClipResult:
    """Score uint8 ``[T, H, W, 3]`` frames against ``gold`` (actions, objects, order) and measure their motion;
    ``colours``: the world's palette."""
    score = score_video(frames, gold, colours)
    size = (int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2]))
    return ClipResult(clip_id, caption, gold, score, dynamic_degree(frames, fps), planned, seconds, size)


@dataclass(frozen=True)
class ClipSelection:
    """Which Dynamic Shapes clips a row scores: the split, the first clip, and the world's opt-in settings
    (``ShapesConfig.colours``, ``phrasing``, ``start_angle``). The default is the benchmark: test clips 0.., the
    default world. Validation captions (``split='val'``) are what settings and releases are chosen on."""

    split: str = BENCHMARK_SPLIT
    first: int = 0
    """Index of the first clip: clips ``first .. first + num - 1``."""
    world: dict[str, Any] = dataclasses.field(default_factory=dict)
    """``ShapesConfig`` keyword arguments of the world options (empty: the default world)."""

    def __post_init__(self) -> None:
        require_split(self.split)
        if isinstance(self.first, bool) or not isinstance(self.first, int) or self.first < 0:
            raise DysenError(f"the first clip must be an index >= 0, got {self.first!r}")

    def describe(self) -> str:
        world = ", ".join(f"{k} {v if isinstance(v, str) else ','.join(v)}" for k, v in self.world.items())
        return f"Dynamic Shapes {self.split} split from clip {self.first}" + (f" ({world})" if world else "")


def shapes_config_for(video: VideoSpec, selection: ClipSelection | None = None) -> ShapesConfig:
    """The Dynamic Shapes settings that match a model's videos (as training draws them), in the world of
    ``selection`` (default: the default world)."""
    world = selection.world if selection is not None else {}
    return ShapesConfig(size=video.height, num_frames=video.num_frames, fps=video.fps, **world)


def benchmark_clips(
    num: int, seed: int = 0, config: ShapesConfig | None = None, selection: ClipSelection | None = None
) -> list[ShapesClip]:
    """Clips ``first .. first + num - 1`` of a split (default: test clips 0..) of Dynamic Shapes under ``seed``:
    captions, gold DSGs, tracks (no pixels)."""
    if num < 1:
        raise DysenError(f"the benchmark needs at least 1 clip, got {num}")
    selection = selection or ClipSelection()
    config = config or ShapesConfig()
    return [sample_clip(i, selection.split, seed, config) for i in range(selection.first, selection.first + num)]


def score_renders(clips: Sequence[ShapesClip], config: ShapesConfig, *, progress: bool = True) -> list[ClipResult]:
    """Score the ground-truth renders of ``clips``: the ceiling of what the scorer can confirm."""
    results = []
    for clip in tqdm(clips, desc="ground truth", unit="clip", disable=not progress):
        frames = render_clip(clip, config)
        results.append(score_clip(clip.id, clip.caption, frames, clip.dsg, fps=config.fps, colours=config.colours))
    return results


def score_reconstructions(
    vae: VideoAutoencoder,
    clips: Sequence[ShapesClip],
    config: ShapesConfig,
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> list[ClipResult]:
    """Score the renders of ``clips`` after a round trip through a model's autoencoder (posterior means):
    the ceiling of any video its diffusion model can make, since every video it makes is such a decoding."""
    import torch

    from dysen.data.video import frames_to_model, model_to_frames

    device = next(vae.parameters()).device  # type: ignore[attr-defined]
    results = []
    for start in tqdm(range(0, len(clips), batch_size), desc="autoencoder", unit="batch", disable=not progress):
        batch = clips[start : start + batch_size]
        videos = torch.stack([frames_to_model(torch.from_numpy(render_clip(clip, config))) for clip in batch])
        with torch.no_grad():
            decoded = vae.decode(vae.encode(videos.to(device)))  # [b, 3, T, H, W]
        for clip, video in zip(batch, decoded, strict=True):
            frames = model_to_frames(video).numpy()  # uint8 [T, H, W, 3]
            results.append(score_clip(clip.id, clip.caption, frames, clip.dsg, fps=config.fps, colours=config.colours))
    return results


def score_pipeline(
    pipe: DysenVDMPipeline,
    clips: Sequence[ShapesClip],
    sampling: VideoSampling,
    *,
    save_dir: Path | None = None,
    progress: bool = True,
    desc: str = "generating",
    world_colours: tuple[str, ...] = DEFAULT_PALETTE,
) -> list[ClipResult]:
    """Generate a video of each clip's caption with ``pipe`` (seed ``sampling.seed + i``) and score it.

    The scorer reads the clips' world's colours (``world_colours``) and those the model can draw
    (``PlannerOptions.colours``), so a model that knows pink is caught painting a red shape pink.
    With ``save_dir``, each video is written as ``<id>.mp4`` with the DSG it followed (``<id>.dsg.json``),
    plus ``gold.jsonl``, so the folder can be scored again with ``score_folder``.
    """
    from dysen.atomic import write_text_atomic
    from dysen.data.video import write_video
    from dysen.dsg.io import write_jsonl_atomic

    fps = pipe.config.video.fps
    colours = scoring_palette(world_colours, pipe.config.planner.colours)
    results = []
    for index, clip in enumerate(tqdm(clips, desc=desc, unit="clip", disable=not progress)):
        clock = time.perf_counter()
        video = pipe(
            clip.caption, dsg=clip.dsg if sampling.plan == "gold" else None, steps=sampling.steps,
            guidance=sampling.guidance, dsg_guidance=sampling.dsg_guidance, seed=sampling.seed + index,
            sampler=sampling.sampler, eta=sampling.eta,
            progress=False,
        )  # fmt: skip
        seconds = time.perf_counter() - clock
        results.append(
            score_clip(
                clip.id, clip.caption, video.frames, clip.dsg, fps=fps, planned=video.dsg, seconds=seconds,
                colours=colours,
            )  # fmt: skip
        )
        if save_dir is not None:
            write_video(save_dir / f"{clip.id}.mp4", video.frames, fps)
            write_text_atomic(save_dir / f"{clip.id}.dsg.json", video.dsg.to_json(indent=2) + "\n")
    if save_dir is not None:
        write_jsonl_atomic(
            save_dir / GOLD_FILE, ({"id": c.id, "caption": c.caption, "dsg": c.dsg.to_dict()} for c in clips)
        )
    return results


def _gold_of_folder(folder: Path, gold_path: Path | None) -> dict[str, DynamicSceneGraph]:
    from dysen.data.datasets import read_gold

    if gold_path is not None:
        return read_gold(gold_path)
    return read_gold(folder / GOLD_FILE) if (folder / GOLD_FILE).is_file() else {}


class FolderScores(list[ClipResult]):
    """The results of ``score_folder``, in file order, and the files it could not read."""

    def __init__(self, results: Iterable[ClipResult] = (), skipped: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(results)
        self.skipped: list[tuple[str, str]] = list(skipped)
        """(file, why) of every video skipped: not a regular file, empty, corrupt or not a video."""


def score_folder(folder: str | Path, *, gold: str | Path | None = None, progress: bool = True) -> FolderScores:
    """Score every ``<name>.mp4`` / ``.gif`` of ``folder`` against its gold DSG.

    The gold DSG of a video is its record in ``gold`` (a JSONL of ``{"id", "dsg"}``), else in
    ``<folder>/gold.jsonl``, else the ``<name>.dsg.json`` beside it (what ``dysen generate`` writes: the
    DSG the model followed, so then the score measures faithfulness to the plan, not to a gold). The
    dynamic degree uses each file's own frame rate. Each video is read within ``SCORE_BUDGET``. A file that is
    not a regular file (a FIFO is never opened), is empty, or does not decode is skipped and listed in the
    result's ``skipped``; a folder where no video reads is an error.
    """
    from dysen.data.video import read_within

    root = Path(folder)
    if not root.is_dir():
        raise DysenError(f"--videos {root} is not a folder of videos")
    golds = _gold_of_folder(root, Path(gold) if gold is not None else None)
    by_stem: dict[str, Path] = {}
    for path in sorted(root.iterdir(), key=lambda p: p.suffix.lower() != ".mp4"):  # an mp4 wins over its gif
        if path.suffix.lower() in (".mp4", ".gif"):
            by_stem.setdefault(path.stem, path)
    files = [by_stem[stem] for stem in sorted(by_stem)]
    if not files:
        raise DysenError(f"no .mp4 or .gif videos in {root}")
    captions, scores = _captions(root), FolderScores()
    for file in tqdm(files, desc="scoring videos", unit="video", disable=not progress):
        dsg = golds.get(file.stem)
        beside = file.with_suffix(".dsg.json")
        if dsg is None and beside.is_file():
            try:
                dsg = DynamicSceneGraph.from_json(beside.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as err:
                raise DysenError(f"cannot read the DSG {beside}: {err}") from None
        if dsg is None:
            raise DysenError(
                f"{file} has no DSG to score against: put {beside.name} beside it or pass --gold FILE.jsonl"
            )
        try:
            video = read_within(file, SCORE_BUDGET)  # checks the file type before opening it
        except VideoError as err:
            scores.skipped.append((str(file), str(err)))
            continue
        scores.append(score_clip(file.stem, captions.get(file.stem, ""), video.frames.numpy(), dsg, fps=video.fps))
    if not scores:
        listed = "; ".join(f"{Path(f).name}: {why}" for f, why in scores.skipped)
        raise DysenError(f"no readable video in {root} ({len(scores.skipped)} skipped: {listed})")
    return scores


def _captions(folder: Path) -> dict[str, str]:
    """Captions by id from the folder's gold file (none when there is no such file)."""
    gold = folder / GOLD_FILE
    if not gold.is_file():
        return {}
    records = (json.loads(line) for line in gold.read_text(encoding="utf-8").splitlines() if line.strip())
    return {str(r["id"]): str(r.get("caption", "")) for r in records if isinstance(r, dict) and "id" in r}


# -- aggregation ----------------------------------------------------------------------------------------------


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _action_name(predicate: str) -> str:
    action = vocab.ACTIONS_BY_PREDICATE.get(predicate)
    return action.name if action is not None else predicate


def _group_summary(results: Sequence[ClipResult]) -> dict[str, Any]:
    per_clip = [[r.detected for r in clip.score.events] for clip in results]
    detected = [hit for hits in per_clip for hit in hits]
    summary = {
        "clips": len(results),
        "events": len(detected),
        "action_accuracy": float(np.mean(detected)) if detected else None,
        "action_accuracy_se": pooled_standard_error(per_clip),
        "object_fidelity": _mean(c.score.object_fidelity for c in results),
        "object_fidelity_se": standard_error(c.score.object_fidelity for c in results),
        "order_accuracy": _mean(c.score.order_accuracy for c in results),
        "order_accuracy_se": standard_error(c.score.order_accuracy for c in results),
        "order_when_seen": _mean(c.score.order_when_seen for c in results),
        "dynamic_degree": dynamic_share([c.degree for c in results]),
        "mean_flow": _mean(c.degree.flow for c in results),
    }
    planned = [c for c in results if c.planned is not None]
    if planned:
        summary["plan_reliability"] = _mean(
            action_planning_reliability(c.planned.events, c.gold.events) for c in planned if c.planned
        )
    return summary


def summarise(results: Sequence[ClipResult]) -> dict[str, Any]:
    """Overall scores, action accuracy per action type, and every score per number of gold events."""
    if not results:
        raise DysenError("nothing to summarise: no video was scored")
    per_action: dict[str, list[list[bool]]] = defaultdict(list)  # action -> per clip, its events' verdicts
    for clip in results:
        verdicts: dict[str, list[bool]] = defaultdict(list)
        for r in clip.score.events:
            verdicts[_action_name(r.event.predicate)].append(r.detected)
        for name, hits in verdicts.items():
            per_action[name].append(hits)
    by_count: dict[int, list[ClipResult]] = defaultdict(list)
    for clip in results:
        by_count[len(clip.gold.events)].append(clip)
    return {
        "overall": _group_summary(results),
        "per_action": {
            name: {
                "events": sum(len(h) for h in clips),
                "action_accuracy": float(np.mean([hit for h in clips for hit in h])),
                "action_accuracy_se": pooled_standard_error(clips),
            }
            for name, clips in sorted(per_action.items())
        },
        "per_num_events": {str(k): _group_summary(v) for k, v in sorted(by_count.items())},
    }
