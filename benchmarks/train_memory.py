"""Parameters and peak memory of one training step of a preset's UNet3D at batch 1, with and without gradient
checkpointing (issue 26 §7), each configuration in a fresh process.

A step is what ``train-vdm`` does on cached latents: the UNet in training mode on z_t [1, c, t, h, w] of the
preset's video, its text states [1, 77, D_t] and DSG tokens [1, M, D_dsg] (random, of the preset's widths), the
ε loss, backward, then (``--optimizer adamw``) one AdamW step. Peak memory is the process's peak resident set
(``ru_maxrss``) minus its resident set before the model was built (the Python and torch baseline), so it covers
weights, gradients, activations and, with AdamW, its two moments. A child is capped at ``--limit-gb`` of address
space: a step that needs more fails with an allocation error, reported as "did not fit" instead of waking the
kernel's OOM killer on a shared machine. The RGTrm (which reads the DSG into those tokens) is counted, not run:
a few percent of the UNet's parameters.

    python benchmarks/train_memory.py --presets paper-t2v-256,lvdm-ucf101 --out benchmarks/results/train_memory.json
    python benchmarks/train_memory.py --presets shapes-tiny --optimizer adamw --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from report import emit, machine


def _rss_mb() -> float:
    """The current resident set of this process, MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(preset: str, checkpointing: bool, optimizer: str, threads: int) -> dict:
    """One training step of ``preset``'s UNet in this process (see the module docstring)."""
    import torch

    from dysen.config import load_config
    from dysen.models.rgtrm import RGTrm
    from dysen.models.unet3d import UNet3D

    torch.set_num_threads(threads)
    config = load_config(preset)
    unet_config = dataclasses.replace(config.unet, gradient_checkpointing=checkpointing)
    video = config.video
    c, t, h, w = config.vae.latent_shape(video.num_frames, video.height, video.width)
    baseline = _rss_mb()
    torch.manual_seed(0)
    unet = UNet3D(unet_config).train()
    with torch.device("meta"):
        rgtrm_params = sum(p.numel() for p in RGTrm(config.rgtrm).parameters())
    steps = 8  # DSG time steps M
    z = torch.randn(1, c, t, h, w)  # [1, c, t, h, w]
    text = (torch.randn(1, 77, config.unet.text_dim), torch.ones(1, 77, dtype=torch.bool))  # [1, L, Dt], [1, L]
    frame_to_sg = torch.zeros(1, t, steps)
    frame_to_sg[0, torch.arange(t), torch.arange(t) * steps // t] = 1.0  # latent frame f shows step fM/t
    dsg = (torch.randn(1, steps, config.unet.dsg_dim), torch.ones(1, steps, dtype=torch.bool), frame_to_sg)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5) if optimizer == "adamw" else None
    start = time.perf_counter()
    loss = (unet(z, torch.tensor([500]), text, dsg) - torch.randn_like(z)).square().mean()
    loss.backward()
    if opt is not None:
        opt.step()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux reports KB)
    params = sum(p.numel() for p in unet.parameters())
    return {
        "unet_params": params, "rgtrm_params": rgtrm_params, "latents": [c, t, h, w], "step_s": round(seconds, 1),
        "peak_mb_above_baseline": round(peak - baseline), "weights_mb": round(params * 4 / 2**20),
    }  # fmt: skip


def run_child(preset: str, checkpointing: bool, args: argparse.Namespace) -> dict:
    """``child`` in a fresh process capped at ``--limit-gb`` of address space."""
    limit = int(args.limit_gb * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    command = [sys.executable, __file__, "--child", preset, "--optimizer", args.optimizer]
    command += ["--threads", str(args.threads), *(["--checkpointing"] if checkpointing else [])]
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=cap, env={**os.environ})
    row = {"preset": preset, "gradient_checkpointing": checkpointing}
    if done.returncode == 0:
        return {**row, **json.loads(done.stdout.strip().splitlines()[-1])}
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    fits = "alloc" in tail.lower() or "memory" in tail.lower()
    return {**row, "did_not_fit": f"over {args.limit_gb} GB" if fits else None, "error": tail[:300]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="paper-t2v-256,lvdm-ucf101", help="comma-separated preset names")
    p.add_argument("--optimizer", choices=("adamw", "none"), default="none", help="also take an AdamW step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit-gb", type=float, default=18.0, help="address-space cap of each child process")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.checkpointing, args.optimizer, args.threads)))
        return
    rows = [run_child(name, ckpt, args) for name in args.presets.split(",") for ckpt in (False, True)]
    settings = {"batch": 1, "optimizer": args.optimizer, "threads": args.threads, "limit_gb": args.limit_gb}
    emit({"machine": machine(), "settings": settings, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
