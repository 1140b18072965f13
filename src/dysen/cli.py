"""``dysen <subcommand>``: one table maps each subcommand to the function that runs it.

Each runner imports what it needs when it runs, so ``dysen --help`` stays instant. Expected failures
(``DysenError``) print one line and exit 1; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dysen import __version__
from dysen.errors import DysenError, NotBuiltError


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, how it declares its arguments, and what it runs."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# -- dysen data shapes -------------------------------------------------------------------------


def _configure_data_shapes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (videos/ and manifest.jsonl)")
    p.add_argument("--num", type=int, default=64, help="number of clips (default: 64)")
    p.add_argument(
        "--split",
        default="train",
        choices=["train", "val", "test", "compositional"],
        help="which split; 'compositional' holds colour/shape/action combinations never seen in train",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed; clip i of a split is the same for every run")
    p.add_argument("--size", type=int, default=64, help="frame height and width in pixels (default: 64)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default: 16)")
    p.add_argument("--fps", type=int, default=8, help="frames per second of the written mp4 (default: 8)")
    p.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")


def _run_data_shapes(args: argparse.Namespace) -> int:
    from dysen.data.shapes import ShapesConfig, write_dataset

    config = ShapesConfig(size=args.size, num_frames=args.frames, fps=args.fps)
    manifest = write_dataset(
        args.out, num=args.num, split=args.split, seed=args.seed, config=config, workers=args.workers
    )
    print(f"wrote {args.num} clips and {manifest}")
    return 0


# -- dysen plan --------------------------------------------------------------------------------


def _configure_plan(p: argparse.ArgumentParser) -> None:
    from dysen.planner.build import BACKENDS

    p.add_argument("prompt", nargs="?", help="the text to plan (or use --batch)")
    p.add_argument("--backend", default="rules", choices=BACKENDS, help="planner backend (default: rules, offline)")
    p.add_argument("--model", help="LLM: served model name (openai) or local path / hub id (hf)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per LLM request (default: 60)")
    p.add_argument("--answer-format", default="text", choices=["text", "json"], help="what the LLM is asked for")
    p.add_argument("--replay", type=Path, help="recorded answers (JSONL) for --backend replay")
    p.add_argument("--no-cache", action="store_true", help="do not answer repeated LLM requests from the cache")
    p.add_argument("--cache-path", type=Path, help="LLM cache file (default: ~/.cache/dysen/llm.sqlite)")
    p.add_argument(
        "--demos",
        default="auto",
        help="demonstrations: 'shapes', 'none', a JSONL of gold DSGs, or 'auto' (shapes for LLMs, none for rules)",
    )
    p.add_argument("--policy", type=Path, help="a trained demonstration policy folder (dysen train-dysen)")
    p.add_argument("--shots", type=int, default=8, help="demonstrations per LLM call (default: 8)")
    p.add_argument("--no-fallback", action="store_true", help="fail instead of falling back to the rules planner")
    p.add_argument("--format", default="tree", choices=["tree", "text", "json"], help="how to print the DSG")
    p.add_argument("--out", type=Path, help="write the DSG as JSON here (with --batch: the JSONL of all plans)")
    p.add_argument("--render", type=Path, help="draw the DSG timeline to this picture (.png, .svg, .pdf)")
    p.add_argument("--batch", type=Path, help="plan every line of this file (or JSONL with id and prompt)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel LLM plans with --batch (default: 8)")


def _run_plan(args: argparse.Namespace) -> int:
    from dysen.planner.build import PlannerOptions, build_planner

    if (args.prompt is None) == (args.batch is None):
        raise DysenError("give either a PROMPT or --batch FILE")
    options = PlannerOptions(
        backend=args.backend, model=args.model, base_url=args.base_url, api_key_env=args.api_key_env,
        timeout_s=args.timeout, answer_format=args.answer_format, replay=args.replay, cache=not args.no_cache,
        cache_path=args.cache_path, demos=args.demos, policy=args.policy, shots=args.shots,
        fallback=not args.no_fallback,
    )  # fmt: skip
    planner = build_planner(options)
    if args.batch is not None:
        return _plan_batch(planner, args)
    dsg = planner.plan(args.prompt)
    print(_show_dsg(dsg, args.format))
    if args.out:
        from dysen.dsg.io import write_text_atomic

        write_text_atomic(args.out, dsg.to_json(indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    if args.render:
        from dysen.dsg.render import save_timeline

        print(f"wrote {save_timeline(dsg, args.render, title=args.prompt)}", file=sys.stderr)
    _report_llm_use(planner)
    return 0


def _plan_batch(planner, args: argparse.Namespace) -> int:
    from dysen.planner.batch import plan_many, read_prompts

    if args.out is None:
        raise DysenError("--batch needs --out FILE.jsonl for the plans (reruns skip the ids already done)")
    records = plan_many(planner, read_prompts(args.batch), concurrency=args.concurrency, out=args.out)
    failed = sum(r.error is not None for r in records)
    print(f"planned {len(records) - failed} of {len(records)} prompts into {args.out}", file=sys.stderr)
    _report_llm_use(planner)
    return 1 if failed else 0


def _show_dsg(dsg, style: str) -> str:
    if style == "json":
        return dsg.to_json(indent=2)
    if style == "text":
        return dsg.to_text()
    from dysen.dsg.render import graph_lines

    lines = ["events:"] + [f"  {e.start}v-{e.end}v  {' '.join(p for p in e.triplet if p)}" for e in dsg.events]
    for step, graph in enumerate(dsg.graphs):
        lines += [f"step {step}:"] + [f"  {line}" for line in graph_lines(graph)]
    return "\n".join(lines)


def _report_llm_use(planner) -> None:
    """One line on stderr: LLM calls, repairs, fallbacks, cache hits and tokens (LLM planners only)."""
    from dysen.planner.cache import CachedBackend

    stats = getattr(planner, "stats", None)
    if stats is None:
        return
    parts = [f"{stats.calls} calls", f"{stats.repairs} repairs", f"{stats.fallbacks} fallbacks"]
    transport = planner.backend
    if isinstance(transport, CachedBackend):
        cache = transport.stats
        parts.append(f"cache {cache.hits} hits / {cache.misses} misses ({cache.tokens_saved} tokens saved)")
        if cache.cost_usd:
            parts.append(f"${cache.cost_usd:.4f}")
        transport = transport.inner
    used = getattr(transport, "stats", None)
    if hasattr(used, "prompt_tokens"):
        parts.append(f"{used.prompt_tokens} prompt + {used.completion_tokens} completion tokens")
    print("llm: " + ", ".join(parts), file=sys.stderr)


# -- dysen generate ----------------------------------------------------------------------------


def _configure_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", nargs="?", help="the text to turn into a video (optional with --plan)")
    p.add_argument("--out", type=Path, required=True, help="the video to write: .mp4 or .gif")
    p.add_argument("--gif", action="store_true", help="also write a GIF of the video beside it (<out>.gif)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise; same seed, same video (default: 0)")
    p.add_argument("--guidance", type=float, default=7.5, help="text guidance scale s_text (default: 7.5)")
    p.add_argument("--dsg-guidance", type=float, help="DSG guidance scale s_dsg (default: = --guidance)")
    p.add_argument("--plan", type=Path, help="follow this DSG (.json or tuple text) instead of planning the prompt")
    p.add_argument("--model", type=Path, help="a trained model folder (default: a RANDOM model of --config)")
    p.add_argument("--config", default="shapes-tiny", help="preset name or YAML of the random model (no --model)")
    p.add_argument("--frames", type=int, help="number of frames (default: the model's)")
    p.add_argument("--sampler", choices=["ddim", "dpmpp", "euler"], help="default: the model's (ddim)")
    p.add_argument("--eta", type=float, help="DDIM noise: 0 deterministic ODE, 1 as LVDM (default: the model's, 0)")


def _run_generate(args: argparse.Namespace) -> int:
    from dysen.config import load_config
    from dysen.data.video import write_video
    from dysen.dsg.io import read_dsgs, write_text_atomic
    from dysen.dsg.render import save_timeline
    from dysen.pipeline import DysenVDMPipeline

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
    if args.model is not None:
        pipe = DysenVDMPipeline.from_pretrained(args.model)
    else:
        pipe = DysenVDMPipeline.from_config(load_config(args.config))
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


# -- dysen train-dysen -------------------------------------------------------------------------


def _configure_train_dysen(p: argparse.ArgumentParser) -> None:
    from dysen.planner.build import BACKENDS

    p.add_argument("--out", type=Path, required=True, help="run folder: epoch checkpoints, best/, final/")
    p.add_argument(
        "--data", default="shapes", help="gold DSGs: 'shapes' (Dynamic Shapes train) or a JSONL of caption + dsg"
    )
    p.add_argument("--preset", default="paper", choices=["paper", "tiny"], help="paper: 80/8/20 epochs; tiny: CI")
    p.add_argument("--candidates", type=int, help="candidate pool size (paper: 80)")
    p.add_argument("--shots", type=int, help="demonstrations per prompt (paper: 8)")
    p.add_argument("--epochs", type=int, help="epochs (paper: 20)")
    p.add_argument("--batch-size", type=int, help="prompts per update (paper: 20)")
    p.add_argument("--train-number", type=int, help="training prompts (paper: 640)")
    p.add_argument("--lr", type=float, help="Adam learning rate (paper: 1e-3)")
    p.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"], help="frozen prompt embeddings")
    p.add_argument("--backend", default="rules", choices=BACKENDS, help="the planner whose demonstrations are chosen")
    p.add_argument("--model", help="LLM: served model name (openai) or local path / hub id (hf)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint")
    p.add_argument("--replay", type=Path, help="recorded answers (JSONL) for --backend replay")


def _run_train_dysen(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from dysen.planner.build import PlannerOptions, build_planner
    from dysen.planner.demos import DemoBank
    from dysen.planner.embed import HashingEmbedder, SentenceEmbedder
    from dysen.planner.rl import PAPER_POLICY, TINY_POLICY, train_policy

    config = PAPER_POLICY if args.preset == "paper" else TINY_POLICY
    overrides = {k: getattr(args, k) for k in ("candidates", "shots", "epochs", "batch_size", "train_number", "lr")}
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    needed = config.candidates + config.train_number
    if args.data == "shapes":
        bank = DemoBank.from_shapes(needed, split="train", seed=0)
    else:
        bank = DemoBank.from_jsonl(Path(args.data))
    demos = list(bank)
    options = PlannerOptions(
        backend=args.backend, model=args.model, base_url=args.base_url, replay=args.replay, demos="none"
    )
    planner = build_planner(options)
    result = train_policy(
        config,
        candidates=demos[: config.candidates],
        train=demos[config.candidates : needed],
        env=lambda prompt, shown: planner.plan(prompt, demonstrations=shown),
        embedder=SentenceEmbedder() if args.embedder == "minilm" else HashingEmbedder(),
        out_dir=args.out,
    )
    print(f"best mean reward {result.best_reward:.4f} at epoch {result.best_epoch}; policy in {args.out / 'final'}")
    return 0


# -- dysen dsg ... -----------------------------------------------------------------------------


def _configure_dsg_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file",
        type=Path,
        help="a DSG as .json, several as .jsonl (a DSG or a record with a 'dsg' field per line), or tuple text",
    )


def _run_dsg_validate(args: argparse.Namespace) -> int:
    from dysen.dsg.io import read_dsgs

    count = 0
    for where, dsg in read_dsgs(args.file):
        count += 1
        print(f"{where}: ok ({len(dsg.events)} events, {dsg.num_steps} steps)")
    print(f"{count} valid DSG(s) in {args.file}")
    return 0


def _configure_nothing(p: argparse.ArgumentParser) -> None:
    del p


def _run_dsg_schema(args: argparse.Namespace) -> int:
    from dysen.dsg import dsg_json_schema

    print(json.dumps(dsg_json_schema(), indent=2))
    return 0


# -- subcommands of later releases --------------------------------------------------------------


def _configure_pending(p: argparse.ArgumentParser) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _pending(what: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise NotBuiltError(f"'dysen {args.command}' is not built yet: it needs {what}")

    return run


# -- dysen dsg annotate / dysen data shards ----------------------------------------------------


def _add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    from dysen.data.datasets import DATASETS

    p.add_argument("--dataset", required=True, choices=DATASETS, help="the corpus format under --root")
    p.add_argument("--root", type=Path, required=True, help="the dataset folder, e.g. dataset/activityNet")
    p.add_argument("--split", default="train", help="train/test/all (UCF-101), train/validate/test (MSR-VTT), "
                   "train/val_1/val_2 (ActivityNet), the CSV name part (WebVid: val -> *val*.csv)")  # fmt: skip


def _configure_dsg_annotate(p: argparse.ArgumentParser) -> None:
    from dysen.planner.build import BACKENDS

    _add_dataset_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="JSONL of {id, dsg, source}; reruns skip the ids done")
    p.add_argument("--mode", choices=["timestamps", "captions", "vlm"],
                   help="timestamped sentences, captions through a planner, or frames through a VLM "
                   "(default: timestamps for activitynet, else captions)")  # fmt: skip
    p.add_argument("--steps", type=int, default=8, help="M, time steps per video (timestamps and vlm; default: 8)")
    p.add_argument("--shard", default="1/1", help="annotate only shard i of n, e.g. 2/8 (default: 1/1)")
    p.add_argument("--concurrency", type=int, default=4, help="videos annotated at once (default: 4)")
    p.add_argument("--limit", type=int, help="only the first N videos of the split")
    p.add_argument("--backend", default="rules", choices=BACKENDS, help="planner of timestamps/captions modes")
    p.add_argument("--model", help="LLM (planner backends openai/hf) or VLM (--mode vlm) served model name")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM/VLM request (default: 120)")
    p.add_argument("--no-cache", action="store_true", help="do not answer repeated planner requests from the cache")
    p.add_argument("--image-size", type=int, default=336, help="short side of the frames sent to the VLM")
    p.add_argument("--image-format", default="png", choices=["png", "jpeg"], help="how frames are sent to the VLM")


def _run_dsg_annotate(args: argparse.Namespace) -> int:
    from dysen.data import annotate as an
    from dysen.data.datasets import load_records

    records = load_records(args.dataset, args.root, args.split)[: args.limit]
    mode = args.mode or ("timestamps" if args.dataset == "activitynet" else "captions")
    if mode == "vlm":
        if not args.model:
            raise DysenError("--mode vlm needs --model (the served vision-language model) and usually --base-url")
        options = an.VLMOptions(
            args.model, base_url=args.base_url, api_key_env=args.api_key_env, timeout_s=args.timeout,
            steps=args.steps, image_size=args.image_size, image_format=args.image_format,
        )  # fmt: skip
        annotator, source = an.VLMAnnotator(options), f"vlm:{args.model}"
    else:
        from dysen.planner.build import PlannerOptions, build_planner

        planner = build_planner(PlannerOptions(
            backend=args.backend, model=args.model, base_url=args.base_url, api_key_env=args.api_key_env,
            timeout_s=args.timeout, cache=not args.no_cache,
        ))  # fmt: skip
        timed = mode == "timestamps"
        annotator = an.timestamp_annotator(planner, args.steps) if timed else an.caption_annotator(planner)
        source = f"{mode}:{args.backend}" + (f":{args.model}" if args.model else "")
    shard = an.parse_shard(args.shard)
    report = an.annotate(records, annotator, args.out, source=source, shard=shard, concurrency=args.concurrency)
    print(f"shard {args.shard}: {report.total} videos, {report.already_done} already done, {report.annotated} "
          f"annotated, {report.failed} failed -> {args.out}", file=sys.stderr)  # fmt: skip
    return 1 if report.failed else 0


def _configure_data_shards(p: argparse.ArgumentParser) -> None:
    _add_dataset_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="folder of shard-%%06d.tar (+ .json sidecars)")
    p.add_argument("--gold", type=Path, help="gold DSGs (JSONL of id + dsg, from 'dysen dsg annotate')")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default: 16)")
    p.add_argument("--stride", type=int, help="frames between samples (default: 1; whole video for activitynet)")
    p.add_argument("--whole-video", action="store_true", help="spread the frames over the whole video")
    p.add_argument("--size", type=int, default=256, help="short-side resize + centre crop (default: 256)")
    p.add_argument("--format", default="mp4", choices=["mp4", "npy"], help="mp4 (small) or npy (exact uint8)")
    p.add_argument("--max-count", type=int, default=1000, help="clips per shard (default: 1000)")
    p.add_argument("--max-bytes", type=float, default=1e9, help="bytes per shard at most, about (default: 1e9)")
    p.add_argument("--prefix", default="shard", help="shard file name prefix (default: shard)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes decoding videos (default: 0)")


def _run_data_shards(args: argparse.Namespace) -> int:
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


COMMANDS: dict[str, Command] = {
    "generate": Command(
        "text (or a DSG) -> video with Dysen-VDM, plus the DSG it followed (JSON and a timeline picture)",
        _configure_generate,
        _run_generate,
    ),
    "plan": Command(
        "text -> dynamic scene graph with the Dysen planner (rules offline, or any LLM)",
        _configure_plan,
        _run_plan,
    ),
    "data shapes": Command(
        "write Dynamic Shapes clips (mp4) with gold DSGs and a JSONL manifest",
        _configure_data_shapes,
        _run_data_shapes,
    ),
    "data shards": Command(
        "write a dataset's clips, captions and gold DSGs into resumable WebDataset shards",
        _configure_data_shards,
        _run_data_shards,
    ),
    "dsg validate": Command(
        "check DSG files (JSON, JSONL or the paper's tuple text) and summarise them",
        _configure_dsg_validate,
        _run_dsg_validate,
    ),
    "dsg schema": Command("print the JSON Schema of a dynamic scene graph", _configure_nothing, _run_dsg_schema),
    "dsg annotate": Command(
        "make gold DSGs for a video dataset from timestamped captions, captions (any planner) or frames (a VLM)",
        _configure_dsg_annotate,
        _run_dsg_annotate,
    ),
    "train-vae": Command(
        "stage 1: train the video autoencoder [not built yet]",
        _configure_pending,
        _pending("the training loop (dysen.train)"),
    ),
    "train-vdm": Command(
        "stage 2: train the 3D-UNet + RGTrm with gold DSGs [not built yet]",
        _configure_pending,
        _pending("the training loop (dysen.train)"),
    ),
    "train-dysen": Command(
        "stage 3: train Dysen's demonstration selector by reinforcement learning (imagination rationality)",
        _configure_train_dysen,
        _run_train_dysen,
    ),
    "finetune": Command(
        "fine-tune a trained Dysen-VDM on in-domain data [not built yet]",
        _configure_pending,
        _pending("the training loop (dysen.train)"),
    ),
    "eval": Command(
        "FVD/KVD, IS, CLIPSIM, FID and the dynamics benchmark [not built yet]",
        _configure_pending,
        _pending("the evaluation suite (dysen.eval)"),
    ),
    "demo": Command(
        "the web demo: prompt -> editable plan -> video [not built yet]",
        _configure_pending,
        _pending("the web demo (dysen.web)"),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of ``COMMANDS``; two-word names ('data shapes') become nested subcommands."""
    parser = argparse.ArgumentParser(
        prog="dysen",
        description="Dysen-VDM: dynamics-aware text-to-video diffusion with an LLM dynamic scene manager.",
    )
    parser.add_argument("--version", action="version", version=f"dysen {__version__}")
    top = parser.add_subparsers(dest="group", metavar="<command>", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, command in COMMANDS.items():
        head, _, tail = name.partition(" ")
        if not tail:
            sub = top.add_parser(head, help=command.help, description=command.help)
        else:
            if head not in groups:
                group = top.add_parser(head, help=f"{head} tools: " + _group_help(head))
                groups[head] = group.add_subparsers(dest="subcommand", metavar="<subcommand>", required=True)
            sub = groups[head].add_parser(tail, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(command=name)
    return parser


def _group_help(head: str) -> str:
    return ", ".join(name.partition(" ")[2] for name in COMMANDS if name.startswith(head + " "))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except DysenError as err:
        print(f"dysen: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dysen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
