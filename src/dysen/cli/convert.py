"""``dysen convert lvdm``: one of LVDM's released checkpoints -> a Dysen-VDM pipeline folder (``dysen.convert``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure_convert_lvdm(p: argparse.ArgumentParser) -> None:
    from dysen.cli.argtypes import nonnegative_int

    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="LVDM's file, e.g. t2v.ckpt")
    p.add_argument("--kind", choices=["t2v"], required=True, help="t2v: LVDM's text-to-video t2v.ckpt")
    p.add_argument("--out", type=Path, required=True, help="the pipeline folder to write")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle a file that weights_only loading refuses (it can run code: only for a source you trust)",
    )
    p.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="PREFIX",
        help="drop the file's tensors whose names start with PREFIX (repeatable; listed in conversion.json); any "
        "other tensor the network does not know stops the conversion",
    )
    p.add_argument(
        "--tokenizer",
        default="openai/clip-vit-large-patch14",
        help="the CLIP tokenizer (a folder or hub id, kept by reference: LVDM's file holds none)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the fresh DSG path and RGTrm")


def run_convert_lvdm(args: argparse.Namespace) -> int:
    from dysen.convert.lvdm import T2VParts, convert_t2v

    def warn(text: str) -> None:
        print(text, file=sys.stderr)

    report = convert_t2v(
        args.checkpoint, args.out, parts=T2VParts(tokenizer=args.tokenizer), trust=args.trust_checkpoint,
        drop=args.drop, seed=args.seed, warn=warn,
    )  # fmt: skip
    for name, count in report["converted"].items():
        print(f"{name}: {count} tensors, {report['parameters'][name]:,} parameters from {report['source']}")
    for group, count in report["dropped"].items():
        print(f"dropped {group}: {count} tensors")
    print(f"wrote {args.out} (DSG path and RGTrm fresh, seed {args.seed}); sampling defaults are LVDM's")
    return 0
