"""``dysen train-vae``, ``train-vdm`` and ``finetune``: stages 1, 2 and 4 over the one loop (``dysen.train``).

Each fills a run folder: ``config.yaml`` (the resolved model config), ``train_config.json``,
``metrics.jsonl``, ``checkpoints/step-*`` and, at the end, ``model/``: the autoencoder for ``train-vae``
(latent scale fitted), a whole pipeline for ``train-vdm``/``finetune`` (``dysen generate --model RUN/model``).
Several processes: ``accelerate launch --num_processes N [--cpu] -m dysen.cli train-vdm …``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dysen.data.datasets import DATASETS
from dysen.errors import DysenError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from dysen.config import DysenVDMConfig
    from dysen.models.vae import KLVideoAutoencoder
    from dysen.train.loop import TrainConfig

MODEL_DIR = "model"
CONFIG_FILE = "config.yaml"
SHUFFLE_BUFFER = 1000  # clips in the shuffle buffer when training from --shards
SCALE_BATCHES = 4  # batches of posterior means that fit the latent scale after train-vae


def configure_train_vae(p: argparse.ArgumentParser) -> None:
    _configure_common(p, lr=3.6e-5)
    p.add_argument("--config", default="shapes-tiny", help="preset name or YAML of the model (default: shapes-tiny)")
    p.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the KL term (default: 1e-6)")
    p.add_argument(
        "--recon-loss",
        choices=("l1", "l2"),
        default="l1",
        help="reconstruction loss: l1 (LDM/LVDM) or l2 (better for small objects on plain backgrounds, e.g. shapes)",
    )


def configure_train_vdm(p: argparse.ArgumentParser) -> None:
    _configure_common(p, lr=6e-5)
    p.add_argument("--config", default="shapes-tiny", help="preset name or YAML of the model (default: shapes-tiny)")
    p.add_argument(
        "--vae", type=Path, required=True, help="the autoencoder: a train-vae run, its model/ or a pipeline"
    )


def configure_finetune(p: argparse.ArgumentParser) -> None:
    _configure_common(p, lr=2e-5)
    p.add_argument("--init", type=Path, required=True, help="the trained pipeline folder to start from")


def _configure_common(p: argparse.ArgumentParser, lr: float) -> None:
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, metrics, model/)")
    p.add_argument("--data", default="shapes", choices=DATASETS, help="shapes: drawn on the fly unless --root")
    p.add_argument("--root", type=Path, help="dataset folder (for shapes: where `dysen data shapes` wrote)")
    p.add_argument(
        "--shards", type=Path, help="train from WebDataset shards in this folder (dysen data shards) instead of --data"
    )
    p.add_argument("--gold", type=Path, help="JSONL side file of gold DSGs (dysen dsg annotate)")
    p.add_argument("--num-clips", type=int, default=10_000, help="on-the-fly Dynamic Shapes clips (default: 10000)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps in all (default: 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per micro-batch per process (default: 8)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default: {lr:g})")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (default: 0)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant", help="LR after warm-up")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay, 0 = off (default: 0.999)")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, data order and every draw (default: 0)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (default: 500)")
    p.add_argument("--resume", choices=["latest"], help="continue the run in --out from its newest checkpoint")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per process (default: 0)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")


def run_train_vae(args: argparse.Namespace) -> int:
    """Stage 1: train the 3D KL autoencoder, then fit its latent scale and write ``RUN/model``."""
    from dysen.models.vae import KLVideoAutoencoder
    from dysen.train.loop import train
    from dysen.train.stages import VAETask

    config = _start_run(args, args.config)
    if config.vae.kind != "kl3d":
        raise DysenError(f"--config {args.config} uses a pretrained per-frame VAE: there is no autoencoder to train")
    vae = _seeded(args.seed, lambda: KLVideoAutoencoder(config.vae.kl3d))
    dataset, collate = _dataset(args, config)
    result = train(VAETask(vae, args.kl_weight, recon_loss=args.recon_loss), dataset, collate, _train_config(args), args.out, bool(args.resume))
    if _is_main_process():
        _fit_latent_scale(vae, dataset, collate, args.batch_size)
        folder = vae.save_pretrained(args.out / MODEL_DIR)
        print(f"trained the autoencoder for {result.step} steps (last loss {result.loss:.4f}); wrote {folder}")
        print(f"skipped {result.skipped} bad items ({result.skipped_draws} draws)")
    return 0


def run_train_vdm(args: argparse.Namespace) -> int:
    """Stage 2: train the 3D-UNet + RGTrm on the frozen ``--vae``'s latents with gold DSGs."""
    from dysen.config import VAESpec
    from dysen.models.rgtrm import RGTrm
    from dysen.models.unet3d import UNet3D
    from dysen.pipeline import build_text_encoder

    vae = _load_vae(args.vae)
    config = _start_run(args, args.config, lambda c: dataclasses.replace(c, vae=VAESpec(kind="kl3d", kl3d=vae.config)))
    unet, rgtrm = _seeded(args.seed, lambda: (UNet3D(config.unet), RGTrm(config.rgtrm)))
    return _train_vdm(args, config, unet, rgtrm, vae, build_text_encoder(config.text_encoder))


def run_finetune(args: argparse.Namespace) -> int:
    """Stage 4: continue training a whole pipeline (``--init``) on in-domain data, gold DSGs."""
    from dysen.pipeline import DysenVDMPipeline

    pipe = DysenVDMPipeline.from_pretrained(args.init)
    config = _start_run(args, None, lambda _: pipe.config)
    return _train_vdm(args, config, pipe.unet, pipe.rgtrm, pipe.vae, pipe.text_encoder)


def _train_vdm(args: argparse.Namespace, config: DysenVDMConfig, unet: Any, rgtrm: Any, vae: Any, encoder: Any) -> int:
    """Train the VDM task, then write the pipeline (EMA weights) to ``RUN/model``."""
    from dysen.pipeline import DysenVDMPipeline
    from dysen.planner.build import build_planner
    from dysen.train.loop import train
    from dysen.train.stages import VDMTask

    dataset, collate = _dataset(args, config)
    task = VDMTask(unet, rgtrm, vae, encoder, config)
    result = train(task, dataset, collate, _train_config(args), args.out, bool(args.resume))
    if _is_main_process():
        pipe = DysenVDMPipeline(build_planner(config.planner), encoder, rgtrm, unet, vae.cpu(), config)
        folder = pipe.to("cpu").save_pretrained(args.out / MODEL_DIR)
        print(f"trained the VDM for {result.step} steps (last loss {result.loss:.4f}); wrote {folder}")
        print(f"skipped {result.skipped} bad items ({result.skipped_draws} draws)")
    return 0


def _start_run(
    args: argparse.Namespace, preset: str | None, adjust: Callable[[Any], DysenVDMConfig] | None = None
) -> DysenVDMConfig:
    """The model config (the saved one when resuming), written to ``RUN/config.yaml`` on a fresh run."""
    from dysen.config import load_config, save_config
    from dysen.train.loop import TrainError

    saved = args.out / CONFIG_FILE
    if args.resume and saved.is_file():
        return load_config(saved)
    if (args.out / "checkpoints").is_dir():
        raise TrainError(f"{args.out} already holds a training run: pass --resume latest, or choose a new --out")
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
        num_workers=args.workers, cpu=args.cpu,
    )  # fmt: skip


def _dataset(args: argparse.Namespace, config: DysenVDMConfig) -> tuple[Dataset, Callable[[list[Any]], Any]]:
    """Dynamic Shapes drawn on the fly at the model's video size, a dataset on disk (``--data``, ``--root``), or
    shards (``--shards``: a stream, shuffled in a buffer; resuming replays the epoch, see ``dysen.train.loop``)."""
    video = config.video
    if video.height != video.width:
        raise DysenError(f"training clips are square: the config's video is {video.width}x{video.height}")
    if getattr(args, "shards", None) is not None:
        from dysen.data.datasets import collate
        from dysen.data.shards import ShardDataset

        return ShardDataset(args.shards, shuffle=SHUFFLE_BUFFER, seed=args.seed), collate
    if args.data == "shapes" and args.root is None:
        from dysen.data.shapes import ShapesConfig
        from dysen.data.shapes.dataset import ShapesDataset, collate

        shapes = ShapesConfig(size=video.height, num_frames=video.num_frames, fps=video.fps)
        return ShapesDataset(args.num_clips, "train", args.seed, shapes), collate
    if args.root is None:
        raise DysenError(f"--data {args.data} needs --root, the folder that holds the dataset")
    from dysen.data.datasets import ClipSampling, collate, open_dataset

    sampling = ClipSampling(num_frames=video.num_frames, size=video.height, train=True, seed=args.seed)
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
    """Rank 0 of the launcher (torchrun and accelerate set RANK); read without starting Accelerate before ``train``."""
    return os.environ.get("RANK", "0") == "0"
