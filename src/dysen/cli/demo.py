"""``dysen demo``: the web demo (prompt -> editable plan -> video) in a Gradio app on this machine."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from dysen.cli.argtypes import (
    adapter_dir,
    backbone_dir,
    device,
    float_range,
    nonnegative_float,
    port,
    positive_int,
)
from dysen.errors import DysenError
from dysen.web.options import DemoLimits, PageOptions

DEMO_PLANNER = ("planner_model", "base_url", "api_key_env", "demos", "policy")
"""The planner flags of the demo (the page picks the backend): --base-url is the one endpoint given the server's
key, --planner-model prefills the page's model name."""


def configure_demo(p: argparse.ArgumentParser) -> None:
    from dysen.cli.options import add_planner_flags, add_sampling_flags

    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=port, help="port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (off by default)")
    p.add_argument("--model", type=Path, help="a trained model folder (default: the shipped model, else RANDOM)")
    p.add_argument("--config", default="shapes-tiny", help="preset name or YAML of the model when there is no --model")
    add_backbone_flags(p)
    add_planner_flags(p, own=False, only=DEMO_PLANNER, title="the page's planners (--base-url: the one endpoint "
                      "given the server's key; --planner-model: prefilled)")  # fmt: skip
    p.add_argument("--allow-endpoint", action="append", default=[], metavar="URL", dest="allow_endpoint",
                   help="another endpoint the page may use, with no key (repeatable; default: only --base-url, "
                   "or OpenAI's API without it)")  # fmt: skip
    add_sampling_flags(p, ("steps",), note=" first shown on the page")
    page, limits = PageOptions(), DemoLimits()  # the defaults, declared there once
    p.add_argument("--concurrency", type=positive_int, default=page.concurrency, help="requests processed at once")
    p.add_argument("--queue-size", type=positive_int, default=page.queue_size, help="requests that may wait")
    p.add_argument(
        "--max-steps", type=positive_int, default=limits.max_steps,
        help="most denoising steps a request may ask",
    )
    p.add_argument("--max-frames", type=positive_int, default=limits.max_frames, help="most frames a request may ask")
    p.add_argument(
        "--max-prompt", type=positive_int, default=limits.max_prompt_chars,
        help="longest prompt in characters",
    )
    p.add_argument("--workdir", type=Path, help="where generated files go (default: a new temporary folder)")


BACKBONE_ONLY = ("control_strength", "control_self", "control_steps", "adapter", "height", "width", "dtype", "device")
"""Flags of --backbone only."""


def add_backbone_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("a pretrained backbone instead of Dysen-VDM (preview: training-free DSG control)")
    group.add_argument(
        "--backbone", type=backbone_dir, metavar="DIR",
        help="a local diffusers folder of a WanPipeline or TextToVideoSDPipeline (or shapes-wan-tiny, shipped): the "
        "page plans as ever and the backbone, steered by the plan, makes the video",
    )  # fmt: skip
    group.add_argument(
        "--control-strength", type=nonnegative_float, metavar="S",
        help="fix the control strength (default: the page's slider, starting at 1; 0: the backbone alone)",
    )  # fmt: skip
    group.add_argument(
        "--control-self", type=nonnegative_float, metavar="M",
        help="also mask the backbone's self-attention by the plan's boxes (logit bias -M between tokens of "
        "different boxes; default 0: off)",
    )  # fmt: skip
    group.add_argument(
        "--control-steps", type=float_range(0.0, 1.0), metavar="F",
        help="share of the denoising steps that are steered, the first ones (default: 0.4)",
    )  # fmt: skip
    group.add_argument(
        "--adapter", type=adapter_dir, metavar="DIR",
        help="a DSG adapter trained for the backbone (dysen train-adapter RUN/model, or shapes-wan-tiny-adapter): "
        "every video follows the plan with it",
    )  # fmt: skip
    group.add_argument("--height", type=positive_int, help="video height (default: the backbone's)")
    group.add_argument("--width", type=positive_int, help="video width (default: the backbone's)")
    group.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="denoiser and text encoder weights")
    group.add_argument("--device", type=device, help="where to sample (default: cuda when available, else cpu)")


def _backbone_engine(args: argparse.Namespace, limits: DemoLimits) -> Any:
    """The ``BackboneEngine`` of --backbone; its size is checked from the configs before the weights load."""
    from dysen.backbone_pipeline import BackbonePipeline
    from dysen.backbones.base import BackboneOptions
    from dysen.backbones.folder import read_geometry
    from dysen.backbones.placement import resolve_device
    from dysen.web.engines import BackboneEngine

    options = BackboneOptions(dtype=args.dtype or "float32", device=args.device)
    resolve_device(options)
    geometry = read_geometry(args.backbone)  # a folder that is no supported backbone: refused, naming what it is
    geometry.token_grid(*geometry.video_size(None, args.height, args.width)[1:])
    pipe = BackbonePipeline.from_folder(args.backbone, options)  # the service passes each plan: no planner here
    if args.adapter is not None:
        pipe.load_adapter(args.adapter)
    steps = 0.4 if args.control_steps is None else args.control_steps
    return BackboneEngine(
        pipe, limits.max_frames, height=args.height, width=args.width, strength=args.control_strength,
        control_steps=steps, self_strength=args.control_self or 0.0,
    )  # fmt: skip


def run_demo(args: argparse.Namespace) -> int:
    # --port and the counts are checked by their argparse types; --steps (a sampling flag) is checked here
    if args.steps is not None and args.steps < 1:
        raise DysenError(f"--steps must be at least 1, got {args.steps}")
    if args.steps is not None and args.steps > args.max_steps:
        raise DysenError(f"--steps {args.steps} is more than --max-steps {args.max_steps}")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise DysenError("the web demo needs Gradio: pip install 'dysen-vdm[demo]'") from None
    from dysen.cli.options import planner_fields
    from dysen.pipeline import load_pipeline
    from dysen.planner.build import PlannerOptions, changed_options
    from dysen.web.app import build_app, keep_gradio_cache_in, launch
    from dysen.web.service import DemoService, uses_random_weights

    given = [name for name in BACKBONE_ONLY if getattr(args, name) is not None]
    if args.backbone is None and given:
        raise DysenError(", ".join("--" + n.replace("_", "-") for n in given) + ": only with --backbone DIR")
    if args.backbone is not None and args.model is not None:
        raise DysenError("--model and --backbone: the page runs one of them")

    limits = DemoLimits(max_prompt_chars=args.max_prompt, max_steps=args.max_steps, max_frames=args.max_frames)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dysen-demo-"))
    keep_gradio_cache_in(workdir)  # uploads and served copies stay in the workdir
    if args.backbone is not None:
        engine: Any = _backbone_engine(args, limits)
        planner = changed_options(PlannerOptions(), planner_fields(args))
    else:
        engine = load_pipeline(args.model, config=args.config)
        planner = changed_options(engine.config.planner, planner_fields(args))
    service = DemoService(
        engine,
        workdir,
        limits=limits,
        trusted_url=args.base_url,
        allowed_endpoints=args.allow_endpoint,
        api_key_env=planner.api_key_env,
        demos=planner.demos,
        policy=planner.policy,
    )
    start = service.engine.start(args.steps, None, None)  # the page starts from the model's
    page = PageOptions(
        steps=min(start.steps, args.max_steps), guidance=start.guidance, dsg_guidance=start.plan_scale,
        planner_model=args.planner_model, concurrency=args.concurrency, queue_size=args.queue_size,
        random_weights=args.backbone is None and uses_random_weights(args.model, args.config),
    )  # fmt: skip
    print(f"dysen demo: files go to {workdir}; press Ctrl+C to stop")
    launch(build_app(service, page), service, host=args.host, port=args.port, share=args.share)
    return 0
