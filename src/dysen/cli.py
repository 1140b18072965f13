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


COMMANDS: dict[str, Command] = {
    "generate": Command(
        "text (or a DSG) -> video with Dysen-VDM [not built yet]",
        _configure_pending,
        _pending("the Dysen-VDM model and pipeline (dysen.models, dysen.pipeline)"),
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
    "dsg validate": Command(
        "check DSG files (JSON, JSONL or the paper's tuple text) and summarise them",
        _configure_dsg_validate,
        _run_dsg_validate,
    ),
    "dsg schema": Command("print the JSON Schema of a dynamic scene graph", _configure_nothing, _run_dsg_schema),
    "dsg annotate": Command(
        "make gold DSGs for a video dataset (timestamps, captions or a VLM) [not built yet]",
        _configure_pending,
        _pending("the gold DSG annotation tools (dysen.data.annotate)"),
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
