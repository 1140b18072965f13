"""One denoising step of a Wan transformer with DSG control off and on: per-step time and peak memory (issue 24).

The real Wan2.1-T2V-1.3B transformer config (``dysen.backbones.wan.WAN21_T2V_1_3B_TRANSFORMER``) with random
weights, or ``--config tiny`` for a CPU smoke run. A step is what the sampler does with classifier-free guidance:
one transformer call on the two passes [2, 16, t, h, w] (the prompt's and the empty one's) with UMT5-sized text
states [2, 512, 4096]. Control is the one ``dysen generate --control-strength`` installs (``dysen.backbones.control``):
a logit bias on every block's text cross-attention from a synthetic plan of two objects in boxes, each named by
three prompt tokens, on the text pass; ``--self-strength`` adds the optional self-attention mask (a dense [N, N]
bias: 2.1 GB at 480×832×81 in bfloat16). Rows are timed interleaved (off, on, off, on, …) so that a busy machine
slows both alike; the median is reported with the control's cost as a ratio (issue 24's target: at most 1.10).
Peak memory is ``torch.cuda.max_memory_allocated`` per row (CUDA only).

    python benchmarks/backbone_speed.py --device cuda --dtype bf16 --out benchmarks/results/backbone_speed.json
    python benchmarks/backbone_speed.py --config tiny --frames 9 --height 64 --width 64 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import SimpleNamespace

import torch
from report import emit, machine
from unet_speed import timed

from dysen.backbones.control import ControlState, controlled
from dysen.backbones.wan import WAN21_T2V_1_3B_TRANSFORMER, WanBackbone

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TINY = {**WAN21_T2V_1_3B_TRANSFORMER, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64,
        "num_layers": 2, "text_dim": 64, "freq_dim": 32}  # fmt: skip
TEXT_TOKENS = 512  # WanPipeline's max_sequence_length


def build(config: dict, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """A ``WanTransformer3DModel`` of ``config`` with random weights, in eval mode."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        return WanTransformer3DModel(**config).to(dtype).eval()


def synthetic_control(frames: int, grid: tuple[int, int], strength: float, self_strength: float) -> ControlState:
    """A plan of two objects, each in a box of a quarter of the frame, moving right over the frames, named by three
    prompt tokens each: the biases a real plan gives, at the same sizes."""
    gh, gw = grid
    values = -torch.ones(2, frames, gh, gw)  # [K, F, gh, gw]: −1 outside the box
    for f in range(frames):
        x = (f * (gw // 2)) // max(frames - 1, 1)  # left edge moves across the frame
        values[0, f, : gh // 2, x : x + gw // 2] = 1.0
        values[1, f, gh // 2 :, gw // 2 - x // 2 : gw - x // 2] = 1.0
    tokens = torch.zeros(2, TEXT_TOKENS)  # [K, L]
    tokens[0, 10:13] = tokens[1, 20:23] = 1.0
    return ControlState(values, tokens, strength, [True, False], active_steps=10**9, layout="video",
                        self_strength=self_strength)  # fmt: skip


def denoising_step(model: torch.nn.Module, args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    """The inputs of one guided step and the call that runs it."""
    config = model.config
    t = (args.frames - 1) // 4 + 1  # Wan's causal VAE: 1 + 4·m frames -> 1 + m latent frames
    h, w = args.height // 8, args.width // 8
    x = torch.randn(2, config.in_channels, t, h, w, device=device, dtype=dtype)  # [P, C, t, h, w]
    text = torch.randn(2, TEXT_TOKENS, config.text_dim, device=device, dtype=dtype)  # [P, L, D]
    timestep = torch.full((2,), 900.0, device=device)

    def call() -> None:
        with torch.inference_mode():
            model(hidden_states=x, timestep=timestep, encoder_hidden_states=text, return_dict=False)

    patch = config.patch_size
    return call, (t, h // patch[1], w // patch[2])


def gpu_name(device: torch.device) -> str | None:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def add_video_flags(p: argparse.ArgumentParser) -> None:
    """The transformer (the real Wan2.1-1.3B config or a tiny one) and the video size: 480×832×81 by default."""
    p.add_argument("--config", choices=("wan2.1-t2v-1.3b", "tiny"), default="wan2.1-t2v-1.3b")
    p.add_argument("--frames", type=int, default=81, help="video frames (1 + 4·m)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_video_flags(p)
    p.add_argument("--strength", type=float, default=2.0, help="control strength s of the 'on' row")
    p.add_argument("--self-strength", type=float, default=0.0, help="adds a row with the self-attention mask too")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = WAN21_T2V_1_3B_TRANSFORMER if args.config == "wan2.1-t2v-1.3b" else TINY
    model = build(config, dtype, device)
    call, (frames, gh, gw) = denoising_step(model, args, device, dtype)
    holder = SimpleNamespace(transformer=model, transformer_2=None)
    cross, own = WanBackbone.cross_attentions(holder), WanBackbone.self_attentions(holder)  # type: ignore[arg-type]

    def row(strength: float, self_strength: float) -> Callable[[], AbstractContextManager]:
        if strength == 0 and self_strength == 0:
            return nullcontext
        state = synthetic_control(frames, (gh, gw), strength, self_strength)

        def installed() -> AbstractContextManager:
            state.begin_step()
            return controlled(cross if strength else {}, state, own if self_strength else None)

        return installed

    rows = {"control off": row(0.0, 0.0), f"control s={args.strength:g}": row(args.strength, 0.0)}
    if args.self_strength:
        name = f"control s={args.strength:g} + self-mask m={args.self_strength:g}"
        rows[name] = row(args.strength, args.self_strength)
    peaks: dict[str, int | None] = {}
    for name, context in rows.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            with context():
                call()
        peaks[name] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, context in rows.items():
            with context():
                times[name].append(timed(call, device))
    base = statistics.median(times["control off"])
    report = {
        "machine": machine(device=str(device), gpu=gpu_name(device), torch=torch.__version__),
        "settings": {**vars(args), "out": str(args.out) if args.out else None, "latent_tokens": frames * gh * gw,
                     "params": sum(p.numel() for p in model.parameters())},  # fmt: skip
        "rows": [
            {"name": name, "step_s_median": statistics.median(values), "step_s": values,
             "ratio_to_off": statistics.median(values) / base,
             "peak_gb": None if peaks[name] is None else round(peaks[name] / 2**30, 2)}
            for name, values in times.items()
        ],  # fmt: skip
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
