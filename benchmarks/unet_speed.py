"""One training step (forward + backward, no optimiser) of dysen's UNet3D vs diffusers' UNet3DConditionModel.

Equal work, as nearly as two architectures allow: the same latent ``[B, 4, T, H, W]``, the same text context
``[B, L, Dt]``, the same dtype, both in training mode, attention at the same resolutions with the same head width,
and parameter counts within 5 % (ours is sized by ``ff_mult`` search, see ``build_ours``). Ours is timed with
its DSG path on and with ``dsg=None`` (feed-forward multipliers by level), and with one uniform multiplier;
diffusers' model has no DSG path. Repeats are interleaved (a, b, c, a, b, c, ...) so that a noisy
shared machine slows all three alike; the median is reported. FLOPs come from ``torch.utils.flop_counter``.

    python benchmarks/unet_speed.py --out bench.json
    python benchmarks/unet_speed.py --device cuda --dtype bf16 --batch 4 --size 32 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from dysen.models.unet3d import UNet3D, UNet3DConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_reference(args: argparse.Namespace) -> torch.nn.Module:
    """diffusers' ModelScope UNet, shrunk: 4 levels, attention at the first three (and the middle)."""
    from diffusers import UNet3DConditionModel

    widths = tuple(args.width * m for m in (1, 2, 4, 4))
    return UNet3DConditionModel(
        sample_size=args.size,
        in_channels=4,
        out_channels=4,
        block_out_channels=widths,
        layers_per_block=2,
        cross_attention_dim=args.text_dim,
        attention_head_dim=args.head_dim,  # in UNet3DConditionModel this is the head width (heads = width / it)
        norm_num_groups=32,
    )


def build_ours(args: argparse.Namespace, target: int, by_level: bool) -> UNet3D:
    """Our UNet with the same widths, levels and attention resolutions, sized to ``target`` parameters.

    ``by_level=False``: one ``ff_mult`` for every transformer, the one that brings the count nearest ``target``.
    ``by_level=True``: the feed-forwards at the two highest resolutions get the usual small multipliers (2, 4)
    and the low-resolution levels the one that matches ``target``: parameters cost FLOPs in proportion to the
    number of positions they see, so they are cheapest where the feature maps are small.
    """

    def make(ff_mult: int) -> UNet3D:
        cfg = UNet3DConfig(
            model_channels=args.width,
            channel_mult=(1, 2, 4, 4),
            num_res_blocks=2,
            attention_resolutions=(1, 2, 4),
            head_dim=args.head_dim,
            ff_mult=(2, 4, ff_mult, ff_mult) if by_level else ff_mult,
            text_dim=args.text_dim,
            dsg_dim=args.dsg_dim,
            conv=args.conv,
        )
        return UNet3D(cfg)

    best = min(range(1, 33), key=lambda mult: abs(n_params(make(mult)) - target))
    return make(best)


def training_step(model: torch.nn.Module, call: Callable[[], torch.Tensor], autocast) -> Callable[[], None]:
    """A closure running forward + backward of ``call`` (gradients are dropped after, never applied)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast():
            out = call()
        out.float().square().mean().backward()

    return step


def flops_of(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def machine(device: torch.device) -> dict:
    info = {
        "cores": os.cpu_count(),
        "processor": _cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg_1m_before": os.getloadavg()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=8, help="latent frames T")
    p.add_argument("--size", type=int, default=32, help="latent height = width")
    p.add_argument("--width", type=int, default=32, help="diffusers block_out_channels[0] (levels x1, x2, x4, x4)")
    p.add_argument("--head-dim", type=int, default=32, help="channels per attention head, both models")
    p.add_argument("--text-len", type=int, default=77)
    p.add_argument("--text-dim", type=int, default=384)
    p.add_argument("--dsg-dim", type=int, default=256)
    p.add_argument("--dsg-steps", type=int, default=4, help="scene graphs M in the DSG")
    p.add_argument("--conv", choices=("2d", "2+1d"), default="2+1d", help="our ResBlock convs")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="autocast dtype (fp32: none)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s of the device, for MFU")
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype != torch.float32 else nullcontext
    torch.manual_seed(0)
    ref = build_reference(args).to(device).train()
    ours = build_ours(args, n_params(ref), by_level=True).to(device).train()
    uniform = build_ours(args, n_params(ref), by_level=False).to(device).train()

    b, t, m = args.batch, args.frames, args.dsg_steps
    z = torch.randn(b, 4, t, args.size, args.size, device=device)
    steps_t = torch.randint(0, 1000, (b,), device=device)
    text = torch.randn(b, args.text_len, args.text_dim, device=device)
    text_mask = torch.ones(b, args.text_len, dtype=torch.bool, device=device)
    frame_to_sg = torch.zeros(b, t, m, device=device)
    frame_to_sg[:, torch.arange(t), torch.arange(t) * m // t] = 1.0  # frame t shows step floor(t*M/T)
    dsg_tokens = torch.randn(b, m, args.dsg_dim, device=device)
    dsg = (dsg_tokens, torch.ones(b, m, dtype=torch.bool, device=device), frame_to_sg)

    runs = {
        "diffusers_UNet3DConditionModel": training_step(ref, lambda: ref(z, steps_t, text).sample, autocast),
        "ours_with_dsg": training_step(ours, lambda: ours(z, steps_t, (text, text_mask), dsg), autocast),
        "ours_without_dsg": training_step(ours, lambda: ours(z, steps_t, (text, text_mask), None), autocast),
        "ours_uniform_ff_with_dsg": training_step(
            uniform, lambda: uniform(z, steps_t, (text, text_mask), dsg), autocast
        ),
    }
    host = machine(device)
    flops = {name: flops_of(step) for name, step in runs.items()}
    for _ in range(args.warmup):
        for step in runs.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, step in runs.items():
            times[name].append(timed(step, device))
    host["loadavg_1m_after"] = os.getloadavg()[0]
    report = _report(
        args,
        host,
        ref,
        {"ours_with_dsg": ours, "ours_without_dsg": ours, "ours_uniform_ff_with_dsg": uniform},
        flops,
        times,
    )
    text_out = json.dumps(report, indent=2)
    print(text_out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text_out + "\n")


def _report(args, host, ref, ours: dict[str, UNet3D], flops, times) -> dict:
    results = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        entry = {
            "params": n_params(ref if name.startswith("diffusers") else ours[name]),
            "median_s": round(median, 4),
            "min_s": round(min(ts), 4),
            "times_s": [round(x, 4) for x in ts],
            "gflop_per_step": round(flops[name] / 1e9, 2),
            "achieved_gflop_s": round(flops[name] / median / 1e9, 2),
        }
        if args.peak_tflops:
            entry["mfu"] = round(flops[name] / median / (args.peak_tflops * 1e12), 4)
        results[name] = entry
    ref_s = results["diffusers_UNet3DConditionModel"]["median_s"]
    return {
        "benchmark": "UNet training step (forward + backward, no optimizer)",
        "input": {
            "latent": [args.batch, 4, args.frames, args.size, args.size],
            "text": [args.batch, args.text_len, args.text_dim],
            "dsg_steps": args.dsg_steps,
            "dtype": args.dtype,
            "device": args.device,
        },
        "ours_config": dict(vars(ours["ours_with_dsg"].config)),
        "ours_uniform_ff_mult": ours["ours_uniform_ff_with_dsg"].config.ff_mult,
        "machine": host,
        "results": results,
        "speedup_vs_diffusers": {
            name: round(ref_s / r["median_s"], 3) for name, r in results.items() if name.startswith("ours")
        },
        "param_ratio_ours_over_diffusers": {
            name: round(n_params(model) / n_params(ref), 4) for name, model in ours.items()
        },
    }


if __name__ == "__main__":
    main()
