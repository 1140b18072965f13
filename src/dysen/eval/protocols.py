"""Zero-shot protocols: UCF-101 (IS + FVD) and MSR-VTT (CLIPSIM + FID + FVD), as Dysen-VDM reports them.

dysen_spec.md §7 and eval_data.md §2.3, §3: the model never trains on these sets.

* UCF-101: one prompt per class from its name ("ApplyEyeMakeup" -> "apply eye makeup", as Dysen's own
  dataset code; ``template`` rewrites it, e.g. "a person doing {}"), samples spread evenly over the 101
  classes (about 10K in all), each with its own seed; IS from the UCF-101 C3D (TGANv2: one split over all
  samples), FVD against real UCF-101 clips (I3D logits, 2048 real clips by default).
* MSR-VTT: the 2,990 test videos, one caption each drawn with a fixed seed; CLIPSIM of each video with
  its caption, frame FID (Inception pool3, every frame) and FVD against the test videos themselves.

Features are gathered batch by batch (``FeatureSink``), so no more than one batch of videos is held. The
feature networks come from user-given files (``dysen.eval.features``), whose SHA-256 the report prints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm.auto import tqdm

from dysen.errors import DysenError
from dysen.eval.references import I3DCall

if TYPE_CHECKING:
    import torch
    from torch import nn

    from dysen.data.datasets import VideoRecord
    from dysen.eval.benchmark import VideoSampling
    from dysen.eval.features.clip import ClipEmbedder
    from dysen.pipeline import DysenVDMPipeline

PROTOCOL_METRICS: dict[str, tuple[str, ...]] = {"ucf101": ("is", "fvd"), "msrvtt": ("clipsim", "fid", "fvd")}
"""The metrics each zero-shot protocol reports."""

NETWORK_OF = {"fvd": "i3d", "kvd": "i3d", "is": "c3d", "clipsim": "clip", "fid": "inception"}
"""Which feature network each metric needs."""

ENV_OF = {
    "i3d": "DYSEN_I3D_WEIGHTS", "c3d": "DYSEN_C3D_WEIGHTS", "c3d_mean": "DYSEN_C3D_MEAN",
    "clip": "DYSEN_CLIP_MODEL", "inception": "DYSEN_INCEPTION_WEIGHTS",
}  # fmt: skip
"""Environment variables that give a network's weights when no path is passed (as tests/test_eval_metrics.py)."""

UCF101_SAMPLES = 10_000
"""Zero-shot UCF-101 sample count of Make-A-Video, Video LDM and Dysen-VDM (about 100 per class)."""

FEATURE_BUDGET_ARGS = {"max_frames": 64, "max_side": 320, "max_pixels": 64 * 320 * 320}
"""What ``folder_features`` keeps of a file (``dysen.data.video.FrameBudget``): 64 frames (4x dysen's 16; every k-th
beyond), a short side of 320 px (above Inception's 299, the largest input of the feature networks, which each scale
to their own size) and that many pixels in all; dysen's 16 x 256 x 256 videos read as they are."""

NUM_REAL = 2048
"""Real clips for FVD statistics (the standard 2048, eval_data.md §0)."""


class ProtocolError(DysenError):
    """A zero-shot protocol cannot run: data, weights or settings are missing or wrong."""


@dataclass(frozen=True)
class Sample:
    """One video to generate: its id, prompt and seed."""

    id: str
    prompt: str
    seed: int


# -- sampling plans -------------------------------------------------------------------------------------------


def ucf101_classes(root: str | os.PathLike) -> list[str]:
    """The 101 class names of ``root/ucfTrainTestlist/classInd.txt``, in class-index order."""
    from dysen.data.datasets.formats import _first_dir, _lines

    root = Path(root)
    if not root.is_dir():
        raise ProtocolError(f"--data {root} is not a folder; put UCF-101 there (UCF-101/ and ucfTrainTestlist/)")
    entries = [line.split() for line in _lines(_first_dir(root, "ucfTrainTestlist") / "classInd.txt")]
    return [name for _, name in sorted(entries, key=lambda e: int(e[0]))]


def ucf101_plan(
    classes: Sequence[str], num: int = UCF101_SAMPLES, seed: int = 0, template: str = "{}"
) -> list[Sample]:
    """``num`` samples spread evenly over ``classes`` (the first ``num % K`` classes get one more).

    Prompt = ``template`` filled with the class name in words; sample i has seed ``seed + i``.
    """
    from dysen.data.datasets.formats import class_prompt

    if num < 1 or not classes:
        raise ProtocolError(f"need at least one class and one sample, got {len(classes)} classes, {num} samples")
    if "{}" not in template:
        raise ProtocolError(f"--prompt-template must contain '{{}}' where the class name goes, got {template!r}")
    samples = []
    for k, name in enumerate(classes):
        for j in range(num // len(classes) + (k < num % len(classes))):
            samples.append(Sample(f"{name}-{j:04d}", template.format(class_prompt(name)), 0))
    return [Sample(s.id, s.prompt, seed + i) for i, s in enumerate(samples)]


def msrvtt_plan(records: Sequence[VideoRecord], seed: int = 0, num: int | None = None) -> list[Sample]:
    """One caption per test video, drawn uniformly with ``seed``; the first ``num`` videos (None: all)."""
    rng = np.random.default_rng(seed)
    chosen = records[:num] if num is not None else records
    if not chosen:
        raise ProtocolError("no MSR-VTT test videos with captions were found")
    return [Sample(r.id, r.captions[int(rng.integers(len(r.captions)))], seed + i) for i, r in enumerate(chosen)]


# -- feature networks -----------------------------------------------------------------------------------------


@dataclass
class MetricNetworks:
    """The feature networks a protocol needs (None where not needed) and the SHA-256 of their files."""

    i3d: nn.Module | None = None
    c3d: nn.Module | None = None
    clip: ClipEmbedder | None = None
    inception: nn.Module | None = None
    hashes: dict[str, str] = field(default_factory=dict)


def load_networks(
    metrics: Sequence[str],
    paths: dict[str, str | None],
    device: str = "cpu",
    *,
    i3d_bn_eps: float | None = None,
    i3d_call: I3DCall = "tats",
) -> MetricNetworks:
    """Load the network of each metric from ``paths`` (keys as ``ENV_OF``), else its environment variable, onto
    ``device`` (the I3D with BatchNorm eps ``i3d_bn_eps``, None: TATS's 1e-5, fed as ``i3d_call`` says:
    ``dysen.eval.features.i3d``).

    A missing file is a ``ProtocolError`` naming the option and the variable; nothing is downloaded.
    """
    from dysen.eval.features.c3d import load_c3d
    from dysen.eval.features.clip import ClipEmbedder
    from dysen.eval.features.i3d import load_i3d
    from dysen.eval.features.inception import load_inception

    def path_of(key: str, metric: str) -> str:
        value = paths.get(key) or os.environ.get(ENV_OF[key])
        if not value:
            raise ProtocolError(
                f"{metric.upper()} needs the {key.upper()} weights: pass --{key.replace('_', '-')} PATH or set "
                f"{ENV_OF[key]} (none can be downloaded here; see eval_data.md §4 for the files)"
            )
        return value

    networks = MetricNetworks()
    for metric in metrics:
        key = NETWORK_OF[metric]
        if key == "i3d" and networks.i3d is None:
            eps = {} if i3d_bn_eps is None else {"bn_eps": i3d_bn_eps}
            networks.i3d = load_i3d(path_of("i3d", metric), call=i3d_call, **eps).to(device)
            networks.hashes["i3d"] = networks.i3d.sha256
        elif key == "c3d" and networks.c3d is None:
            networks.c3d = load_c3d(
                path_of("c3d", metric), mean_path=paths.get("c3d_mean") or os.environ.get(ENV_OF["c3d_mean"])
            ).to(device)
            networks.hashes["c3d"] = networks.c3d.sha256
        elif key == "inception" and networks.inception is None:
            networks.inception = load_inception(path_of("inception", metric)).to(device)
            networks.hashes["inception"] = networks.inception.sha256
        elif key == "clip" and networks.clip is None:
            networks.clip = ClipEmbedder(path_of("clip", metric), device=device)
            networks.hashes["clip"] = f"model {networks.clip.source}"
    return networks


# -- features -------------------------------------------------------------------------------------------------


@dataclass
class FeatureSink:
    """Features of a stream of video batches for ``metrics``: I3D logits, C3D probabilities, frame
    Inception features and per-video CLIPSIM."""

    metrics: tuple[str, ...]
    networks: MetricNetworks
    device: str | None = None
    """Where the networks run (None: where their weights are)."""
    i3d: list[torch.Tensor] = field(default_factory=list)
    c3d: list[torch.Tensor] = field(default_factory=list)
    inception: list[torch.Tensor] = field(default_factory=list)
    clipsim: list[float] = field(default_factory=list)
    count: int = 0
    size: tuple[int, int, int] = (0, 0, 0)
    """Frames, height and width of the first batch's videos."""

    def add(self, videos: np.ndarray, prompts: Sequence[str] | None = None) -> None:
        """Add uint8 videos ``[N, T, H, W, 3]`` (with their prompts, for CLIPSIM)."""
        from dysen.eval.features.c3d import C3D_FRAMES, c3d_probs
        from dysen.eval.features.clip import clip_embeddings
        from dysen.eval.features.i3d import i3d_features
        from dysen.eval.features.inception import inception_features
        from dysen.eval.metrics import clipsim

        net = self.networks
        if not self.count:
            self.size = (int(videos.shape[1]), int(videos.shape[2]), int(videos.shape[3]))
        if ("fvd" in self.metrics or "kvd" in self.metrics) and net.i3d is not None:
            self.i3d.append(i3d_features(videos, net.i3d, device=self.device))
        if "is" in self.metrics and net.c3d is not None:
            if videos.shape[1] < C3D_FRAMES:
                raise ProtocolError(f"IS needs videos of at least {C3D_FRAMES} frames, got {videos.shape[1]}")
            self.c3d.append(c3d_probs(videos[:, :C3D_FRAMES], net.c3d, device=self.device))
        if "fid" in self.metrics and net.inception is not None:
            frames = videos.reshape(-1, *videos.shape[2:])  # [N·T, H, W, 3]
            self.inception.append(inception_features(frames, net.inception, device=self.device))
        if "clipsim" in self.metrics and net.clip is not None:
            if prompts is None:
                raise ProtocolError("CLIPSIM needs the prompt of every video")
            image, text = clip_embeddings(videos, list(prompts), net.clip)
            self.clipsim += [clipsim(image[i : i + 1], text[i : i + 1]) for i in range(len(prompts))]
        self.count += len(videos)


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generated_features(
    pipe: DysenVDMPipeline,
    samples: Sequence[Sample],
    sink: FeatureSink,
    sampling: VideoSampling,
    *,
    batch_size: int = 16,
    save_dir: Path | None = None,
    progress: bool = True,
) -> FeatureSink:
    """Generate every sample with ``pipe`` (its own seed, the steps and guidance of ``sampling``) into ``sink``.

    With ``save_dir``: ``<id>.mp4`` per video and ``samples.jsonl`` (id, prompt, seed), readable by
    ``folder_features``.
    """
    from dysen.data.video import write_video
    from dysen.dsg.io import write_jsonl_atomic

    bar = tqdm(total=len(samples), desc="generating", unit="video", disable=not progress)
    for batch in _batches(samples, batch_size):
        videos = []
        for sample in batch:
            result = pipe(
                sample.prompt, steps=sampling.steps, guidance=sampling.guidance, dsg_guidance=sampling.dsg_guidance,
                seed=sample.seed, sampler=sampling.sampler, eta=sampling.eta, progress=False,
            )  # fmt: skip
            videos.append(result.frames)
            if save_dir is not None:
                write_video(save_dir / f"{sample.id}.mp4", result.frames, pipe.config.video.fps)
            bar.update()
        sink.add(np.stack(videos), [s.prompt for s in batch])
    bar.close()
    if save_dir is not None:
        write_jsonl_atomic(
            save_dir / "samples.jsonl", ({"id": s.id, "prompt": s.prompt, "seed": s.seed} for s in samples)
        )
    return sink


def folder_features(
    folder: str | os.PathLike, sink: FeatureSink, *, batch_size: int = 16, progress: bool = True
) -> list[tuple[str, str]]:
    """Features of the videos listed in ``folder/samples.jsonl`` (id, prompt), as ``generated_features`` writes.

    Each file is read within ``FEATURE_BUDGET_ARGS``; one that is not a regular file, empty
    or corrupt is skipped. Returns the (file, why) of each skipped video."""
    from dysen.data.video import FrameBudget, read_within
    from dysen.errors import VideoError

    root = Path(folder)
    listing = root / "samples.jsonl"
    if not listing.is_file():
        raise ProtocolError(f'{root} has no samples.jsonl (one {{"id", "prompt"}} per line, video <id>.mp4)')
    samples = [json.loads(line) for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    budget, skipped = FrameBudget(**FEATURE_BUDGET_ARGS), []
    for batch in tqdm(list(_batches(samples, batch_size)), desc="reading videos", unit="batch", disable=not progress):
        videos, prompts = [], []
        for sample in batch:
            file = root / f"{sample['id']}.mp4"
            try:
                videos.append(read_within(file, budget).frames.numpy())  # [T, H, W, 3]
            except VideoError as err:
                skipped.append((str(file), str(err)))
                continue
            prompts.append(str(sample["prompt"]))
            if videos[-1].shape != videos[0].shape:
                raise ProtocolError(f"{file} is {videos[-1].shape[:3]} (T, H, W), the others {videos[0].shape[:3]}")
        if videos:
            sink.add(np.stack(videos), prompts)  # [B, T, H, W, 3]
    if not sink.count:
        raise ProtocolError(f"no readable video in {root} ({len(skipped)} skipped)")
    return skipped


def real_features(
    records: Sequence[VideoRecord],
    sink: FeatureSink,
    *,
    num_frames: int,
    size: int,
    num: int | None = NUM_REAL,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> FeatureSink:
    """Features of ``num`` real clips (a seeded random choice of ``records``; None: all), ``num_frames`` long,
    centre-cropped to ``size``: the resolution of the generated videos. Unreadable videos are skipped."""
    from dysen.data.datasets import ClipSampling, VideoTextDataset
    from dysen.data.video import model_to_frames

    if not records:
        raise ProtocolError("no real videos to compare with")
    order = np.random.default_rng(seed).permutation(len(records))[: num or len(records)]
    dataset = VideoTextDataset([records[i] for i in sorted(order)], ClipSampling(num_frames=num_frames, size=size))
    items = (dataset[i] for i in range(len(dataset)))
    good = (item for item in items if item is not None)
    batch: list[np.ndarray] = []
    for item in tqdm(good, total=len(dataset), desc="real videos", unit="video", disable=not progress):
        batch.append(model_to_frames(item["video"]).numpy())  # [T, H, W, 3]
        if len(batch) == batch_size:
            sink.add(np.stack(batch))
            batch = []
    if batch:
        sink.add(np.stack(batch))
    return sink


def compute_metrics(fake: FeatureSink, real: FeatureSink | None, *, is_splits: int = 1) -> dict[str, float]:
    """The protocol's metrics from the gathered features (IS as mean and std over ``is_splits``)."""
    import torch

    from dysen.eval.metrics import fid_from_features, fvd_from_features, inception_score, kvd_from_features

    values: dict[str, float] = {}
    if fake.c3d:
        values["is"], values["is_std"] = inception_score(torch.cat(fake.c3d), splits=is_splits)
    if fake.clipsim:
        values["clipsim"] = float(np.mean(fake.clipsim))
    if real is not None and fake.i3d and real.i3d:
        if "fvd" in fake.metrics:
            values["fvd"] = fvd_from_features(torch.cat(real.i3d), torch.cat(fake.i3d))
        if "kvd" in fake.metrics:
            values["kvd"] = kvd_from_features(torch.cat(real.i3d), torch.cat(fake.i3d))
    if real is not None and fake.inception and real.inception:
        values["fid"] = fid_from_features(torch.cat(real.inception), torch.cat(fake.inception))
    return values


def real_records(protocol: str, root: str | os.PathLike, split: str) -> list[VideoRecord]:
    """The real videos of a protocol's dataset split (``load_records``; a clear error if the data is absent)."""
    from dysen.data.datasets import load_records

    if not Path(root).is_dir():
        raise ProtocolError(f"--data {root} is not a folder: put the {protocol} dataset there (see the README)")
    return load_records(protocol, root, split)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ZeroShotSettings:
    """What a zero-shot run samples and compares (see the module docstring)."""

    protocol: str
    data: Path
    metrics: tuple[str, ...] = ()
    """Empty: the protocol's own (``PROTOCOL_METRICS``)."""
    num: int | None = None
    """Generated videos (UCF-101: 10,000; MSR-VTT: all 2,990 test videos)."""
    num_real: int | None = NUM_REAL
    """Real clips for FVD/FID (None: all of the split)."""
    real_split: str | None = None
    """Split of the real videos (UCF-101: train; MSR-VTT: test)."""
    template: str = "{}"
    seed: int = 0
    batch_size: int = 16
    is_splits: int = 1
    runs: int = 1
    """Repetitions; each metric is reported as the mean and population std over them."""
    redraw: Literal["real", "generated"] = "real"
    """What each run draws anew: the real clips (seed + r) against one generated set, or the generated clips
    (seeds offset by r · num) against one real set."""
    reference: str | None = None
    """The published protocol these settings are (``dysen.eval.references``), for the report."""

    def resolved_metrics(self) -> tuple[str, ...]:
        if self.protocol not in PROTOCOL_METRICS:
            raise ProtocolError(f"unknown zero-shot protocol {self.protocol!r}; choose {', '.join(PROTOCOL_METRICS)}")
        metrics = self.metrics or PROTOCOL_METRICS[self.protocol]
        unknown = sorted(set(metrics) - set(NETWORK_OF))
        if unknown:
            raise ProtocolError(f"unknown metric(s) {unknown}; choose from {', '.join(NETWORK_OF)}")
        return tuple(metrics)

    def describe(self) -> str:
        repeats = "" if self.runs == 1 else f"; {self.runs} runs drawing the {self.redraw} clips anew, mean ± std"
        named = f"{self.reference}: " if self.reference else ""
        return named + self._describe_protocol() + repeats

    def _describe_protocol(self) -> str:
        if self.protocol == "ucf101":
            return (
                f"UCF-101 zero-shot: {self.num or UCF101_SAMPLES} videos spread evenly over the classes, prompt "
                f"template {self.template!r} on the class name in words, seeds {self.seed}+i; IS from the UCF-101 "
                f"C3D ({self.is_splits} split(s)), FVD from I3D logits against {self.num_real or 'all'} real clips of "
                f"the {self.real_split or 'train'} split"
            )
        return (
            f"MSR-VTT zero-shot: {self.num or 'all 2,990'} test videos, one caption each drawn with seed {self.seed}; "
            f"CLIPSIM (raw cosine, per frame, mean), frame FID (Inception pool3, every frame) and FVD against "
            f"{self.num_real or 'all'} real test clips"
        )


def zero_shot_plan(settings: ZeroShotSettings) -> tuple[list[Sample], list[VideoRecord]]:
    """The samples to generate and the real videos of ``settings.protocol`` under ``settings.data``."""
    if settings.protocol == "ucf101":
        records = real_records("ucf101", settings.data, settings.real_split or "train")
        classes = ucf101_classes(settings.data)
        return ucf101_plan(classes, settings.num or UCF101_SAMPLES, settings.seed, settings.template), records
    records = real_records("msrvtt", settings.data, settings.real_split or "test")
    return msrvtt_plan(records, settings.seed, settings.num), records


def run_zero_shot(
    settings: ZeroShotSettings,
    variants: Sequence[Any],
    networks: MetricNetworks,
    *,
    device: str = "cpu",
    save_dir: Path | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run a zero-shot protocol for each variant (``dysen.eval.variants.Variant``, 'model' or 'folder'), ``runs``
    times where the settings ask (module ``dysen.eval.references``).

    The real features are computed once per run, at the frame count and resolution of the first variant's videos,
    and shared by the variants. Returns the report rows and the settings record.
    """
    import time

    metrics = settings.resolved_metrics()
    if settings.runs < 1:
        raise ProtocolError(f"runs must be >= 1, got {settings.runs}")
    real_metrics = tuple(m for m in metrics if m in ("fvd", "kvd", "fid"))
    reals: dict[int, FeatureSink] = {}  # run -> real features (shared by the variants)

    def real_of(run: int, size: tuple[int, int, int]) -> FeatureSink | None:
        if not real_metrics:
            return None
        key = run if settings.redraw == "real" else 0
        if key not in reals:
            reals[key] = real_features(
                zero_shot_plan(settings)[1], FeatureSink(real_metrics, networks), num_frames=size[0],
                size=min(size[1:]), num=settings.num_real, seed=settings.seed + key, batch_size=settings.batch_size,
                progress=progress,
            )  # fmt: skip
        return reals[key]

    rows = []
    for variant in variants:
        clock = time.perf_counter()
        row: dict[str, Any] = {"name": variant.name, "source": variant.source}
        runs: list[dict[str, float]] = []
        fake: FeatureSink | None = None
        for run in range(settings.runs):
            if fake is None or settings.redraw == "generated":
                fake = _variant_features(settings, variant, run, networks, metrics, row, device, save_dir, progress)
            real = real_of(run, fake.size)
            runs.append(compute_metrics(fake, real, is_splits=settings.is_splits))
            row.update(num_samples=fake.count, num_real=real.count if real else None, frames=fake.size[0])
            row.update(resolution=list(fake.size[1:]))
        row["metrics"] = runs[0] if settings.runs == 1 else _mean_and_std(runs)
        if settings.runs > 1:
            row["runs"] = runs
        row["wall_s"] = round(time.perf_counter() - clock, 2)
        rows.append(row)
    first_real = next(iter(reals.values()), None)
    record = {
        "description": settings.describe(), "data": str(settings.data), "metrics": list(metrics),
        "extractors": dict(networks.hashes), "num_real": first_real.count if first_real else None,
        "runs": settings.runs, "redraw": settings.redraw, "reference": settings.reference,
    }  # fmt: skip
    return rows, record


def _variant_features(
    settings: ZeroShotSettings,
    variant: Any,
    run: int,
    networks: MetricNetworks,
    metrics: tuple[str, ...],
    row: dict[str, Any],
    device: str,
    save_dir: Path | None,
    progress: bool,
) -> FeatureSink:
    """The features of one sample set of ``variant``: run ``run``'s (seeds offset by run · num), generated, or read
    from its folder; ``row`` gets what was used."""
    from dysen.eval.variants import load_variant, planner_record, sampling_record, slug

    fake = FeatureSink(metrics, networks)
    if variant.source == "folder":
        if run > 0:
            raise ProtocolError(
                f"{variant.name}: a folder of videos is one sample set; {settings.runs} runs that draw the generated "
                "clips anew need a model (--model)"
            )
        skipped = folder_features(variant.folder, fake, batch_size=settings.batch_size, progress=progress)
        row["videos"] = str(variant.folder)
        if skipped:
            files = [{"file": file, "reason": why} for file, why in skipped]
            row["skipped_videos"] = {"count": len(files), "files": files}
        return fake
    samples, _ = zero_shot_plan(settings)
    offset = run * len(samples)
    samples = [Sample(s.id, s.prompt, s.seed + offset) for s in samples]
    pipe, resolved = load_variant(variant, device)
    folder = None
    if save_dir is not None:
        folder = save_dir / slug(variant.name) / (f"run-{run:02d}" if settings.runs > 1 else "")
        folder.mkdir(parents=True, exist_ok=True)
    sampling = variant.sampling.for_model(pipe.config.diffusion)  # the model's guidance unless given
    generated_features(
        pipe, samples, fake, sampling, batch_size=settings.batch_size, save_dir=folder, progress=progress
    )  # fmt: skip
    planner = planner_record(variant, pipe.config.planner)
    row.update(model=resolved.description, weights=resolved.weights, planner=planner)
    row.update(sampling=sampling_record(sampling), seeds=[samples[0].seed - offset, samples[-1].seed])
    return fake


def _mean_and_std(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the runs, and its population std (``np.std``, as LVDM and TGANv2) as ``<name>_std``."""
    names = [name for name in runs[0] if not name.endswith("_std")]
    out: dict[str, float] = {}
    for name in names:
        values = np.array([run[name] for run in runs], dtype=np.float64)
        out[name], out[f"{name}_std"] = float(values.mean()), float(values.std())
    return out
