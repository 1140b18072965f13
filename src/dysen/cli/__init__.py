"""``dysen <subcommand>``: one table maps each subcommand to the function that runs it.

The runners live beside this table by domain (``data``, ``plan``, ``generate``, ``train``, ``launch``, ``model``,
``eval``, ``demo``, ``convert``) and import what they need only when they run, so building the parser (``dysen
--help``) loads no torch. Flag groups that several subcommands share are declared once, in ``options``; argument
types (seeds,
finite numbers, positive counts) in ``argtypes``. Expected failures print one line and exit non-zero; nothing
prints a traceback for bad input (``--debug`` shows it). Exit codes (``EXIT_CODES``):

* 0 — done; 1 — an expected failure: ``DysenError``, a file or folder that cannot be read or written
  (``OSError``), a value that failed validation (``ValueError``, ``UnicodeDecodeError``), input nested too deeply
  (``RecursionError``) or too large for memory (``MemoryError``); 2 — bad usage (argparse's message);
* 130 — interrupted by SIGINT (Ctrl-C); 143 — stopped by SIGTERM (a training run checkpoints first and says so);
  141 — stdout closed by its reader (``| head``).
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from dysen import __version__
from dysen.cli import convert, data, demo, generate, launch, model, plan, train
from dysen.cli import eval as evaluate
from dysen.cli.options import HelpFormatter
from dysen.errors import DysenError


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, how it declares its arguments, and what it runs."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "generate": Command(
        "text (or a DSG) -> video with Dysen-VDM, plus the DSG it followed (JSON and a timeline picture)",
        generate.configure_generate,
        generate.run_generate,
    ),
    "plan": Command(
        "text -> dynamic scene graph with the Dysen planner (rules offline, or any LLM)",
        plan.configure_plan,
        plan.run_plan,
    ),
    "model show": Command(
        "print a saved model's settings: video size, networks, sampling defaults, planner",
        model.configure_model_show,
        model.run_model_show,
    ),
    "model set-defaults": Command(
        "change a saved model's sampling defaults (steps, guidance, DSG guidance, eta, sampler): its model_index.json",
        model.configure_model_set_defaults,
        model.run_model_set_defaults,
    ),
    "model export": Command(
        "write a training checkpoint (any step kept, EMA or raw weights) as a model folder",
        model.configure_model_export,
        model.run_model_export,
    ),
    "convert lvdm": Command(
        "LVDM's released checkpoints (t2v.ckpt; ae_*.ckpt) -> dysen folders in safetensors (DSG path fresh)",
        convert.configure_convert_lvdm,
        convert.run_convert_lvdm,
    ),
    "data shapes": Command(
        "write Dynamic Shapes clips (mp4) with gold DSGs and a JSONL manifest",
        data.configure_data_shapes,
        data.run_data_shapes,
    ),
    "data shards": Command(
        "write a dataset's clips, captions and gold DSGs into resumable WebDataset shards",
        data.configure_data_shards,
        data.run_data_shards,
    ),
    "dsg validate": Command(
        "check DSG files (JSON, JSONL or the paper's tuple text) and summarise them",
        data.configure_dsg_validate,
        data.run_dsg_validate,
    ),
    "dsg schema": Command(
        "print the JSON Schema of a dynamic scene graph", data.configure_nothing, data.run_dsg_schema
    ),
    "dsg annotate": Command(
        "make gold DSGs for a video dataset from timestamped captions, captions (any planner) or frames (a VLM)",
        data.configure_dsg_annotate,
        data.run_dsg_annotate,
    ),
    "dsg boxes": Command(
        "add a tracker's boxes (MOTChallenge files) to gold DSGs, for the DSG adapter and layout grounding",
        data.configure_dsg_boxes,
        data.run_dsg_boxes,
    ),
    "train-vae": Command(
        "stage 1: train the 3D KL video autoencoder (L1 + KL)",
        train.configure_train_vae,
        train.run_train_vae,
    ),
    "train-vdm": Command(
        "stage 2: train the 3D-UNet + RGTrm on the frozen autoencoder's latents with gold DSGs",
        train.configure_train_vdm,
        train.run_train_vdm,
    ),
    "train-backbone": Command(
        "train a Wan transformer text-only by flow matching into a diffusers-format backbone folder (preview)",
        train.configure_train_backbone,
        train.run_train_backbone,
    ),
    "train-adapter": Command(
        "train a DSG adapter (RGTrm + gated attention) on a frozen backbone (Wan, UNet3D) with gold DSGs (preview)",
        train.configure_train_adapter,
        train.run_train_adapter,
    ),
    "launch": Command(
        "run a training command in N processes per machine (DDP, on GPUs or the CPU) through torchrun; prints the "
        "torchrun and accelerate launch lines",
        launch.configure_launch,
        launch.run_launch,
    ),
    "train-dysen": Command(
        "stage 3: train Dysen's demonstration selector by reinforcement learning (imagination rationality)",
        plan.configure_train_dysen,
        plan.run_train_dysen,
    ),
    "finetune": Command(
        "stage 4: fine-tune a trained Dysen-VDM pipeline on in-domain data with gold DSGs",
        train.configure_finetune,
        train.run_finetune,
    ),
    "eval": Command(
        "evaluate: the dynamics benchmark and ablations on Dynamic Shapes, zero-shot UCF-101 / MSR-VTT (reports)",
        evaluate.configure_eval,
        evaluate.run_eval,
    ),
    "demo": Command(
        "the web demo: prompt -> editable plan -> video, in a Gradio app on 127.0.0.1",
        demo.configure_demo,
        demo.run_demo,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of ``COMMANDS``; two-word names ('data shapes') become nested subcommands."""
    parser = argparse.ArgumentParser(
        prog="dysen",
        description="Dysen-VDM: dynamics-aware text-to-video diffusion with an LLM dynamic scene manager.",
    )
    parser.add_argument("--version", action="version", version=f"dysen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (for bug reports)")
    top = parser.add_subparsers(dest="group", metavar="<command>", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, command in COMMANDS.items():
        head, _, tail = name.partition(" ")
        if not tail:
            sub = top.add_parser(head, help=command.help, description=command.help, formatter_class=HelpFormatter)
        else:
            if head not in groups:
                group = top.add_parser(head, help=f"{head} tools: " + _group_help(head))
                groups[head] = group.add_subparsers(dest="subcommand", metavar="<subcommand>", required=True)
            sub = groups[head].add_parser(
                tail, help=command.help, description=command.help, formatter_class=HelpFormatter
            )
        command.configure(sub)
        sub.set_defaults(command=name)
    return parser


def _group_help(head: str) -> str:
    return ", ".join(name.partition(" ")[2] for name in COMMANDS if name.startswith(head + " "))


EXIT_CODES = {"ok": 0, "error": 1, "usage": 2, "sigint": 130, "broken_pipe": 141, "sigterm": 143}
"""What ``dysen`` exits with (see the module docstring); a training run stopped by a signal exits 128 + signal."""

EXPECTED = (DysenError, OSError, ValueError, RecursionError, MemoryError)
"""Failures that bad input or the environment cause (UnicodeDecodeError is a ValueError): one line, exit 1."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except BrokenPipeError:  # e.g. `dysen plan … | head`: the reader left; stop quietly as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CODES["broken_pipe"]
    except EXPECTED as err:
        if args.debug:
            raise
        print(f"dysen: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_CODES["error"]
    except KeyboardInterrupt:
        print("dysen: interrupted", file=sys.stderr)
        return EXIT_CODES["sigint"]


def _one_line(err: BaseException) -> str:
    """The error as one line: its message (or type, when it has none) with line breaks and other unprintable
    characters escaped (they may come from the input: a key holding '\\r', a terminal escape); a RecursionError or
    MemoryError names the input as too deep or too large."""
    if isinstance(err, RecursionError):
        return "the input is nested too deeply to read"
    if isinstance(err, MemoryError):
        return f"not enough memory ({str(err) or 'the input is too large'}): use smaller sizes"
    text = str(err)
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text or type(err).__name__)
