"""``dysen model show``, ``set-defaults`` and ``export``: a saved model's settings, its sampling defaults, and a
training checkpoint written as a model folder (``dysen.train.export``).

The sampling defaults (steps, guidance, DSG guidance, η, sampler) are ``DiffusionConfig`` fields saved in the
model folder's ``model_index.json`` (diffusers keeps them in the scheduler config the same way); ``generate``,
``eval`` and the demo use them whenever a flag leaves one unset. ``set-defaults`` changes them in place: the
new values are checked by ``DiffusionConfig`` itself and the file is replaced atomically, or left untouched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NONE = "none"
"""``--dsg-guidance none``: no DSG scale of its own, the text scale is used."""


def _scale_or_none(text: str) -> float | str:
    if text.strip().lower() == NONE:
        return NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def configure_model_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, metavar="DIR", help="a Dysen-VDM pipeline folder (model_index.json)")
    p.add_argument("--json", action="store_true", help="print the whole saved config as JSON")


def configure_model_set_defaults(p: argparse.ArgumentParser) -> None:
    from dysen.cli.options import SAMPLING_FLAGS

    p.add_argument("dir", type=Path, metavar="DIR", help="a Dysen-VDM pipeline folder (model_index.json)")
    for name, (kwargs, text) in SAMPLING_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if name == "dsg_guidance":
            kwargs = {**kwargs, "type": _scale_or_none, "metavar": "S|none"}
            text += "; 'none': follow the text scale"
        p.add_argument(flag, help=f"new default: {text} (default: unchanged)", **kwargs)
    p.add_argument(
        "--allow-shipped",
        action="store_true",
        help="also change a model shipped inside the dysen package (copy it instead: a reinstall undoes this)",
    )


def configure_model_export(p: argparse.ArgumentParser) -> None:
    from dysen.cli.argtypes import nonnegative_int

    p.add_argument("run", type=Path, metavar="RUN", help="a training run's folder (the --out of a train command)")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write (must not exist)")
    p.add_argument("--step", type=nonnegative_int, help="the checkpoint's step (default: the newest kept)")
    p.add_argument(
        "--weights", choices=["ema", "raw"], default="ema",
        help="ema: the EMA weights, as the run's own model/ holds; raw: the optimizer's",
    )  # fmt: skip
    p.add_argument(
        "--template", type=Path, help="the model folder whose files are copied and whose tensors are replaced "
        "(default: RUN/model, written when the run ended or was stopped; for a train-backbone run still going, one "
        "built from its backbone.json)",
    )  # fmt: skip


def run_model_export(args: argparse.Namespace) -> int:
    import tempfile

    from dysen.train.export import MODEL_DIR, export_checkpoint

    template = args.template
    with tempfile.TemporaryDirectory(prefix="dysen-export-") as scratch:
        if template is None and not (args.run / MODEL_DIR).is_dir() and (args.run / "backbone.json").is_file():
            template = _backbone_template(args.run, Path(scratch) / "template")  # a train-backbone run still going
        done = export_checkpoint(args.run, args.out, args.step, weights=args.weights, template=template)
    modules = ", ".join(f"{name} ({count} tensors)" for name, count in done.modules.items())
    print(f"wrote {done.folder}: the {done.weights} weights of {done.checkpoint.name} of {args.run}: {modules}")
    return 0


def _backbone_template(run: Path, folder: Path) -> Path:
    """A model folder of a ``train-backbone`` run built from its ``backbone.json`` (the transformer freshly
    initialised, the frozen autoencoder it names): what ``RUN/model`` will be, for the checkpoint's weights."""
    from dysen.backbones.dysen_wan import save_dysen_wan
    from dysen.cli.train import _backbone_config, _load_vae
    from dysen.run_folder import read_settings
    from dysen.train.backbone_task import make_scheduler, sample_defaults

    saved = read_settings(run / "backbone.json") or {}
    config, vae = _backbone_config(saved["config"]), _load_vae(Path(saved["vae"]))
    transformer = config.transformer.build(vae.config.latent_channels, config.text.dim)
    return save_dysen_wan(folder, transformer, vae, config.text, make_scheduler(config), sample_defaults(config))


def run_model_show(args: argparse.Namespace) -> int:
    from dysen.config import config_to_data
    from dysen.pipeline import read_pipeline_config

    config = read_pipeline_config(args.dir)
    if args.json:
        print(json.dumps(config_to_data(config), indent=2))
        return 0
    print("\n".join(summary_lines(args.dir, config)))
    return 0


def summary_lines(folder: Path, config: Any) -> list[str]:
    """A few lines on what the model at ``folder`` is, and how it samples by default."""
    video, vae, text, unet, rgtrm, diff = (config.video, config.vae, config.text_encoder, config.unet, config.rgtrm,
                                          config.diffusion)  # fmt: skip
    planner = config.planner
    dsg_scale = f"{diff.dsg_guidance:g}" if diff.dsg_guidance is not None else f"unset (= guidance, {diff.guidance:g})"
    return [
        f"model: {folder}",
        f"video: {video.num_frames} frames, {video.width}x{video.height}, {video.fps} fps",
        f"autoencoder: {vae.kind}; text encoder: {text.kind} ({text.dim}-d)",
        f"unet: {unet.model_channels} channels x {list(unet.channel_mult)}, DSG width {unet.dsg_dim}, layout "
        f"{'on' if unet.layout else 'off'}; rgtrm: {rgtrm.num_layers} layers, {rgtrm.dim}-d",
        f"diffusion: T {diff.num_train_timesteps}, {diff.beta_schedule} betas, predicts {diff.prediction_type}",
        f"sampling defaults: sampler {diff.sampler}, steps {diff.steps}, guidance {diff.guidance:g}, "
        f"dsg_guidance {dsg_scale}, eta {diff.eta:g}",
        f"planner: {planner.backend}" + (f" ({planner.model})" if planner.model else "")
        + f", demos {planner.demos}" + (f", policy {planner.policy}" if planner.policy else ""),
    ]


def run_model_set_defaults(args: argparse.Namespace) -> int:
    from dysen.pipeline import SAMPLING_FIELDS, set_sampling_defaults

    old, new = set_sampling_defaults(
        args.dir, {name: getattr(args, name) for name in SAMPLING_FIELDS}, allow_shipped=args.allow_shipped
    )
    for name in SAMPLING_FIELDS:
        before, after = getattr(old, name), getattr(new, name)
        mark = "" if before != after else " (unchanged)"
        print(f"{name}: {_show(before)} -> {_show(after)}{mark}")
    print(f"wrote {Path(args.dir) / 'model_index.json'}")
    return 0


def _show(value: Any) -> str:
    return NONE if value is None else f"{value:g}" if isinstance(value, float) else str(value)
