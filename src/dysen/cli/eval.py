"""``dysen eval``: the dynamics benchmark on Dynamic Shapes, its ablations, and the zero-shot protocols.

Writes ``report.json``, ``report.md`` and PNG plots into ``--out`` (``dysen.eval.report``). Heavy imports
happen only when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

from dysen.cli.argtypes import (
    adapter_dir,
    device,
    float_range,
    nonnegative_floats,
    nonnegative_int,
    positive_float,
    positive_int,
    seed,
)
from dysen.errors import DysenError
from dysen.eval.references import REFERENCES

NUM_REAL = 2048  # = dysen.eval.protocols.NUM_REAL (checked by tests/test_cli_defaults.py; it imports numpy)
I3D_BN_EPS = 1e-5  # = dysen.eval.features.i3d.TATS_BN_EPS, likewise (it imports torch)

PROTOCOLS = ("shapes", "ucf101", "msrvtt")


def _named_path(text: str) -> tuple[str, Path]:
    """'NAME=PATH' or 'PATH' (named after the folder)."""
    name, sep, path = text.partition("=")
    if not sep:
        return Path(text).name or text, Path(text)
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH or PATH, got {text!r}")
    return name, Path(path)


def _named_backbone(text: str) -> tuple[str, Path]:
    """'NAME=DIR' or 'DIR', DIR a folder or a shipped backbone's name (``shapes-wan-tiny``)."""
    from dysen.cli.argtypes import backbone_dir

    name, path = _named_path(text)
    return name, backbone_dir(str(path))


def configure_eval(p: argparse.ArgumentParser) -> None:
    from dysen.cli.options import add_planner_flags, add_sampling_flags
    from dysen.cli.world import add_world_flags

    p.add_argument("--protocol", choices=PROTOCOLS, default="shapes", help="what to evaluate (default: shapes)")
    p.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and the plots")
    what = p.add_argument_group("what to evaluate (default: the model 'dysen generate' uses for --config)")
    what.add_argument(
        "--model",
        type=_named_path,
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="a trained pipeline folder, one row each (repeatable)",
    )
    what.add_argument(
        "--videos",
        type=_named_path,
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="score videos already written instead of generating (repeatable); shapes: <id>.mp4 with "
        "gold.jsonl or <id>.dsg.json beside; zero-shot: samples.jsonl + <id>.mp4",
    )
    what.add_argument(
        "--backbone",
        type=_named_backbone,
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="shapes: a pretrained backbone (local diffusers folder of a Wan or ModelScope model, or the shipped "
        "shapes-wan-tiny), a row per "
        "--control-strength (repeatable); frames: the fewest it takes >= --config's 16 (Wan: 17), all scored",
    )
    what.add_argument("--config", default="shapes-tiny", help="preset of the model without --model and of the renders")
    what.add_argument("--real", action="store_true", help="shapes: add the ground-truth renders (scorer's ceiling)")
    what.add_argument(
        "--autoencoder-ceiling",
        action="store_true",
        help="shapes: add the renders encoded and decoded by the (first) model's autoencoder (that model's ceiling)",
    )
    what.add_argument(
        "--ablation",
        action="store_true",
        help="shapes: the ablation table: renders, full model (--model), text-only backbone "
        "(--text-only), no imagination and random demonstrations (of the full model's planner, or --planner's)",
    )
    what.add_argument(
        "--text-only",
        type=Path,
        metavar="DIR",
        help="the text-only backbone of --ablation (default, beside the shipped model: the shipped "
        "<config>-text-only)",
    )
    what.add_argument("--gold", type=Path, help="shapes --videos: JSONL of {id, dsg} to score against")
    what.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE.jsonl",
        help="a prompt set with expected events ({id, split, prompt, events}; see the README): each prompt planned, "
        "generated (seed SEED + i) and scored against its plan; an event counts if planned right and drawn",
    )
    clips = p.add_argument_group("which captions (shapes; default: test clips 0.. of the default world)")
    clips.add_argument(
        "--split", choices=("test", "val", "train", "compositional"), default="test",
        help="Dynamic Shapes split of the captions (choose settings and releases on val, report on test)",
    )  # fmt: skip
    clips.add_argument("--first", type=nonnegative_int, default=0, help="index of the first clip of the split")
    add_world_flags(p)
    sample = p.add_argument_group("sampling")
    sample.add_argument(
        "--num", type=int, help="videos per row (shapes: 100; ucf101: 10000; msrvtt: all 2990; --prompts: all)"
    )
    add_sampling_flags(sample, ("steps", "guidance", "dsg_guidance", "sampler", "eta"), note=" of each model")
    sample.add_argument("--seed", type=seed, default=0, help="video i uses seed SEED + i; also the clip/caption seed")
    sample.add_argument(
        "--plan",
        choices=["planner", "gold"],
        default="planner",
        help="shapes: plan each caption (planner) or follow its gold DSG (gold, the oracle plan)",
    )
    sample.add_argument("--device", type=device, default="cpu", help="torch device of the models (default: cpu)")
    sample.add_argument("--save-videos", action="store_true", help="keep the generated videos under OUT/videos/")
    sample.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_backbone_flags(p)
    add_planner_flags(p, own=False, title="planner (see 'dysen plan --help'; of a backbone: rules unless --planner)")
    zero = p.add_argument_group("zero-shot protocols (ucf101, msrvtt)")
    zero.add_argument("--data", type=Path, help="the dataset folder (UCF-101/ + ucfTrainTestlist/, or MSR-VTT)")
    zero.add_argument(
        "--reference", choices=tuple(REFERENCES), metavar="NAME",
        help="a published protocol with every setting it fixes (its --protocol, metrics, sample counts, runs, "
        f"DDIM eta, I3D call): {', '.join(REFERENCES)}; a flag that changes one of them is an error",
    )  # fmt: skip
    zero.add_argument("--metrics", help="comma-separated subset of is,fvd,kvd,clipsim,fid (default: the protocol's)")
    zero.add_argument(
        "--num-real", type=nonnegative_int, help=f"real clips for FVD/KVD/FID (0: all; default {NUM_REAL})"
    )
    zero.add_argument("--real-split", help="split of the real videos (ucf101: train; msrvtt: test)")
    zero.add_argument("--prompt-template", default="{}", help="ucf101: prompt with {} for the class name in words")
    zero.add_argument("--is-splits", type=positive_int, help="IS splits (default 1, as TGANv2)")
    zero.add_argument(
        "--i3d-bn-eps", type=positive_float, metavar="EPS",
        help=f"BatchNorm eps of a state-dict I3D: {I3D_BN_EPS:g} (TATS/LVDM/Dysen's i3d_pretrained_400.pt, the "
        "default) or 1e-3 (piergiaj's pytorch-i3d and Sonnet)",
    )  # fmt: skip
    zero.add_argument("--batch-size", type=positive_int, default=16, help="videos per feature-network batch")
    for key, env in (
        ("i3d", "DYSEN_I3D_WEIGHTS"),
        ("c3d", "DYSEN_C3D_WEIGHTS"),
        ("c3d-mean", "DYSEN_C3D_MEAN"),
        ("clip", "DYSEN_CLIP_MODEL"),
        ("inception", "DYSEN_INCEPTION_WEIGHTS"),
    ):
        zero.add_argument(f"--{key}", help=f"weights of {key.upper()} (default: ${env})")


BACKBONE_FLAGS = (
    "control_strength", "control_self", "control_energy", "control_steps", "adapter", "height", "width", "dtype",
)  # fmt: skip
"""Flags of --backbone rows only."""


def add_backbone_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("pretrained backbones (--backbone; preview)")
    group.add_argument(
        "--control-strength", type=nonnegative_floats, metavar="S[,S...]",
        help="DSG control strengths, a row each (default 0: the backbone alone; e.g. 0,2,4: alone and steered "
        "at 2 and 4, the same videos at 0 as without control)",
    )  # fmt: skip
    group.add_argument(
        "--control-self", type=nonnegative_floats, metavar="M[,M...]",
        help="self-attention masking strengths (Peekaboo-style: -M between tokens of different boxes), a row each "
        "with every --control-strength (default 0: off)",
    )  # fmt: skip
    group.add_argument(
        "--control-energy", type=nonnegative_floats, metavar="E[,E...]",
        help="energy guidance step sizes (LVD-style: the latents moved towards cross-attention inside the boxes, "
        "a gradient through the denoiser per steered step), a row each with every other control setting "
        "(default 0: off)",
    )  # fmt: skip
    group.add_argument(
        "--control-steps", type=float_range(0.0, 1.0), metavar="F",
        help="share of the denoising steps that are steered, the first ones (default: 0.4)",
    )  # fmt: skip
    group.add_argument(
        "--adapter", type=adapter_dir, metavar="DIR",
        help="a DSG adapter trained for the backbone (dysen train-adapter RUN/model, or shapes-wan-tiny-adapter): "
        "every backbone row again with it",
    )  # fmt: skip
    group.add_argument("--height", type=positive_int, help="video height of backbone rows (default: the backbone's)")
    group.add_argument("--width", type=positive_int, help="video width of backbone rows (default: the backbone's)")
    group.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"),
        help="weights of the backbones' denoiser and text encoder (default: float32; the VAE stays float32)",
    )  # fmt: skip


def _backbone_variants(args: argparse.Namespace, sampling: Any) -> list[Any]:
    """A row per --backbone and combination of --control-strength, --control-self and --control-energy, its size
    checked against the folder's configs (no weights are read): a folder that is no supported backbone or a size it
    cannot take stops the run before any row."""
    from dysen.config import load_config
    from dysen.eval.backbone_rows import DEFAULT_CONTROL_STEPS, BackboneRow, backbone_size, row_name
    from dysen.eval.variants import Variant
    from dysen.planner.build import PlannerOptions, changed_options

    given = [name for name in BACKBONE_FLAGS if getattr(args, name) is not None]
    if not args.backbone:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise DysenError(f"{flags}: only with --backbone DIR")
        return []
    if args.protocol != "shapes":
        raise DysenError("--backbone rows exist only for --protocol shapes")
    planner = _planner_options(args) or changed_options(PlannerOptions(), _planner_changes(args) or {})
    steps = DEFAULT_CONTROL_STEPS if args.control_steps is None else args.control_steps
    frames = load_config(args.config).video.num_frames
    variants = []
    for name, folder in args.backbone:
        settings = itertools.product(
            (None, args.adapter) if args.adapter is not None else (None,),
            args.control_strength or (0.0,), args.control_self or (0.0,), args.control_energy or (0.0,),
        )  # fmt: skip
        for adapter, strength, masking, energy in settings:
            dtype = args.dtype or "float32"
            row = BackboneRow(folder, strength, steps, args.height, args.width, dtype, masking, energy, adapter)
            row.control()  # checked before anything runs
            backbone_size(row, frames)
            variants.append(
                Variant(
                    row_name(name, strength, masking, energy, adapter is not None), source="backbone",
                    config=args.config, planner=planner, sampling=sampling, backbone=row,
                )  # fmt: skip
            )
    return variants


def _planner_options(args: argparse.Namespace) -> Any:
    """The planner --planner names (None: the model's own, changed by ``_planner_changes``)."""
    if args.planner is None:
        return None
    from dysen.cli.options import own_planner

    return own_planner(args)


def _planner_changes(args: argparse.Namespace) -> dict[str, Any] | None:
    """The planner flags without --planner (--demos, --policy, ...): changes to the model's own planner settings."""
    if args.planner is not None:
        return None
    if args.planner_model is not None or args.base_url is not None or args.replay is not None:
        raise DysenError("--planner-model, --base-url and --replay need --planner (openai, hf or replay)")
    from dysen.cli.options import planner_fields

    return planner_fields(args) or None


def _variants(args: argparse.Namespace) -> list[Any]:
    from dysen.eval.benchmark import VideoSampling
    from dysen.eval.variants import AUTOENCODER_ROW, Variant, ablation_variants

    sampling = VideoSampling(
        args.steps, args.guidance, args.dsg_guidance, args.seed, args.plan, sampler=args.sampler, eta=args.eta
    )
    planner, changes = _planner_options(args), _planner_changes(args)
    if args.ablation:
        if args.protocol != "shapes" or args.videos or len(args.model) > 1 or args.backbone:
            raise DysenError(
                "--ablation runs on --protocol shapes with at most one --model (the full model) and no --backbone"
            )
        full = args.model[0][1] if args.model else None
        return ablation_variants(
            full, args.text_only, config=args.config, planner=planner, planner_changes=changes, sampling=sampling
        )
    if args.text_only is not None:
        raise DysenError("--text-only belongs to --ablation; to score that model alone pass it as --model")
    variants = []
    if args.real:
        if args.protocol != "shapes":
            raise DysenError("--real (ground-truth renders) exists only for --protocol shapes")
        variants.append(Variant("ground truth (renders)", source="renders", config=args.config, sampling=sampling))
    if args.autoencoder_ceiling:
        if args.protocol != "shapes":
            raise DysenError("--autoencoder-ceiling exists only for --protocol shapes")
        model = args.model[0][1] if args.model else None
        variants.append(
            Variant(AUTOENCODER_ROW, source="reconstructions", model=model, config=args.config, sampling=sampling)
        )
    for name, folder in args.model:
        variants.append(
            Variant(
                name, model=folder, config=args.config, planner=planner, planner_changes=changes, sampling=sampling
            )
        )
    for name, folder in args.videos:
        variants.append(Variant(name, source="folder", folder=folder, gold=args.gold, sampling=sampling))
    variants += _backbone_variants(args, sampling)
    if not args.model and not args.videos and not args.backbone:
        variants.append(
            Variant(args.config, config=args.config, planner=planner, planner_changes=changes, sampling=sampling)
        )
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise DysenError(f"two rows share a name in {names}: name them with NAME=DIR")
    selection = _clip_selection(args)
    return [dataclasses.replace(v, clips=selection) for v in variants]


def _clip_selection(args: argparse.Namespace) -> Any:
    """The captions of a shapes row: --split, --first and the world flags (only those that differ from the
    default world are recorded)."""
    from dysen.cli.world import world_settings
    from dysen.eval.benchmark import ClipSelection
    from dysen.world import ShapesConfig

    default = ShapesConfig()
    world = {k: v for k, v in world_settings(args).items() if v != getattr(default, k)}
    return ClipSelection(split=args.split, first=args.first, world=world)


def _apply_reference(args: argparse.Namespace) -> None:
    """Fill the flags a ``--reference`` protocol fixes (``dysen.eval.references``); one given with another value
    than the reference's is an error naming both."""
    reference = REFERENCES[args.reference]
    if args.protocol not in ("shapes", reference.protocol):  # shapes: the flag's default, not a choice
        raise DysenError(f"--reference {reference.name} is a {reference.protocol} protocol, not {args.protocol}")
    args.protocol = reference.protocol
    fixed: dict[str, Any] = {
        "metrics": ",".join(reference.metrics), "num": reference.num, "num_real": reference.num_real or 0,
        "is_splits": reference.is_splits,
    }  # fmt: skip
    if reference.eta is not None:
        fixed["eta"] = reference.eta
    if reference.i3d_call == "tats" and {"fvd", "kvd"} & set(reference.metrics):
        fixed["i3d_bn_eps"] = reference.i3d_bn_eps
    given = {name: getattr(args, name) for name in fixed if getattr(args, name) is not None}
    clashes = [f"--{name.replace('_', '-')} {value} (it fixes {fixed[name]})" for name, value in given.items()
               if value != fixed[name]]  # fmt: skip
    if clashes:
        raise DysenError(f"--reference {reference.name} fixes these settings; drop or match " + "; ".join(clashes))
    for name, value in fixed.items():
        setattr(args, name, value)


def _check(args: argparse.Namespace) -> None:
    if getattr(args, "reference", None) is not None:
        _apply_reference(args)
    for flag in ("num", "steps", "batch_size", "is_splits"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise DysenError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    for _, folder in [*args.model, *args.videos]:
        if not folder.is_dir():
            raise DysenError(f"{folder} is not a folder")
    if args.protocol != "shapes" and args.data is None:
        raise DysenError(f"--protocol {args.protocol} needs the dataset: --data ROOT (nothing is downloaded)")
    if args.protocol != "shapes" and not args.data.is_dir():
        raise DysenError(f"--data {args.data} is not a folder: put the {args.protocol} dataset there (see the README)")
    if args.protocol != "shapes" and (args.gold or args.plan == "gold"):
        raise DysenError("--gold and --plan gold belong to --protocol shapes")


def run_eval(args: argparse.Namespace) -> int:
    from dysen.eval.report import new_report, write_report

    _check(args)
    if args.prompts is not None:
        return _run_prompts(args)
    variants = _variants(args)
    progress = not args.no_progress
    save_dir = args.out / "videos" if args.save_videos else None
    clock = time.perf_counter()
    if args.protocol == "shapes":
        from dysen.eval.variants import run_variant

        num = args.num or 100
        selection = _clip_selection(args)
        settings = {"num": num, "seed": args.seed, "config": args.config, "captions": selection.describe()}
        report = new_report("shapes", _command(args), settings, args.device)
        for variant in variants:
            report["rows"].append(run_variant(variant, num, device=args.device, save_dir=save_dir, progress=progress))
    else:
        from dysen.eval.protocols import ZeroShotSettings, load_networks, run_zero_shot

        reference = REFERENCES[args.reference] if args.reference else None
        num_real = NUM_REAL if args.num_real is None else args.num_real
        settings = ZeroShotSettings(
            args.protocol, args.data, tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else (),
            num=args.num, num_real=num_real or None, real_split=args.real_split, template=args.prompt_template,
            seed=args.seed, batch_size=args.batch_size, is_splits=args.is_splits or 1,
            runs=reference.runs if reference else 1, redraw=reference.redraw if reference else "real",
            reference=args.reference,
        )  # fmt: skip
        paths = {"i3d": args.i3d, "c3d": args.c3d, "c3d_mean": args.c3d_mean, "clip": args.clip}
        call = reference.i3d_call if reference else "tats"
        networks = load_networks(
            settings.resolved_metrics(), {**paths, "inception": args.inception}, args.device,
            i3d_bn_eps=args.i3d_bn_eps, i3d_call=call,
        )  # fmt: skip
        rows, record = run_zero_shot(settings, variants, networks, device=args.device, save_dir=save_dir,
                                     progress=progress)  # fmt: skip
        record["i3d"] = {"call": call, "bn_eps": args.i3d_bn_eps or I3D_BN_EPS}
        if reference is not None:
            record["reference_settings"] = reference.settings()
        report = new_report(args.protocol, _command(args), record, args.device)
        report["rows"] = rows
    report["wall_s"] = round(time.perf_counter() - clock, 2)
    written = write_report(args.out, report)
    print("wrote " + ", ".join(str(p) for p in written))
    _print_summary(report)
    return 0


def _check_prompts(args: argparse.Namespace) -> None:
    """--prompts evaluates one model (--model DIR, else the shipped one) with its own plans, nothing else."""
    clashes = {
        "--protocol ucf101/msrvtt": args.protocol != "shapes", "--videos": bool(args.videos), "--real": args.real,
        "--autoencoder-ceiling": args.autoencoder_ceiling, "--ablation": args.ablation,
        "--text-only": args.text_only is not None, "--gold": args.gold is not None, "--plan gold": args.plan == "gold",
        "more than one --model": len(args.model) > 1, "--backbone": bool(args.backbone),
    }  # fmt: skip
    given = [flag for flag, on in clashes.items() if on]
    if given:
        raise DysenError(f"--prompts runs one model with its own plans; it does not go with {', '.join(given)}")


def _run_prompts(args: argparse.Namespace) -> int:
    """``dysen eval --prompts FILE``: a prompt set with expected events, end to end (``dysen.eval.prompt_set``)."""
    from dysen.eval.benchmark import VideoSampling
    from dysen.eval.prompt_set import read_prompt_set
    from dysen.eval.report import new_report, write_report
    from dysen.eval.variants import Variant, run_prompt_variant

    _check_prompts(args)
    records = read_prompt_set(args.prompts)[: args.num]
    sampling = VideoSampling(
        args.steps, args.guidance, args.dsg_guidance, args.seed, sampler=args.sampler, eta=args.eta
    )
    name, folder = args.model[0] if args.model else (args.config, None)
    variant = Variant(
        name, model=folder, config=args.config, planner=_planner_options(args), planner_changes=_planner_changes(args),
        sampling=sampling,
    )  # fmt: skip
    settings = {"prompts": str(args.prompts), "num": len(records), "seed": args.seed, "config": args.config}
    report = new_report("prompts", _command(args), settings, args.device)
    clock = time.perf_counter()
    save_dir = args.out / "videos" if args.save_videos else None
    report["rows"].append(
        run_prompt_variant(variant, records, device=args.device, save_dir=save_dir, progress=not args.no_progress)
    )
    report["wall_s"] = round(time.perf_counter() - clock, 2)
    written = write_report(args.out, report)
    print("wrote " + ", ".join(str(p) for p in written))
    _print_prompt_summary(report["rows"][0])
    return 0


def _print_prompt_summary(row: dict[str, Any]) -> None:
    """Overall, per split and per action scores with their standard errors, one line each."""
    from dysen.eval.prompt_summary import METRICS, Estimate

    summary = row["summary"]
    for name, group in {"overall": summary["overall"], **summary["per_split"]}.items():
        cells = ", ".join(f"{key} {Estimate(**group[key]).text()}" for key in METRICS)
        print(f"{row['name']} [{name}, {group['prompts']} prompts]: {cells}")
    for action, a in summary["per_action"].items():
        print(f"  {action}: action_accuracy {Estimate(**a['action_accuracy']).text()}")


def _command(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces this run, from the parsed options (defaults left out)."""
    parser = argparse.ArgumentParser()
    configure_eval(parser)
    defaults = vars(parser.parse_args(["--out", "."]))
    words = ["dysen", "eval"] + ([] if args.prompts is not None else ["--protocol", args.protocol])
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if key not in defaults or key == "protocol" or (value == defaults[key] and key != "out"):
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [w for name, path in value for w in (flag, f"{name}={path}")]
        elif isinstance(value, tuple):
            words += [flag, ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return words


def _print_summary(report: dict[str, Any]) -> None:
    for row in report["rows"]:
        if "skipped" in row:
            print(f"{row['name']}: not run ({row['skipped']})")
        elif "summary" in row:
            overall = row["summary"]["overall"]
            keys = ("action_accuracy", "object_fidelity", "order_accuracy", "dynamic_degree")
            print(f"{row['name']}: " + ", ".join(f"{k} {_short(overall.get(k))}" for k in keys))
        else:
            print(f"{row['name']}: " + ", ".join(f"{k} {_short(v)}" for k, v in row["metrics"].items()))
        if "skipped_videos" in row:
            names = ", ".join(Path(f["file"]).name for f in row["skipped_videos"]["files"])
            print(f"{row['name']}: skipped {row['skipped_videos']['count']} unreadable video(s): {names}")


def _short(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
