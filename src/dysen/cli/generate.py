"""``dysen generate``: text (or a DSG) to video with ``DysenVDMPipeline``, or with a pretrained backbone
(``--backbone DIR``: ``BackbonePipeline``, steered by the plan with ``--control-strength S``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dysen.cli.argtypes import (
    adapter_dir,
    backbone_dir,
    device,
    float_range,
    nonnegative_float,
    output_file,
    positive_int,
    seed,
)
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
    add_backbone_flags(p)
    add_planner_flags(p, own=False)


BACKBONE_ONLY = (
    "height", "width", "dtype", "offload", "device", "negative_prompt", "control_strength", "control_self",
    "control_energy", "control_steps", "adapter",
)  # fmt: skip
"""Flags that apply to --backbone only (the project's own models have a fixed size and place)."""


def add_backbone_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("pretrained backbone (preview: training-free DSG control)")
    group.add_argument(
        "--backbone",
        type=backbone_dir,
        metavar="DIR",
        help="a local diffusers folder (model_index.json) of a WanPipeline (Wan 2.1/2.2) or TextToVideoSDPipeline "
        "(ModelScope, ZeroScope) to sample from instead of a Dysen-VDM model, or shapes-wan-tiny (shipped: a "
        "tiny Wan trained text-only on Dynamic Shapes)",
    )
    group.add_argument("--height", type=positive_int, help="video height in pixels (default: the backbone's)")
    group.add_argument("--width", type=positive_int, help="video width in pixels (default: the backbone's)")
    group.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), help="weights of the denoiser and text encoder "
        "(default: float32; the VAE stays float32)",
    )  # fmt: skip
    group.add_argument(
        "--offload", action="store_true", default=None,
        help="sequential CPU offload (accelerate): weights stay in CPU memory, each layer runs on the GPU",
    )  # fmt: skip
    group.add_argument("--device", type=device, help="where to sample (default: cuda when available, else cpu)")
    group.add_argument("--negative-prompt", metavar="TEXT", help="the text guidance steers away from (default: '')")
    group.add_argument(
        "--control-strength", type=nonnegative_float, metavar="S",
        help="follow the plan (of the prompt, or --plan): the logit bias on each object's and event's phrase tokens "
        "inside its box (+S) and outside (-S) in the backbone's cross-attention; 0, the default until one is "
        "measured on real models, samples the backbone uncontrolled; try 1 to 3",
    )  # fmt: skip
    group.add_argument(
        "--control-self", type=nonnegative_float, metavar="M",
        help="also mask the backbone's self-attention by the plan's boxes for the steered steps (Peekaboo-style: "
        "logit bias -M between video tokens of different boxes; default 0: off)",
    )  # fmt: skip
    group.add_argument(
        "--control-energy", type=nonnegative_float, metavar="E",
        help="also move the latents towards cross-attention inside the boxes before each steered step (LVD-style "
        "energy guidance, step E in the latents' rms; a gradient through the denoiser each time; default 0: off)",
    )  # fmt: skip
    group.add_argument(
        "--control-steps", type=float_range(0.0, 1.0), metavar="F",
        help="share of the denoising steps that are steered, the first ones (default: 0.4)",
    )  # fmt: skip
    group.add_argument(
        "--adapter", type=adapter_dir, metavar="DIR",
        help="a DSG adapter trained for this backbone (dysen train-adapter RUN/model, or shapes-wan-tiny-adapter): "
        "the plan's objects, in their "
        "boxes, steer every step; combines with the --control-* flags",
    )  # fmt: skip


def run_generate(args: argparse.Namespace) -> int:
    from dysen.atomic import write_text_atomic
    from dysen.cli.options import planner_fields
    from dysen.dsg.render import save_timeline
    from dysen.pipeline import load_pipeline

    if args.out.suffix.lower() not in (".mp4", ".gif"):
        raise DysenError(f"--out {args.out} must end in .mp4 or .gif")
    if args.backbone is not None:
        return run_backbone(args)
    given = [name for name in BACKBONE_ONLY if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise DysenError(f"{flags}: only with --backbone DIR (a Dysen-VDM model has its own size and device)")
    if args.prompt is None and args.plan is None:
        raise DysenError("give a PROMPT, or a DSG with --plan FILE")
    dsg = _read_plan(args.plan) if args.plan is not None else None
    changes = planner_fields(args)
    pipe = load_pipeline(args.model, config=args.config, planner_changes=changes)  # the model's planner, changed
    result = pipe(
        args.prompt, dsg=dsg, steps=args.steps, guidance=args.guidance, dsg_guidance=args.dsg_guidance,
        seed=args.seed, num_frames=args.frames, sampler=args.sampler, eta=args.eta,
    )  # fmt: skip
    fps = pipe.config.video.fps
    written = write_videos(args, result.frames, fps)
    plan_json, plan_png = args.out.with_suffix(".dsg.json"), args.out.with_suffix(".dsg.png")
    write_text_atomic(plan_json, result.dsg.to_json(indent=2) + "\n")
    written += [plan_json, save_timeline(result.dsg, plan_png, title=result.prompt)]
    frames, height, width = result.frames.shape[:3]
    print(f"wrote {written[0]} ({frames} frames, {width}x{height}, {fps} fps) and " + ", ".join(map(str, written[1:])))
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()), file=sys.stderr)
    return 0


def run_backbone(args: argparse.Namespace) -> int:
    """``dysen generate PROMPT --backbone DIR``: sampling from a pretrained backbone, steered by the plan with
    ``--control-*`` flags and/or a trained ``--adapter``."""
    from dysen.backbone_pipeline import BackbonePipeline
    from dysen.backbones.base import BackboneOptions
    from dysen.backbones.control import ControlSettings
    from dysen.backbones.folder import read_geometry
    from dysen.backbones.placement import resolve_device
    from dysen.cli.options import planner_fields

    control = ControlSettings(
        strength=args.control_strength or 0.0, steps=0.4 if args.control_steps is None else args.control_steps,
        self_strength=args.control_self or 0.0, energy=args.control_energy or 0.0,
    )
    refused = {
        "--model": args.model is not None, "--sampler": args.sampler is not None,
        "--dsg-guidance": args.dsg_guidance is not None,
    }  # fmt: skip
    if any(refused.values()):
        flags = ", ".join(name for name, bad in refused.items() if bad)
        raise DysenError(f"{flags} do not apply with --backbone: it samples with its own weights and scheduler")
    planning = {
        "--plan": args.plan is not None, "planner flags": bool(planner_fields(args)),
        "--control-steps": args.control_steps is not None,
    }  # fmt: skip
    follows_plan = control.enabled or args.adapter is not None
    if not follows_plan and any(planning.values()):
        flags = ", ".join(name for name, given in planning.items() if given)
        raise DysenError(
            f"{flags}: a backbone follows a plan only under DSG control; give --control-strength S > 0 (e.g. 1) "
            "or --control-self M > 0 or --control-energy E > 0, or an --adapter"
        )
    if args.prompt is None and args.plan is None:
        raise DysenError("give a PROMPT, or a DSG with --plan FILE (and --control-strength S)")
    dsg = _read_plan(args.plan) if args.plan is not None else None
    options = BackboneOptions(dtype=args.dtype or "float32", device=args.device, offload=bool(args.offload))
    resolve_device(options)  # an impossible device/offload/dtype is refused before anything loads
    geometry = read_geometry(args.backbone)  # frames and size checked from the configs, before the weights load
    geometry.latent_shape(*geometry.video_size(args.frames, args.height, args.width))
    planner = None
    if follows_plan and dsg is None:
        from dysen.planner.build import PlannerOptions, build_planner

        planner = build_planner(PlannerOptions(**planner_fields(args)))
    pipe = BackbonePipeline.from_folder(args.backbone, options, planner=planner)
    if args.adapter is not None:
        pipe.load_adapter(args.adapter)
    result = pipe(
        args.prompt, negative_prompt=args.negative_prompt or "", steps=args.steps, guidance=args.guidance,
        eta=args.eta, seed=args.seed, num_frames=args.frames, height=args.height, width=args.width,
        dsg=dsg, control=control,
    )  # fmt: skip
    written = write_videos(args, result.frames, result.fps)
    if result.dsg is not None:
        from dysen.atomic import write_text_atomic

        plan_json = args.out.with_suffix(".dsg.json")
        write_text_atomic(plan_json, result.dsg.to_json(indent=2) + "\n")
        written.append(plan_json)
    frames, height, width = result.frames.shape[:3]
    also = "".join(f" and {path}" for path in written[1:])
    print(f"wrote {written[0]} ({frames} frames, {width}x{height}, {result.fps} fps){also}")
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()), file=sys.stderr)
    return 0


def _read_plan(path: Path) -> Any:
    """The one DSG of a ``--plan`` file."""
    from dysen.dsg.io import read_dsgs

    plans = list(read_dsgs(path))
    if len(plans) != 1:
        raise DysenError(f"--plan {path} holds {len(plans)} DSGs; give a file with exactly one")
    return plans[0][1]


def write_videos(args: argparse.Namespace, frames: Any, fps: int) -> list[Path]:
    """Write ``frames`` (uint8 [T, H, W, 3]) to ``--out`` (its folder made if missing: the video is sampled by now),
    and with ``--gif`` a GIF beside it."""
    from dysen.data.video import write_video

    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = [write_video(args.out, frames, fps)]
    if args.gif and args.out.suffix.lower() != ".gif":
        written.append(write_video(args.out.with_suffix(".gif"), frames, fps))
    return written
