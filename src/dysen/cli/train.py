"""``dysen train-vae``, ``train-vdm``, ``finetune`` (stages 1, 2, 4), ``train-backbone``, ``train-adapter``: one loop.

Each fills a run folder: ``config.yaml`` (the resolved model config), ``train_config.json``, for train-vae
``vae_loss.json`` (the loss flags), ``world.json`` (the Dynamic Shapes world flags), ``metrics.jsonl``,
``checkpoints/step-*``, ``samples/step-*`` (with ``--sample-every``) and, at the end, ``model/``: the autoencoder
for ``train-vae`` (latent scale fitted), a whole pipeline for ``train-vdm``/``finetune`` (``dysen generate --model
RUN/model``), a diffusers-format backbone folder for ``train-backbone`` (``dysen generate --backbone RUN/model``;
its settings in ``backbone.json``), and a DSG adapter for ``train-adapter`` (``dysen generate --backbone DIR --adapter
RUN/model``; its settings in ``adapter.json``).
Several processes: ``dysen launch [--processes N] [--cpu] -- train-vdm …`` (``dysen.cli.launch``: torchrun; not
``accelerate launch --cpu``, which starts one process); with ``--sharding full_shard`` or ``hybrid_shard`` they split
the trained weights (FSDP2) instead of each holding them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dysen.cli.argtypes import (
    finite_float,
    float_range,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    seed,
)
from dysen.cli.world import WORLD_FILE, add_world_flags, saved_with_defaults, world_settings
from dysen.data.datasets import DATASETS
from dysen.errors import DysenError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from dysen.config import DysenVDMConfig, VideoSpec
    from dysen.models.vae import KLVideoAutoencoder
    from dysen.train.loop import LoopResult, TrainConfig
    from dysen.train.vae_loss import VAELossConfig

MODEL_DIR = "model"
CONFIG_FILE = "config.yaml"
LOSS_FILE = "vae_loss.json"  # train-vae's loss flags, resolved
SHUFFLE_BUFFER = 1000  # clips in the shuffle buffer when training from --shards
SCALE_BATCHES = 4  # batches of posterior means that fit the latent scale after train-vae
STAGE_LR = {"train-vae": 3.6e-5, "train-vdm": 6e-5, "finetune": 2e-5, "train-backbone": 3e-4, "train-adapter": 1e-4}
"""Default peak learning rate of each command (TrainConfig.lr takes any)."""
BACKBONE_FILE = "backbone.json"  # train-backbone's resolved BackboneTrainConfig and autoencoder
ADAPTER_FILE = "adapter.json"  # train-adapter's AdapterTrainConfig, backbone folder and its fingerprint


def _last_loss(result: LoopResult) -> str:
    """'last loss X' (and whether a signal stopped the run early), or why there is none: a resumed run that had
    already done every step runs none."""
    if not result.steps_run:
        return "no step left to run: already done"
    stopped = (
        f"; stopped early by a signal (exit code {result.exit_code}), checkpointed: continue with --resume latest"
        if result.interrupted
        else ""
    )
    return f"last loss {result.loss:.4f}{stopped}"


def configure_train_vae(p: argparse.ArgumentParser) -> None:
    from dysen.train.vae_loss import VAELossConfig

    _configure_common(p, lr=STAGE_LR["train-vae"])
    p.add_argument("--config", default="shapes-tiny", help="preset name or YAML of the model")
    loss = VAELossConfig()  # the loss flags' defaults
    group = p.add_argument_group("autoencoder loss (VAELossConfig; saved as RUN/vae_loss.json)")
    group.add_argument("--kl-weight", type=nonnegative_float, default=loss.kl_weight, help="weight of the KL term")
    group.add_argument(
        "--recon-loss",
        choices=("l1", "l2"),
        default=loss.recon_loss,
        help="reconstruction loss: l1 (LDM/LVDM) or l2 (better for small objects on plain backgrounds, e.g. shapes)",
    )
    group.add_argument(
        "--frames-per-clip",
        type=positive_int,
        default=loss.frames_per_clip,
        help="train on N random frames of each clip (frame-wise autoencoders only, vae.kl3d.temporal_kernel 1): "
        "more clips per step for the same compute (default: every frame)",
    )
    group.add_argument("--perceptual-weight", type=nonnegative_float, default=loss.perceptual_weight,
                       help="weight of LPIPS "
                       "(LVDM: 1.0)")  # fmt: skip
    group.add_argument("--lpips", type=Path, help="LPIPS linear heads: the lpips package's vgg.pth, or safetensors")
    group.add_argument("--lpips-vgg", type=Path, help="VGG16 weights for LPIPS (torchvision's vgg16-397923af.pth)")
    group.add_argument("--disc-weight", type=nonnegative_float, default=loss.disc_weight,
                       help="PatchGAN weight times the adaptive λ (LVDM: 0.5; 0 = no GAN)")  # fmt: skip
    group.add_argument(
        "--disc-start",
        type=nonnegative_int,
        default=loss.disc_start,
        help="step the PatchGAN starts at",
    )
    group.add_argument("--disc-layers", type=positive_int, default=loss.disc_layers,
                       help="PatchGAN depth; frames need "
                       "3·2^N pixels")  # fmt: skip
    group.add_argument("--disc-channels", type=positive_int, default=loss.disc_channels, help="PatchGAN base channels")


def configure_train_vdm(p: argparse.ArgumentParser) -> None:
    _configure_common(p, lr=STAGE_LR["train-vdm"])
    p.add_argument("--config", help="preset name or YAML of the model (default shapes-tiny; not with --init)")
    p.add_argument(
        "--vae", "--vae-path", type=Path, metavar="PATH",
        help="the frozen autoencoder the config's vae.kind asks for: kl3d (shapes-tiny, lvdm-ucf101) a train-vae "
        "run, its model/ or a pipeline (required); frame (paper-t2v-256) a diffusers AutoencoderKL folder, or a "
        "Stable Diffusion folder with vae/ (default: the config's vae.frame.source)",
    )  # fmt: skip
    p.add_argument(
        "--text-encoder", "--text-encoder-path", type=Path, metavar="PATH",
        help="the config's text encoder from this local folder (paper-t2v-256: CLIP ViT-L/14, a transformers "
        "CLIPTextModel + tokenizer folder; default: the config's text_encoder.model)",
    )  # fmt: skip
    p.add_argument(
        "--init",
        type=Path,
        help="start from this pipeline folder's networks, autoencoder and text encoder instead (e.g. one written by "
        "dysen convert lvdm: LVDM's weights, the DSG path fresh); not with --config, --vae, --text-encoder",
    )
    _configure_vdm_data(p)


def configure_finetune(p: argparse.ArgumentParser) -> None:
    _configure_common(p, lr=STAGE_LR["finetune"])
    p.add_argument("--init", type=Path, required=True, help="the trained pipeline folder to start from")
    _configure_vdm_data(p)


def _configure_vdm_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-latents", type=Path, help="encode the clips once into this folder (resumable), then train from it"
    )
    p.add_argument(
        "--gradient-checkpointing", action="store_true",
        help="recompute each UNet block in the backward pass: less activation memory for about one more forward "
        "pass per step (the model config's unet.gradient_checkpointing)",
    )  # fmt: skip
    p.add_argument(
        "--oversample",
        action="append",
        default=[],
        metavar="PREDICATE=K",
        help="repeat each clip whose gold DSG has an event with this predicate K times per epoch (e.g. rotates=3; "
        "repeatable): more of a rare action without new data",
    )
    _configure_sampling(p)


def _configure_sampling(p: argparse.ArgumentParser) -> None:
    """The sample videos of train-vdm/finetune (``VDMTask``'s ``sample_steps``/``sample_guidance``: unset, the
    model's own ``diffusion.steps``/``diffusion.guidance``, by ``SamplingSettings.resolve``)."""
    p.add_argument(
        "--sample-steps",
        type=positive_int,
        help="sampler steps of the sample videos (default: the model's diffusion.steps)",
    )
    p.add_argument(
        "--sample-guidance",
        type=finite_float,
        help="guidance of the sample videos (default: the model's diffusion.guidance)",
    )


def _configure_common(p: argparse.ArgumentParser, lr: float) -> None:
    """The ``TrainConfig`` flags (same defaults, checked by tests/test_cli_defaults.py; loop.py imports torch, so
    they are not read from it) and the data flags of every training stage."""
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, metrics, model/)")
    p.add_argument("--data", default="shapes", choices=DATASETS, help="shapes: drawn on the fly unless --root")
    p.add_argument("--root", type=Path, help="dataset folder (for shapes: where `dysen data shapes` wrote)")
    p.add_argument(
        "--shards", type=Path,
        help="train from WebDataset shards in this folder instead of --data: dysen's (dysen data shards) or "
        "video2dataset's output (WebVid as downloaded today; clips cut as read)",
    )  # fmt: skip
    p.add_argument("--gold", type=Path, help="JSONL side file of gold DSGs (dysen dsg annotate)")
    p.add_argument("--num-clips", type=positive_int, default=10_000, help="on-the-fly Dynamic Shapes clips")
    p.add_argument("--steps", type=positive_int, default=1000, help="optimizer steps in all")
    p.add_argument("--batch-size", type=positive_int, default=8, help="clips per micro-batch per process")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate of this stage")
    p.add_argument("--warmup", type=nonnegative_int, default=0, help="linear warm-up steps")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant", help="LR after warm-up")
    p.add_argument("--ema-decay", type=float_range(0.0, 0.999999), default=0.999, help="EMA decay, 0 = off")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no", help="autocast dtype")
    p.add_argument("--seed", type=seed, default=0, help="seed of the weights, data order and every draw")
    p.add_argument("--save-every", type=positive_int, default=500, help="checkpoint every N steps")
    p.add_argument(
        "--keep-checkpoints", type=nonnegative_int, default=2, metavar="N",
        help="newest checkpoints kept on disk; 0 keeps every one (to pick one later: dysen model export)",
    )  # fmt: skip
    p.add_argument("--resume", choices=["latest"], help="continue the run in --out from its newest checkpoint")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader workers per process")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument(
        "--sharding", choices=("ddp", "full_shard", "hybrid_shard"), default="ddp",
        help="several processes: ddp replicates the weights; full_shard splits weights, gradients and AdamW state "
        "across every process (FSDP2), hybrid_shard across each node's (replicated across nodes)",
    )  # fmt: skip
    p.add_argument(
        "--sample-every", type=nonnegative_int, default=0, help="sample videos into RUN/samples every N steps (0: off)"
    )
    p.add_argument("--sample-count", type=positive_int, default=2, help="clips per sample batch")
    add_world_flags(p)


def run_train_vae(args: argparse.Namespace) -> int:
    """Stage 1: train the 3D KL autoencoder, then fit its latent scale and write ``RUN/model``."""
    from dysen.models.vae import KLVideoAutoencoder
    from dysen.train.loop import train
    from dysen.train.stages import VAETask

    config = _start_run(args, args.config)
    if config.vae.kind != "kl3d":
        raise DysenError(f"--config {args.config} uses a pretrained per-frame VAE: there is no autoencoder to train")
    _save_loss_settings(args)
    lpips = _lpips(args)
    vae, disc = _seeded(args.seed, lambda: (KLVideoAutoencoder(config.vae.kl3d), _discriminator(args)))
    dataset, collate = _dataset(args, config.video)
    task = VAETask(vae, _loss_config(args), lpips=lpips, discriminator=disc)
    result = train(task, dataset, collate, _train_config(args), args.out, bool(args.resume))
    if _is_main_process():
        _fit_latent_scale(vae, dataset, collate, args.batch_size)
        folder = vae.save_pretrained(args.out / MODEL_DIR)
        print(f"trained the autoencoder for {result.step} steps ({_last_loss(result)}); wrote {folder}")
        print(f"skipped {result.skipped} bad items ({result.skipped_draws} draws)")
    return result.exit_code


def _loss_config(args: argparse.Namespace) -> VAELossConfig:
    """The ``VAELossConfig`` the train-vae flags give."""
    from dysen.train.vae_loss import VAELossConfig

    return VAELossConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(VAELossConfig)})


def _save_loss_settings(args: argparse.Namespace) -> None:
    """The autoencoder loss flags as ``RUN/vae_loss.json``; a resumed run must use the saved ones."""
    from dysen.run_folder import as_saved, resume_changes, write_settings
    from dysen.train.loop import TrainError

    names = ("kl_weight", "recon_loss", "perceptual_weight", "lpips", "lpips_vgg", "disc_weight", "disc_start",
             "disc_layers", "disc_channels", "frames_per_clip")  # fmt: skip
    settings = as_saved({name: getattr(args, name) for name in names})  # paths as strings
    changed, saved = resume_changes(args.out / LOSS_FILE, settings, bool(args.resume))
    if changed:
        raise TrainError(f"cannot resume {args.out} with other loss settings for {changed}: saved {saved}")
    if _is_main_process():
        write_settings(args.out / LOSS_FILE, settings)


def _save_world_settings(args: argparse.Namespace) -> None:
    """The Dynamic Shapes world flags as ``RUN/world.json`` (what on-the-fly clips draw); a resumed run must use the
    saved ones."""
    from dysen.run_folder import as_saved, changed_settings, read_settings, write_settings
    from dysen.train.loop import TrainError

    settings = as_saved(world_settings(args))
    saved = read_settings(args.out / WORLD_FILE) if args.resume else None
    saved = {} if saved is None else saved_with_defaults(saved)
    changed = changed_settings(saved, settings) if saved else []
    if changed:
        raise TrainError(f"cannot resume {args.out} with other world settings for {changed}: saved {saved}")
    if _is_main_process():
        write_settings(args.out / WORLD_FILE, settings)


def _lpips(args: argparse.Namespace) -> Any:
    """The LPIPS network of ``--lpips`` + ``--lpips-vgg`` (None without a perceptual weight)."""
    if not args.perceptual_weight:
        return None
    if args.lpips is None or args.lpips_vgg is None:
        raise DysenError(
            "--perceptual-weight needs the LPIPS weights as local files: --lpips vgg.pth (the lpips package's "
            "linear heads) and --lpips-vgg vgg16.pth (torchvision's VGG16); nothing is downloaded"
        )
    from dysen.models.lpips import LPIPS

    return LPIPS.from_files(args.lpips, args.lpips_vgg)


def _discriminator(args: argparse.Namespace) -> Any:
    """LVDM's PatchGAN for ``--disc-weight`` > 0, else None."""
    if not args.disc_weight:
        return None
    from dysen.models.patchgan import NLayerDiscriminator

    return NLayerDiscriminator(channels=args.disc_channels, n_layers=args.disc_layers)


def run_train_vdm(args: argparse.Namespace) -> int:
    """Stage 2: train the 3D-UNet + RGTrm on the frozen ``--vae``'s latents with gold DSGs."""
    from dysen.models.rgtrm import RGTrm
    from dysen.models.unet3d import UNet3D
    from dysen.models.vae import FrameVAE
    from dysen.pipeline import build_text_encoder

    if args.init is not None:
        if args.config is not None or args.vae is not None or args.text_encoder is not None:
            raise DysenError(
                "--init takes the model, its autoencoder and text encoder from the folder: drop --config, --vae and "
                "--text-encoder"
            )
        return run_finetune(args)  # the same start: a whole pipeline, trained on (stage 2 from converted weights)
    kind = _autoencoder_kind(args.vae) if args.vae is not None else None
    vae = _load_vae(args.vae) if kind == "kl3d" else None
    args.config = args.config if args.config is not None else "shapes-tiny"  # unset only to tell --init apart
    config = _start_run(args, args.config, lambda c: _with_world_palette(args, _with_user_paths(args, c, kind, vae)))
    if config.vae.kind == "frame":
        frame = config.vae.frame
        if args.vae is not None and str(args.vae.resolve()) != frame.source:
            raise DysenError(f"this run trains on the VAE {frame.source} (its config.yaml); --vae {args.vae} differs")
        vae = FrameVAE.load(frame.source, subfolder=frame.subfolder, frames_per_chunk=frame.frames_per_chunk)
    elif vae is None:
        raise DysenError(f"--config {args.config} trains on a dysen 3D autoencoder: give it with --vae RUN")
    unet, rgtrm = _seeded(args.seed, lambda: (UNet3D(config.unet), RGTrm(config.rgtrm)))
    return _train_vdm(args, config, unet, rgtrm, vae, build_text_encoder(config.text_encoder))


def _with_user_paths(
    args: argparse.Namespace, config: DysenVDMConfig, kind: str | None, kl3d: KLVideoAutoencoder | None
) -> DysenVDMConfig:
    """``config`` naming what this run trains with: the 3D autoencoder ``kl3d`` of ``--vae`` (its own config), or
    the per-frame VAE's folder (``--vae`` of ``kind`` "frame" or "frame-in-pipeline"), the text encoder of
    ``--text-encoder``, ``--gradient-checkpointing``. A ``--vae`` of another kind than the config's ``vae.kind`` is
    refused, never swapped in."""
    from dysen.config import VAESpec

    if config.vae.kind == "frame":
        if kind == "kl3d":
            raise DysenError(
                f"--config {args.config} trains on a pretrained per-frame VAE (vae.kind: frame, e.g. the SD-VAE), "
                f"but --vae {args.vae} is a dysen 3D autoencoder: give a diffusers AutoencoderKL folder, or a config "
                "with vae.kind: kl3d (shapes-tiny, lvdm-ucf101)"
            )
        if args.vae is not None:
            subfolder = "vae" if kind == "frame-in-pipeline" else None
            frame = dataclasses.replace(config.vae.frame, source=str(args.vae.resolve()), subfolder=subfolder)
            config = dataclasses.replace(config, vae=dataclasses.replace(config.vae, frame=frame))
    elif kl3d is None:
        if args.vae is None:
            raise DysenError(f"--config {args.config} trains on a dysen 3D autoencoder: give it with --vae RUN")
        raise DysenError(
            f"--config {args.config} trains on a dysen 3D autoencoder (vae.kind: kl3d), but --vae {args.vae} is a "
            "pretrained per-frame VAE: give a train-vae run, or a config with vae.kind: frame (paper-t2v-256)"
        )
    else:
        config = dataclasses.replace(config, vae=VAESpec(kind="kl3d", kl3d=kl3d.config))
    if args.text_encoder is not None:
        encoder = dataclasses.replace(config.text_encoder, model=str(args.text_encoder.resolve()))
        config = dataclasses.replace(config, text_encoder=encoder)
    if args.gradient_checkpointing:
        config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, gradient_checkpointing=True))
    return config


def _autoencoder_kind(path: Path) -> str:
    """What kind of autoencoder ``path`` holds: "kl3d" (a train-vae run, its model/, a pipeline's vae/), "frame" (a
    diffusers ``AutoencoderKL`` folder) or "frame-in-pipeline" (a Stable Diffusion folder with vae/)."""
    import json

    def class_of(config: Path) -> str | None:
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return (data.get("_class") or data.get("_class_name")) if isinstance(data, dict) else None

    for folder in (path / MODEL_DIR, path / "vae", path):
        if class_of(folder / "config.json") == "KLVideoAutoencoder":
            return "kl3d"
    if class_of(path / "config.json") == "AutoencoderKL":
        return "frame"
    if class_of(path / "vae" / "config.json") == "AutoencoderKL":
        return "frame-in-pipeline"
    raise DysenError(
        f"no autoencoder in {path}: --vae takes a dysen train-vae run (or its model/, or a pipeline), a diffusers "
        "AutoencoderKL folder (config.json + weights), or a Stable Diffusion folder with vae/"
    )


def run_finetune(args: argparse.Namespace) -> int:
    """Stage 4: continue training a whole pipeline (``--init``) on in-domain data, gold DSGs."""
    from dysen.pipeline import DysenVDMPipeline

    pipe = DysenVDMPipeline.from_pretrained(args.init)
    if args.gradient_checkpointing:
        pipe.unet.config = dataclasses.replace(pipe.unet.config, gradient_checkpointing=True)
        pipe.config = dataclasses.replace(pipe.config, unet=pipe.unet.config)
    config = _start_run(args, None, lambda _: _with_world_palette(args, pipe.config))
    return _train_vdm(args, config, pipe.unet, pipe.rgtrm, pipe.vae, pipe.text_encoder)


def _with_world_palette(args: argparse.Namespace, config: DysenVDMConfig) -> DysenVDMConfig:
    """``config`` whose planner knows every colour the training clips draw (``--world-colours`` on Dynamic Shapes
    drawn on the fly), so the trained model plans "pink" as pink: its colours, then the world's new ones."""
    if args.data != "shapes" or args.root is not None or getattr(args, "shards", None) is not None:
        return config
    if config.planner.colours is None:  # the model draws any colour already
        return config
    colours = tuple(dict.fromkeys((*config.planner.colours, *world_settings(args)["colours"])))
    return dataclasses.replace(config, planner=dataclasses.replace(config.planner, colours=colours))


def _train_vdm(args: argparse.Namespace, config: DysenVDMConfig, unet: Any, rgtrm: Any, vae: Any, encoder: Any) -> int:
    """Train the VDM task, then write the pipeline (EMA weights) to ``RUN/model``."""
    from dysen.data.oversample import oversample, parse_oversample
    from dysen.pipeline import DysenVDMPipeline
    from dysen.planner.build import build_planner
    from dysen.train.loop import train
    from dysen.train.stages import GraphCollate, VDMTask

    caching = args.cache_latents is not None
    if args.shards is not None and (caching or args.oversample):
        raise DysenError("--cache-latents and --oversample need a dataset with indices (--data/--root), not --shards")
    weights = parse_oversample(args.oversample)
    dataset, collate = _dataset(args, config.video)
    if caching:
        dataset, collate = _cached(args, vae, dataset, collate)
    if weights:
        clips = len(dataset)  # type: ignore[arg-type]
        dataset = oversample(dataset, weights, progress=_is_main_process())
        if _is_main_process():
            print(f"oversampled {_weights_text(weights)}: {clips} clips -> {len(dataset)} per epoch")
    latent_frames = vae.latent_shape(config.video.num_frames, config.video.height, config.video.width)[1]
    collate = GraphCollate(collate, latent_frames)  # the gold DSGs' tensors, built in the loader's workers
    task = VDMTask(unet, rgtrm, vae, encoder, config, args.sample_steps, args.sample_guidance)
    result = train(task, dataset, collate, _train_config(args), args.out, bool(args.resume))
    if _is_main_process():
        pipe = DysenVDMPipeline(build_planner(config.planner), encoder, rgtrm, unet, vae.cpu(), config)
        folder = pipe.to("cpu").save_pretrained(args.out / MODEL_DIR)
        print(f"trained the VDM for {result.step} steps ({_last_loss(result)}); wrote {folder}")
        print(f"skipped {result.skipped} bad items ({result.skipped_draws} draws)")
    return result.exit_code


def configure_train_backbone(p: argparse.ArgumentParser) -> None:
    _configure_common(p, lr=STAGE_LR["train-backbone"])
    p.add_argument(
        "--config", default="wan-tiny", help="preset (wan-tiny, shapes-wan-tiny, wan-test) or a run's backbone.json"
    )
    p.add_argument(
        "--vae", type=Path, help="the frozen per-frame autoencoder: a train-vae run, its model/ or a pipeline "
        "(default: the shipped shapes-tiny's)",
    )  # fmt: skip
    p.add_argument(
        "--cache-latents", type=Path, help="encode the clips once into this folder (resumable), then train from it"
    )


def run_train_backbone(args: argparse.Namespace) -> int:
    """Train a Wan transformer text-only by flow matching on the frozen ``--vae``'s latents (issue 24 §4), then
    write ``RUN/model`` as a ``DysenWanPipeline`` folder (EMA weights)."""
    from dysen.backbones.dysen_wan import save_dysen_wan
    from dysen.train.backbone_task import BackboneTask, make_scheduler, sample_defaults
    from dysen.train.loop import train

    config, vae_path = _start_backbone_run(args)
    vae = _load_vae(vae_path)
    if vae.config.temporal_downsample != 1:
        raise DysenError(f"--vae {vae_path} compresses time; a backbone trains on a per-frame autoencoder")
    dataset, collate = _dataset(args, config.video)
    if args.cache_latents is not None:
        if args.shards is not None:
            raise DysenError("--cache-latents needs a dataset with indices (--data/--root), not --shards")
        dataset, collate = _cached(args, vae, dataset, collate)
    latent_channels = vae.config.latent_channels
    transformer = _seeded(args.seed, lambda: config.transformer.build(latent_channels, config.text.dim))
    task = BackboneTask(transformer, vae, config)
    result = train(task, dataset, collate, _train_config(args), args.out, bool(args.resume))
    if _is_main_process():
        folder = save_dysen_wan(args.out / MODEL_DIR, transformer.cpu(), vae.cpu(), config.text,
                                make_scheduler(config), sample_defaults(config))  # fmt: skip
        params = sum(p.numel() for p in transformer.parameters())
        print(f"trained the backbone ({params / 1e6:.2f}M parameters) for {result.step} steps ({_last_loss(result)}); "
              f"wrote {folder}: dysen generate PROMPT --backbone {folder}")  # fmt: skip
    return result.exit_code


def _start_backbone_run(args: argparse.Namespace) -> tuple[Any, Path]:
    """The backbone's config and autoencoder (the saved ones when resuming), saved as ``RUN/backbone.json``."""
    from dysen.run_folder import as_saved, read_settings, write_settings
    from dysen.train.loop import TrainError, refuse_existing_run

    path = args.out / BACKBONE_FILE
    saved = read_settings(path) if args.resume else None
    if saved is not None:
        _save_world_settings(args)
        if args.vae is not None and str(args.vae) != saved["vae"]:
            raise TrainError(f"cannot resume {args.out} with another --vae (saved: {saved['vae']})")
        return _backbone_config(saved["config"]), Path(saved["vae"])
    refuse_existing_run(args.out)
    _save_world_settings(args)
    config = _backbone_config(args.config)
    if args.vae is not None:
        vae = args.vae
    else:
        from dysen.pipeline import SHIPPED_MODELS

        vae = SHIPPED_MODELS["shapes-tiny"] / "vae"
    if _is_main_process():
        write_settings(path, as_saved({"config": dataclasses.asdict(config), "vae": vae}))
    return config, Path(vae)


def configure_train_adapter(p: argparse.ArgumentParser) -> None:
    from dysen.cli.argtypes import backbone_dir

    _configure_common(p, lr=STAGE_LR["train-adapter"])
    p.add_argument(
        "--backbone", type=backbone_dir, required=True, metavar="DIR",
        help="the frozen backbone: a local diffusers folder (Wan 2.1/2.2, ModelScope/ZeroScope UNet3D), or "
        "shapes-wan-tiny (shipped)",
    )  # fmt: skip
    p.add_argument("--config", default="adapter-tiny", help="preset (adapter-tiny, adapter-test) or an adapter.json")
    p.add_argument(
        "--gradient-checkpointing", action="store_true",
        help="recompute the frozen backbone's blocks in the backward pass (diffusers' enable_gradient_checkpointing): "
        "less activation memory for about one more forward pass per step",
    )  # fmt: skip
    p.add_argument(
        "--frames", type=positive_int,
        help="video frames of each training clip (default: the backbone's; Wan: 1 + 4·m)",
    )  # fmt: skip
    p.add_argument(
        "--size", type=positive_int,
        help="side of the square training clips in pixels (default: the short side of the backbone's video, e.g. 480)",
    )  # fmt: skip
    p.add_argument(
        "--cache-latents", type=Path,
        help="backbones with dysen's autoencoder: encode the clips once into this folder (resumable), then train "
        "from it (a train-backbone cache of the same clips works)",
    )  # fmt: skip
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="the frozen backbone's weights")


def run_train_adapter(args: argparse.Namespace) -> int:
    """Train a DSG adapter on the frozen ``--backbone`` (issue 25): only the adapter's parameters learn; then write
    ``RUN/model`` (config.json + model.safetensors, EMA weights), tied to that backbone's transformer config."""
    from dysen.backbones.adapter import DSGAdapter
    from dysen.backbones.base import BackboneOptions
    from dysen.backbones.folder import load_backbone
    from dysen.encoders.text import MiniLMTextEncoder
    from dysen.train.adapter_task import AdapterTask
    from dysen.train.loop import train

    config = _start_adapter_run(args)
    backbone = load_backbone(args.backbone, BackboneOptions(dtype=args.dtype or "float32", device="cpu"))
    adapter_config = config.adapter_config(backbone)
    _check_adapter_run(args, adapter_config.backbone, _adapter_video(args, backbone))
    video = _adapter_video(args, backbone)
    dataset, collate = _dataset(args, video)
    if args.cache_latents is not None:
        from dysen.models.vae import KLVideoAutoencoder

        vae = getattr(backbone, "vae", None)
        if not isinstance(vae, KLVideoAutoencoder):
            raise DysenError("--cache-latents needs a backbone with dysen's autoencoder (train-backbone's folders)")
        if args.shards is not None:
            raise DysenError("--cache-latents needs a dataset with indices (--data/--root), not --shards")
        dataset, collate = _cached(args, vae, dataset, collate)
    adapter = _seeded(args.seed, lambda: DSGAdapter(adapter_config))
    if args.gradient_checkpointing:
        backbone.denoiser.enable_gradient_checkpointing()
        if getattr(backbone, "transformer_2", None) is not None:
            backbone.transformer_2.enable_gradient_checkpointing()  # type: ignore[attr-defined]
    task = AdapterTask(backbone, adapter, MiniLMTextEncoder(), config, video.num_frames)
    result = train(task, dataset, collate, _train_config(args), args.out, bool(args.resume))
    if _is_main_process():
        folder = adapter.cpu().save_pretrained(args.out / MODEL_DIR)
        params = sum(p.numel() for p in adapter.parameters())
        frozen = sum(p.numel() for p in backbone.denoiser.parameters())
        print(f"trained the adapter ({params / 1e6:.2f}M parameters, {100 * params / frozen:.1f}% of the frozen "
              f"denoiser's {frozen / 1e6:.2f}M) for {result.step} steps ({_last_loss(result)}); wrote {folder}: "
              f"dysen generate PROMPT --backbone {args.backbone} --adapter {folder}")  # fmt: skip
    return result.exit_code


def _start_adapter_run(args: argparse.Namespace) -> Any:
    """The adapter's training config (the saved one when resuming)."""
    from dysen.run_folder import read_settings
    from dysen.train.loop import TrainError, refuse_existing_run

    saved = read_settings(args.out / ADAPTER_FILE) if args.resume else None
    if saved is not None:
        _save_world_settings(args)
        if str(args.backbone) != saved["backbone"]:
            raise TrainError(f"cannot resume {args.out} with another --backbone (saved: {saved['backbone']})")
        return _adapter_config(saved["config"])
    refuse_existing_run(args.out)
    _save_world_settings(args)
    return _adapter_config(args.config)


def _adapter_video(args: argparse.Namespace, backbone: Any) -> VideoSpec:
    """The training clips of ``train-adapter``: ``--frames`` x ``--size``², by default the backbone's frames and the
    short side of its video (clips are square: Wan2.1's 480×832 trains at 480×480); sizes it cannot take are
    refused."""
    from dysen.config import VideoSpec

    defaults = backbone.defaults
    frames = args.frames or defaults.num_frames
    size = args.size or min(defaults.height, defaults.width)
    backbone.latent_shape(frames, size, size)  # BackboneSizeError naming the sizes that fit
    return VideoSpec(num_frames=frames, height=size, width=size, fps=defaults.fps)


def _check_adapter_run(args: argparse.Namespace, fingerprint: str, video: VideoSpec) -> None:
    """Save ``RUN/adapter.json`` on a fresh run; on a resume, refuse a backbone whose denoiser changed, or other
    clips."""
    from dysen.run_folder import as_saved, read_settings, write_settings
    from dysen.train.loop import TrainError

    path = args.out / ADAPTER_FILE
    clips = {"frames": video.num_frames, "size": video.height}
    saved = read_settings(path) if args.resume else None
    if saved is not None:
        if saved["fingerprint"] != fingerprint:
            raise TrainError(f"the denoiser of {args.backbone} changed since this run started: resume refused")
        if saved.get("clips", clips) != clips:
            raise TrainError(f"cannot resume {args.out} with other clips {clips}: saved {saved['clips']}")
        return
    if _is_main_process():
        config = _adapter_config(args.config)
        settings = {"config": dataclasses.asdict(config), "backbone": args.backbone, "fingerprint": fingerprint}
        write_settings(path, as_saved({**settings, "clips": clips}))


def _adapter_config(source: str | dict[str, Any]) -> Any:
    """An ``AdapterTrainConfig``: a preset's name, an ``adapter.json`` (or bare config JSON) file, or its dict."""
    from dysen.train.adapter_task import ADAPTER_PRESETS, AdapterTrainConfig

    return _preset_or_file(source, ADAPTER_PRESETS, AdapterTrainConfig)


def _backbone_config(source: str | dict[str, Any]) -> Any:
    """A ``BackboneTrainConfig``: a preset's name, a ``backbone.json`` (or bare config JSON) file, or its dict."""
    from dysen.train.backbone_task import BACKBONE_PRESETS, BackboneTrainConfig

    return _preset_or_file(source, BACKBONE_PRESETS, BackboneTrainConfig)


def _preset_or_file(source: str | dict[str, Any], presets: dict[str, Any], config_class: type) -> Any:
    """A ``config_class`` from a preset's name, a run's settings file (its ``config`` entry) or bare config JSON,
    or the dict of one."""
    import json

    from dysen.models.pretrained import config_from_dict

    if isinstance(source, dict):
        return config_from_dict(config_class, source)
    if source in presets:
        return presets[source]
    path = Path(source)
    if not path.is_file():
        raise DysenError(f"--config {source} is neither a preset ({', '.join(presets)}) nor a file")
    data = json.loads(path.read_text(encoding="utf-8"))
    return config_from_dict(config_class, data.get("config", data))


def _weights_text(weights: dict[str, int]) -> str:
    return ", ".join(f"'{predicate}' x{count}" for predicate, count in weights.items())


def _cached(
    args: argparse.Namespace, vae: Any, dataset: Dataset, collate: Callable[[list[Any]], Any]
) -> tuple[Dataset, Callable[[list[Any]], Any]]:
    """The posterior moments of every clip, encoded into ``--cache-latents`` by the main process first."""
    from accelerate import PartialState

    from dysen.train.latents import LatentDataset, cache_latents, collate_latents

    state = PartialState(cpu=args.cpu)
    with state.main_process_first():  # the others find the finished cache
        cache_latents(vae.to(state.device), dataset, collate, args.cache_latents, batch_size=args.batch_size,
                      progress=state.is_main_process, workers=args.workers)  # fmt: skip
    return LatentDataset(args.cache_latents), collate_latents


def _start_run(
    args: argparse.Namespace, preset: str | None, adjust: Callable[[Any], DysenVDMConfig] | None = None
) -> DysenVDMConfig:
    """The model config (the saved one when resuming), written to ``RUN/config.yaml`` on a fresh run."""
    from dysen.config import load_config, save_config
    from dysen.train.loop import refuse_existing_run

    saved = args.out / CONFIG_FILE
    if args.resume and saved.is_file():
        _save_world_settings(args)
        return load_config(saved)
    refuse_existing_run(args.out)
    _save_world_settings(args)
    config = load_config(preset) if preset is not None else None
    config = adjust(config) if adjust is not None else config
    if _is_main_process():
        save_config(config, saved)
    return config


def _train_config(args: argparse.Namespace) -> TrainConfig:
    from dysen.train.loop import TrainConfig

    return TrainConfig(
        steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        warmup_steps=args.warmup, schedule=args.schedule, ema_decay=args.ema_decay,
        mixed_precision=args.mixed_precision, seed=args.seed, save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        num_workers=args.workers, cpu=args.cpu, sample_every=args.sample_every, sample_count=args.sample_count,
        sharding=args.sharding,
    )  # fmt: skip


def _dataset(args: argparse.Namespace, video: VideoSpec) -> tuple[Dataset, Callable[[list[Any]], Any]]:
    """Dynamic Shapes drawn on the fly at the model's video size, a dataset on disk (``--data``, ``--root``), or
    shards (``--shards``, dysen's or video2dataset's: a stream, shuffled in a buffer; resuming replays the epoch,
    see ``dysen.train.loop``)."""
    if video.height != video.width:
        raise DysenError(f"training clips are square: the config's video is {video.width}x{video.height}")
    from dysen.data.datasets import ClipSampling

    sampling = ClipSampling(num_frames=video.num_frames, size=video.height, train=True, seed=args.seed)
    if getattr(args, "shards", None) is not None:
        from dysen.data.datasets import collate
        from dysen.data.shards import open_shards

        return open_shards(args.shards, sampling, gold=args.gold, shuffle=SHUFFLE_BUFFER, seed=args.seed), collate
    if args.data == "shapes" and args.root is None:
        from dysen.data.shapes import ShapesConfig
        from dysen.data.shapes.dataset import ShapesDataset, collate

        shapes = ShapesConfig(size=video.height, num_frames=video.num_frames, fps=video.fps, **world_settings(args))
        return ShapesDataset(args.num_clips, "train", args.seed, shapes), collate
    if args.root is None:
        raise DysenError(f"--data {args.data} needs --root, the folder that holds the dataset")
    from dysen.data.datasets import collate, open_dataset

    return open_dataset(args.data, args.root, "train", sampling, gold=args.gold), collate


def _load_vae(path: Path) -> KLVideoAutoencoder:
    """The 3D autoencoder in a train-vae run folder (``model/``), a model folder, or a pipeline (``vae/``)."""
    from dysen.models.vae import KLVideoAutoencoder

    for folder in (path / MODEL_DIR, path / "vae", path):
        if (folder / "config.json").is_file():
            return KLVideoAutoencoder.from_pretrained(folder)
    raise DysenError(f"no trained autoencoder in {path}: train one with `dysen train-vae --out {path}`")


def _fit_latent_scale(
    vae: KLVideoAutoencoder, dataset: Dataset, collate: Callable[[list[Any]], Any], batch: int
) -> None:
    """Set the AE's latent shift/scale from the posterior means of the first clips (mean 0, std 1)."""
    import torch
    from torch.utils.data import DataLoader

    means = []
    with torch.no_grad():
        for i, items in enumerate(DataLoader(dataset, batch, collate_fn=collate)):
            if i == SCALE_BATCHES:
                break
            if items["video"] is not None:
                device = next(vae.parameters()).device
                means.append(vae.eval().posterior(items["video"].to(device)).mean.cpu())  # [B, c, t, h, w]
    vae.fit_scale(torch.cat(means))


def _seeded(seed: int, build: Callable[[], Any]) -> Any:
    """``build()`` with the torch RNG seeded: the same initial weights in every process and every rerun."""
    import torch

    torch.manual_seed(seed)
    return build()


def _is_main_process() -> bool:
    """Rank 0 of the launcher (torchrun sets RANK; a process without it is alone); read without starting Accelerate
    before ``train``."""
    return os.environ.get("RANK", "0") == "0"
