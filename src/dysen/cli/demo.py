"""``dysen demo``: the web demo (prompt -> editable plan -> video) in a Gradio app on this machine."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dysen.cli.argtypes import port, positive_int
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
    from dysen.diffusion.sampler import SamplingSettings
    from dysen.pipeline import load_pipeline
    from dysen.planner.build import changed_options
    from dysen.web.app import build_app, keep_gradio_cache_in, launch
    from dysen.web.service import DemoService, uses_random_weights

    limits = DemoLimits(max_prompt_chars=args.max_prompt, max_steps=args.max_steps, max_frames=args.max_frames)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dysen-demo-"))
    keep_gradio_cache_in(workdir)  # uploads and served copies stay in the workdir
    pipe = load_pipeline(args.model, config=args.config)
    planner = changed_options(pipe.config.planner, planner_fields(args))
    service = DemoService(
        pipe,
        workdir,
        limits=limits,
        trusted_url=args.base_url,
        allowed_endpoints=args.allow_endpoint,
        api_key_env=planner.api_key_env,
        demos=planner.demos,
        policy=planner.policy,
    )
    start = SamplingSettings.resolve(pipe.config.diffusion, steps=args.steps)  # the page starts from the model's
    page = PageOptions(
        steps=min(start.steps, args.max_steps), guidance=start.guidance, dsg_guidance=start.dsg_guidance,
        planner_model=args.planner_model, concurrency=args.concurrency, queue_size=args.queue_size,
        random_weights=uses_random_weights(args.model, args.config),
    )  # fmt: skip
    print(f"dysen demo: files go to {workdir}; press Ctrl+C to stop")
    launch(build_app(service, page), service, host=args.host, port=args.port, share=args.share)
    return 0
