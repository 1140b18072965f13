"""``dysen data …`` and ``dysen dsg …``: Dynamic Shapes, WebDataset shards, gold DSG tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from dysen.cli.argtypes import int_range, nonnegative_float, nonnegative_int, positive_float, positive_int, seed
from dysen.cli.world import add_world_flags, world_settings
from dysen.errors import DysenError

MAX_SHAPES_SIZE = 1024
"""Largest ``data shapes --size`` (pixels per side): a 16-frame clip is drawn in float32, 16·1024²·3·4 B = 200 MB."""
MAX_SHAPES_FRAMES = 1024
"""Most ``data shapes --frames`` per clip."""

# -- dysen data shapes -------------------------------------------------------------------------


def configure_data_shapes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (videos/ and manifest.jsonl)")
    p.add_argument("--num", type=positive_int, default=64, help="number of clips (default: 64)")
    p.add_argument(
        "--split",
        default="train",
        choices=["train", "val", "test", "compositional"],
        help="which split; 'compositional' holds colour/shape/action combinations never seen in train",
    )
    p.add_argument("--seed", type=seed, default=0, help="base seed; clip i of a split is the same for every run")
    p.add_argument(
        "--size", type=int_range(8, MAX_SHAPES_SIZE), default=64,
        help="frame height and width in pixels (default: 64)",
    )
    p.add_argument("--frames", type=int_range(1, MAX_SHAPES_FRAMES), default=16, help="frames per clip (default: 16)")
    p.add_argument("--fps", type=positive_int, default=8, help="frames per second of the written mp4 (default: 8)")
    p.add_argument("--workers", type=positive_int, default=None, help="rendering processes (default: all cores)")
    add_world_flags(p)


def run_data_shapes(args: argparse.Namespace) -> int:
    from dysen.data.shapes import ShapesConfig, write_dataset

    config = ShapesConfig(size=args.size, num_frames=args.frames, fps=args.fps, **world_settings(args))
    manifest = write_dataset(
        args.out, num=args.num, split=args.split, seed=args.seed, config=config, workers=args.workers
    )
    print(f"wrote {args.num} clips and {manifest}")
    return 0


# -- dysen dsg ... -----------------------------------------------------------------------------


def configure_dsg_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file",
        type=Path,
        help="a DSG as .json, several as .jsonl (a DSG or a record with a 'dsg' field per line), or tuple text",
    )


def run_dsg_validate(args: argparse.Namespace) -> int:
    from dysen.dsg.io import read_dsgs

    count = 0
    for where, dsg in read_dsgs(args.file):
        count += 1
        print(f"{where}: ok ({len(dsg.events)} events, {dsg.num_steps} steps)")
    print(f"{count} valid DSG(s) in {args.file}")
    return 0


def configure_nothing(p: argparse.ArgumentParser) -> None:
    del p


def run_dsg_schema(args: argparse.Namespace) -> int:
    from dysen.dsg import dsg_json_schema

    print(json.dumps(dsg_json_schema(), indent=2))
    return 0


# -- dysen dsg annotate / dysen data shards ----------------------------------------------------


def _add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    from dysen.data.datasets import DATASETS

    p.add_argument("--dataset", required=True, choices=DATASETS, help="the corpus format under --root")
    p.add_argument("--root", type=Path, required=True, help="the dataset folder, e.g. dataset/activityNet")
    p.add_argument("--split", default="train", help="train/test/all (UCF-101), train/validate/test (MSR-VTT), "
                   "train/val_1/val_2 (ActivityNet); WebVid: a video2dataset download in ROOT/SPLIT (else ROOT "
                   "itself), or the CSV name part (val -> *val*.csv)")  # fmt: skip


ANNOTATE_STEPS = 8  # = dysen.annotate.DEFAULT_STEPS (checked by tests/test_cli_defaults.py; it imports torch)
VLM_TIMEOUT_S = 120.0  # = VLMOptions.timeout_s, likewise

_ANNOTATE_PLANNER = ("planner", "planner_model", "base_url", "api_key_env", "answer_format", "replay", "no_cache",
                     "cache_path", "demos", "policy", "shots", "no_fallback")  # fmt: skip
"""The planner flags of dsg annotate: all but --timeout, which its VLM mode shares."""


def configure_dsg_annotate(p: argparse.ArgumentParser) -> None:
    from dysen.cli.options import DeprecatedAlias, add_deprecated_planner_aliases, add_planner_flags
    from dysen.planner.build import PlannerOptions

    _add_dataset_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="JSONL of {id, dsg, source}; reruns skip the ids done")
    p.add_argument("--mode", choices=["timestamps", "captions", "vlm"],
                   help="timestamped sentences, captions through a planner, or frames through a VLM "
                   "(default: timestamps for activitynet, else captions)")  # fmt: skip
    p.add_argument(
        "--steps", type=positive_int, default=ANNOTATE_STEPS,
        help="M, time steps per video (timestamps and vlm)",
    )
    p.add_argument("--shard", default="1/1", help="annotate only shard i of n, e.g. 2/8 (default: 1/1)")
    p.add_argument("--concurrency", type=positive_int, default=4, help="videos annotated at once (default: 4)")
    p.add_argument("--limit", type=positive_int, help="only the first N videos of the split")
    p.add_argument("--vlm-model", metavar="NAME", help="--mode vlm: the served vision-language model")
    p.add_argument(
        "--timeout", type=positive_float, metavar="SECONDS",
        help="seconds per LLM/VLM request (default: the planner's or the "
        f"VLM's own: {PlannerOptions.timeout_s:g} and {VLM_TIMEOUT_S:g})",
    )  # fmt: skip
    add_planner_flags(p, own=True, only=_ANNOTATE_PLANNER, title="the planner of the timestamps/captions modes "
                      "(--base-url and --api-key-env: also the VLM's)")  # fmt: skip
    add_deprecated_planner_aliases(p, model=False)
    p.add_argument("--model", dest="legacy_model", action=DeprecatedAlias, new="--planner-model or --vlm-model")
    p.add_argument("--image-size", type=positive_int, default=336, help="short side of the frames sent to the VLM")
    p.add_argument("--image-format", default="png", choices=["png", "jpeg"], help="how frames are sent to the VLM")


def run_dsg_annotate(args: argparse.Namespace) -> int:
    from dysen import annotate as an
    from dysen.data.datasets import load_records

    records = load_records(args.dataset, args.root, args.split)[: args.limit]
    mode = args.mode or ("timestamps" if args.dataset == "activitynet" else "captions")
    if args.legacy_model:  # the old --model: the VLM in vlm mode, else the planner's LLM
        args.vlm_model, args.planner_model = (args.legacy_model, None) if mode == "vlm" else (None, args.legacy_model)
    timeout = {"timeout_s": args.timeout} if args.timeout is not None else {}  # unset: the planner's or VLM's own
    if mode == "vlm":
        if not args.vlm_model:
            raise DysenError("--mode vlm needs --vlm-model (the served vision-language model) and usually --base-url")
        options = an.VLMOptions(
            args.vlm_model, base_url=args.base_url, api_key_env=args.api_key_env, steps=args.steps,
            image_size=args.image_size, image_format=args.image_format, **timeout,
        )  # fmt: skip
        annotator, source = an.VLMAnnotator(options), f"vlm:{args.vlm_model}"
    else:
        from dysen.cli.options import own_planner
        from dysen.planner.build import build_planner

        planner = build_planner(own_planner(args))  # with --timeout when given (its dest is the planner flag's)
        timed = mode == "timestamps"
        annotator = an.timestamp_annotator(planner, args.steps) if timed else an.caption_annotator(planner)
        source = f"{mode}:{args.planner}" + (f":{args.planner_model}" if args.planner_model else "")
    shard = an.parse_shard(args.shard)
    report = an.annotate(records, annotator, args.out, source=source, shard=shard, concurrency=args.concurrency)
    print(f"shard {args.shard}: {report.total} videos, {report.already_done} already done, {report.annotated} "
          f"annotated, {report.failed} failed -> {args.out}", file=sys.stderr)  # fmt: skip
    return 1 if report.failed else 0


def configure_dsg_boxes(p: argparse.ArgumentParser) -> None:
    _add_dataset_arguments(p)
    p.add_argument("--gold", type=Path, required=True, help="gold DSGs (JSONL of id + dsg, from 'dysen dsg annotate')")
    p.add_argument(
        "--tracks", type=Path, required=True,
        help="folder of one MOTChallenge results file per video, ID.txt (frame,id,left,top,width,height,conf[,class]; "
        "ByteTrack, BoT-SORT, OC-SORT, StrongSORT, BoxMOT write it)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="JSONL of {id, dsg, source} for the clips given boxes")
    label = p.add_mutually_exclusive_group(required=True)
    label.add_argument("--label", help="every track is one of these, e.g. person (single-class trackers)")
    label.add_argument(
        "--classes", type=Path, metavar="FILE",
        help="class names, one per line (line i names class i): the 8th column's ids become labels",
    )  # fmt: skip
    p.add_argument(
        "--min-confidence", type=nonnegative_float, default=0.0, help="leave out detections below this confidence"
    )


def run_dsg_boxes(args: argparse.Namespace) -> int:
    """Add tracker boxes to gold DSGs (``dysen.annotate.tracks``): each clip whose DSG gets at least one box is
    written; the others are counted, by reason."""
    from tqdm.auto import tqdm

    from dysen.annotate.tracks import add_track_boxes, read_mot, read_names
    from dysen.atomic import write_text_atomic
    from dysen.data.datasets import load_records, read_gold, video_file
    from dysen.data.video import probe

    gold = read_gold(args.gold)
    classes = read_names(args.classes) if args.classes is not None else None
    lines, missed = [], Counter[str]()
    boxed = objects = 0
    for record in tqdm(load_records(args.dataset, args.root, args.split), desc="boxes", unit="video"):
        dsg = gold.get(record.id)
        tracks_file = args.tracks / f"{record.id}.txt"
        if dsg is None or not tracks_file.is_file():
            missed["no gold DSG" if dsg is None else "no tracks file"] += 1
            continue
        with video_file(record) as path:
            info = probe(path)
        tracks = read_mot(tracks_file, args.label, classes, args.min_confidence)
        result = add_track_boxes(dsg, tracks, info.num_frames, info.width, info.height)
        boxed, objects = boxed + result.boxed, objects + result.objects
        if result.dsg.boxes is None:
            missed["no object matched a track"] += 1
            continue
        lines.append(json.dumps({"id": record.id, "dsg": result.dsg.to_dict(), "source": "tracks:mot"}))
    write_text_atomic(args.out, "".join(line + "\n" for line in lines))
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(missed.items())) or "none"
    print(f"wrote {len(lines)} DSGs with boxes to {args.out} ({boxed} of {objects} objects matched a track); "
          f"skipped: {skipped}", file=sys.stderr)  # fmt: skip
    return 0 if lines else 1


def configure_data_shards(p: argparse.ArgumentParser) -> None:
    _add_dataset_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="folder of shard-%%06d.tar (+ .json sidecars)")
    p.add_argument("--gold", type=Path, help="gold DSGs (JSONL of id + dsg, from 'dysen dsg annotate')")
    p.add_argument("--frames", type=positive_int, default=16, help="frames per clip (default: 16)")
    p.add_argument(
        "--stride", type=positive_int,
        help="frames between samples (default: 1; whole video for activitynet)",
    )
    p.add_argument("--whole-video", action="store_true", help="spread the frames over the whole video")
    p.add_argument("--size", type=positive_int, default=256, help="short-side resize + centre crop (default: 256)")
    p.add_argument("--format", default="mp4", choices=["mp4", "npy"], help="mp4 (small) or npy (exact uint8)")
    p.add_argument("--max-count", type=positive_int, default=1000, help="clips per shard (default: 1000)")
    p.add_argument(
        "--max-bytes", type=positive_float, default=1 << 30,
        help="bytes per shard at most, about (e.g. 1e9)",
    )
    p.add_argument("--prefix", default="shard", help="shard file name prefix (default: shard)")
    p.add_argument(
        "--workers", type=nonnegative_int, default=0,
        help="DataLoader processes decoding videos (default: 0)",
    )


def run_data_shards(args: argparse.Namespace) -> int:
    from dysen.data.datasets import ClipSampling, open_dataset
    from dysen.data.shards import ShardOptions, write_shards

    stride = args.stride if args.stride is not None else None if args.dataset == "activitynet" else 1
    sampling = ClipSampling(args.frames, None if args.whole_video else stride, args.size)
    dataset = open_dataset(args.dataset, args.root, args.split, sampling, gold=args.gold)
    options = ShardOptions(args.prefix, args.max_count, int(args.max_bytes), args.format)
    report = write_shards(dataset, args.out, options, workers=args.workers)
    print(f"wrote {report.written} clips ({report.skipped} bad videos skipped, {report.already_done} done before); "
          f"{len(report.shards)} shards in {args.out}")  # fmt: skip
    return 0
