"""``dysen plan`` and ``dysen train-dysen``: Dysen, the planner, and its RL demonstration selector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dysen.cli.argtypes import output_file, positive_float, positive_int, seed
from dysen.errors import DysenError

# -- dysen plan --------------------------------------------------------------------------------


def configure_plan(p: argparse.ArgumentParser) -> None:
    from dysen.cli.options import add_deprecated_planner_aliases, add_planner_flags

    p.add_argument("prompt", nargs="?", help="the text to plan (or use --batch)")
    add_planner_flags(p, own=True)
    add_deprecated_planner_aliases(p)
    p.add_argument(
        "--layout",
        type=seed,
        metavar="SEED",
        help="also imagine each object's boxes as 'dysen generate --seed SEED' does (to edit, then 'generate --plan')",
    )
    p.add_argument("--format", default="tree", choices=["tree", "text", "json"], help="how to print the DSG")
    p.add_argument("--out", type=output_file, help="write the DSG as JSON here (with --batch: the JSONL of all plans)")
    p.add_argument("--render", type=output_file, help="draw the DSG timeline to this picture (.png, .svg, .pdf)")
    p.add_argument("--batch", type=Path, help="plan every line of this file (or JSONL with id and prompt)")
    p.add_argument("--concurrency", type=positive_int, default=8, help="parallel LLM plans with --batch")


def run_plan(args: argparse.Namespace) -> int:
    from dysen.cli.options import own_planner
    from dysen.planner.build import build_planner

    if (args.prompt is None) == (args.batch is None):
        raise DysenError("give either a PROMPT or --batch FILE")
    if args.batch is not None and args.layout is not None:
        raise DysenError("--layout plans one PROMPT; for a batch, 'dysen generate --plan' imagines the boxes itself")
    options = own_planner(args)
    planner = build_planner(options)
    if args.batch is not None:
        return _plan_batch(planner, args)
    dsg = planner.plan(args.prompt)
    if args.layout is not None:
        from dysen.planner.layout import imagine_layout

        dsg = imagine_layout(dsg, seed=args.layout)
    print(_show_dsg(dsg, args.format))
    if args.out:
        from dysen.atomic import write_text_atomic

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
    for step, boxes in enumerate(dsg.boxes or ()):
        where = "last frame" if step == dsg.num_steps else f"step {step}"
        lines += [f"boxes at {where}:"] + [f"  {_box_line(box)}" for box in boxes]
    return "\n".join(lines)


def _box_line(box) -> str:
    turn = f", turned {box.angle:.2f} rad" if box.angle else ""
    return f"{box.object}: x {box.x0:.2f}-{box.x1:.2f}, y {box.y0:.2f}-{box.y1:.2f}{turn}"


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

_TRAIN_DYSEN_PLANNER = ("planner", "planner_model", "base_url", "api_key_env", "timeout", "answer_format", "replay",
                        "no_cache", "cache_path", "no_fallback")  # fmt: skip
"""The planner flags of train-dysen: all but --demos/--policy/--shots, which the policy being trained decides."""


def configure_train_dysen(p: argparse.ArgumentParser) -> None:
    from dysen.cli.options import add_deprecated_planner_aliases, add_planner_flags

    p.add_argument("--out", type=Path, required=True, help="run folder: epoch checkpoints, best/, final/")
    p.add_argument(
        "--data", default="shapes", help="gold DSGs: 'shapes' (Dynamic Shapes train) or a JSONL of caption + dsg"
    )
    p.add_argument("--preset", default="paper", choices=["paper", "tiny"], help="paper: 80/8/20 epochs; tiny: CI")
    p.add_argument("--candidates", type=positive_int, help="candidate pool size (paper: 80)")
    p.add_argument("--shots", type=positive_int, help="demonstrations per prompt (paper: 8)")
    p.add_argument("--epochs", type=positive_int, help="epochs (paper: 20)")
    p.add_argument("--batch-size", type=positive_int, help="prompts per update (paper: 20)")
    p.add_argument("--train-number", type=positive_int, help="training prompts (paper: 640)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (paper: 0.001)")
    p.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"], help="frozen prompt embeddings")
    add_planner_flags(p, own=True, only=_TRAIN_DYSEN_PLANNER, title="the planner whose demonstrations are chosen")
    add_deprecated_planner_aliases(p)
    p.add_argument(
        "--attach",
        type=Path,
        metavar="MODEL",
        help="then copy the final policy into this Dysen-VDM model folder (as policy/), whose planner then uses it "
        "by default",
    )


def run_train_dysen(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from dysen.cli.options import own_planner
    from dysen.pipeline import attach_policy, read_pipeline_config
    from dysen.planner.build import build_planner
    from dysen.planner.demos import DemoBank
    from dysen.planner.embed import HashingEmbedder, SentenceEmbedder
    from dysen.planner.rl import PAPER_POLICY, TINY_POLICY, train_policy

    if args.attach is not None:
        read_pipeline_config(args.attach)  # refuse a wrong folder before training, not after
    config = PAPER_POLICY if args.preset == "paper" else TINY_POLICY
    overrides = {k: getattr(args, k) for k in ("candidates", "shots", "epochs", "batch_size", "train_number", "lr")}
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    needed = config.candidates + config.train_number
    if args.data == "shapes":
        bank = DemoBank.from_shapes(needed, split="train", seed=0)
    else:
        bank = DemoBank.from_jsonl(Path(args.data))
    demos = list(bank)
    options = own_planner(args, demos="none")
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
    if args.attach is not None:
        print(f"attached: {attach_policy(args.attach, args.out / 'final')}")
    return 0
