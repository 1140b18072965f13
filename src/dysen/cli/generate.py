"""``dysen generate``: text (or a DSG) to video with ``DysenVDMPipeline``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dysen.cli.argtypes import output_file, positive_int, seed
from dysen.errors import DysenError


def configure_generate(p: argparse.ArgumentParser) -> None:
    from dysen.cli.options import add_planner_flags, add_sampling_flags

    p.add_argument("prompt", nargs="?", help="the text to turn into a video (optional with --plan)")
    p.add_argument("--out", type=output_file, required=True, help="the video to write: .mp4 or .gif")
    p.add_argument("--gif", action="store_true", help="also write a GIF of the video beside it (<out>.gif)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the noise; same seed, same video")
    p.add_argument("--plan", type=Path, help="follow this DSG (.json or tuple text) instead of planning the prompt")
    p.add_argument("--model", type=Path, help="a trained pipeline folder (default: the model shipped for --config)")
    p.add_argument(
        "--config",
        default="shapes-tiny",
        help="without --model: the preset whose shipped trained model to use; RANDOM weights when the package "
        "ships none for it (only shapes-tiny ships one) (default: %(default)s)",
    )
    p.add_argument(
        "--frames",
        type=positive_int,
        metavar="N",
        help="number of frames (default: the model's; bounded by a multiple of it and by free memory)",
    )
    add_sampling_flags(p)
    add_planner_flags(p, own=False)


def run_generate(args: argparse.Namespace) -> int:
    from dysen.atomic import write_text_atomic
    from dysen.cli.options import planner_fields
    from dysen.data.video import write_video
    from dysen.dsg.io import read_dsgs
    from dysen.dsg.render import save_timeline
    from dysen.pipeline import load_pipeline

    if args.prompt is None and args.plan is None:
        raise DysenError("give a PROMPT, or a DSG with --plan FILE")
    if args.out.suffix.lower() not in (".mp4", ".gif"):
        raise DysenError(f"--out {args.out} must end in .mp4 or .gif")
    dsg = None
    if args.plan is not None:
        plans = list(read_dsgs(args.plan))
        if len(plans) != 1:
            raise DysenError(f"--plan {args.plan} holds {len(plans)} DSGs; give a file with exactly one")
        dsg = plans[0][1]
    changes = planner_fields(args)
    pipe = load_pipeline(args.model, config=args.config, planner_changes=changes)  # the model's planner, changed
    result = pipe(
        args.prompt, dsg=dsg, steps=args.steps, guidance=args.guidance, dsg_guidance=args.dsg_guidance,
        seed=args.seed, num_frames=args.frames, sampler=args.sampler, eta=args.eta,
    )  # fmt: skip
    fps = pipe.config.video.fps
    written = [write_video(args.out, result.frames, fps)]
    if args.gif and args.out.suffix.lower() != ".gif":
        written.append(write_video(args.out.with_suffix(".gif"), result.frames, fps))
    plan_json, plan_png = args.out.with_suffix(".dsg.json"), args.out.with_suffix(".dsg.png")
    write_text_atomic(plan_json, result.dsg.to_json(indent=2) + "\n")
    written += [plan_json, save_timeline(result.dsg, plan_png, title=result.prompt)]
    frames, height, width = result.frames.shape[:3]
    print(f"wrote {written[0]} ({frames} frames, {width}x{height}, {fps} fps) and " + ", ".join(map(str, written[1:])))
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()), file=sys.stderr)
    return 0
