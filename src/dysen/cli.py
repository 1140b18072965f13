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
        "text -> dynamic scene graph with the Dysen planner [not built yet]",
        _configure_pending,
        _pending("the Dysen planner and its LLM backends (dysen.planner)"),
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
        "stage 3: train the RL demonstration selector of Dysen [not built yet]",
        _configure_pending,
        _pending("the RL demonstration selector (dysen.planner.rl)"),
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
