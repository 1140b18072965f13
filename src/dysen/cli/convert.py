"""``dysen convert lvdm``: one of LVDM's released checkpoints -> a Dysen-VDM pipeline folder (``dysen.convert``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dysen.errors import DysenError

if TYPE_CHECKING:
    from dysen.models.vae import KLVideoAutoencoderConfig


def configure_convert_lvdm(p: argparse.ArgumentParser) -> None:
    from dysen.cli.argtypes import finite_float, nonnegative_int

    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="LVDM's file, e.g. t2v.ckpt")
    p.add_argument(
        "--kind",
        choices=["t2v", "short-ae", "short-unet"],
        required=True,
        help="t2v: LVDM's text-to-video t2v.ckpt -> a pipeline folder; short-ae: a 3D autoencoder ae_*.ckpt -> "
        "DIR/vae (for train-vdm --vae DIR); short-unet: short_*.ckpt (UNet + its AE) -> a pipeline folder "
        "(preset lvdm-short-ucf101's networks)",
    )
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
    p.add_argument(
        "--dataset",
        choices=["sky", "taichi", "ucf101"],
        help="short kinds: the latent scale/shift of LVDM's config for this dataset (its files do not hold them)",
    )
    p.add_argument(
        "--scale", type=finite_float, help="short kinds: LVDM's latent scale_factor (with --shift; not --dataset)"
    )
    p.add_argument(
        "--shift", type=finite_float, help="short kinds: LVDM's latent shift_factor, z' = scale * (z + shift)"
    )


def run_convert_lvdm(args: argparse.Namespace) -> int:
    import dataclasses

    from dysen.config import load_config
    from dysen.convert.lvdm import T2VParts, convert_short_ae, convert_short_unet, convert_t2v

    def warn(text: str) -> None:
        print(text, file=sys.stderr)

    if args.kind == "t2v":
        if args.dataset or args.scale is not None or args.shift is not None:
            raise DysenError("--dataset/--scale/--shift are for the short kinds: t2v's scale 0.18215 is in its VAE")
        report = convert_t2v(
            args.checkpoint, args.out, parts=T2VParts(tokenizer=args.tokenizer), trust=args.trust_checkpoint,
            drop=args.drop, seed=args.seed, warn=warn,
        )  # fmt: skip
    elif args.kind == "short-ae":
        report = convert_short_ae(
            args.checkpoint, args.out, config=_short_ae_config(args), trust=args.trust_checkpoint, drop=args.drop,
            warn=warn,
        )  # fmt: skip
    else:
        base = load_config("lvdm-short-ucf101")
        config = dataclasses.replace(base, vae=dataclasses.replace(base.vae, kl3d=_short_ae_config(args)))
        report = convert_short_unet(
            args.checkpoint, args.out, config=config, trust=args.trust_checkpoint, drop=args.drop, seed=args.seed,
            warn=warn,
        )  # fmt: skip
    for name, count in report["converted"].items():
        print(f"{name}: {count} tensors, {report['parameters'][name]:,} parameters from {report['source']}")
    for group, count in report["dropped"].items():
        print(f"dropped {group}: {count} tensors")
    if args.kind != "short-ae":
        print(f"wrote {args.out} (DSG path and RGTrm fresh, seed {args.seed}); sampling defaults are LVDM's")
    else:
        print(f"wrote {args.out / 'vae'} with latents scaled as LVDM's {report['latent_normalisation']}")
    return 0


def _short_ae_config(args: argparse.Namespace) -> KLVideoAutoencoderConfig:
    """LVDM's 3D AE with the dataset's latent scale/shift: ``--dataset``, or ``--scale`` and ``--shift``."""
    from dysen.convert.lvdm import LVDM_LATENT_STATS, lvdm_ae_config

    given = args.scale is not None, args.shift is not None
    if args.dataset and any(given):
        raise DysenError("give --dataset or --scale/--shift, not both")
    if args.dataset:
        return lvdm_ae_config(*LVDM_LATENT_STATS[args.dataset])
    if not all(given):
        raise DysenError(
            "the short kinds need the dataset's latent scale and shift (LVDM keeps them in its configs, not its "
            "files): pass --dataset sky|taichi|ucf101, or --scale and --shift"
        )
    if not args.scale > 0:
        raise DysenError(f"--scale must be positive, got {args.scale}")
    return lvdm_ae_config(args.scale, args.shift)
