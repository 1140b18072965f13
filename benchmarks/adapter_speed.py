"""One training step of a DSG adapter on a frozen Wan transformer: step time, peak memory and MFU (issue 25).

What ``dysen train-adapter`` does per step, on the real Wan2.1-T2V-1.3B transformer config with random weights
(``--config tiny`` for a CPU smoke run): the frozen transformer in ``--dtype`` with the adapter's gated layers
hooked after every ``--every``-th block, the adapter (and its RGTrm) in float32 under autocast, the backbone's
flow-matching loss on one clip of latents [1, 16, t, h, w] with text states [1, 512, 4096], the grounding tokens of
a Dynamic Shapes gold DSG (its label vectors random, at MiniLM's 384), backward, and an AdamW step on the adapter
alone. ``--gradient-checkpointing`` recomputes the frozen blocks in the backward pass (the adapter's hooks keep
their grounding for it, as in training). FLOPs come from ``torch.utils.flop_counter`` on one step; MFU is
FLOP/s over ``--peak-tflops`` (H100 SXM bf16 dense: 989).

    python benchmarks/adapter_speed.py --device cuda --dtype bf16 --gradient-checkpointing --peak-tflops 989 \\
        --out benchmarks/results/adapter_speed.json
    python benchmarks/adapter_speed.py --config tiny --frames 9 --height 64 --width 64 --dtype fp32 --steps 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import torch
from backbone_speed import DTYPES, TEXT_TOKENS, TINY, add_video_flags, build, gpu_name
from report import emit, machine
from torch.utils.flop_counter import FlopCounterMode
from unet_speed import timed

from dysen.backbones.adapter import DSGAdapter, adapter_parameters, wan_adapter_config
from dysen.backbones.schedule import latent_frame_spans
from dysen.backbones.wan import WAN21_T2V_1_3B_TRANSFORMER, WanBackbone
from dysen.diffusion.loss import FlowSigmas, flow_matching_loss
from dysen.models.graph_batch import GraphBatch
from dysen.models.rgtrm import RGTrmConfig

LABEL_DIM = 384  # MiniLM's label vectors, as train-adapter reads them


def gold_graphs(frames: int, device: torch.device) -> GraphBatch:
    """A Dynamic Shapes clip's gold DSG (with boxes) for ``frames`` video frames, label vectors random."""
    from dysen.data.shapes import ShapesConfig
    from dysen.data.shapes.dataset import ShapesDataset

    dsg = ShapesDataset(4, "train", 0, ShapesConfig(size=64, num_frames=16)).gold_dsg(3)
    graphs = GraphBatch.from_dsgs([dsg], frames)
    graphs = dataclasses.replace(graphs, label_embeddings=torch.randn(len(graphs.labels), LABEL_DIM))
    return graphs.to(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_video_flags(p)
    p.add_argument("--every", type=int, default=3, help="an adapter layer after every this many blocks")
    p.add_argument("--rgtrm-dim", type=int, default=512)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="bf16", help="the frozen backbone's weights and autocast")
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    p.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s in --dtype, for MFU")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = WAN21_T2V_1_3B_TRANSFORMER if args.config == "wan2.1-t2v-1.3b" else TINY
    transformer = build(config, dtype, device).requires_grad_(False)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    rgtrm = RGTrmConfig(label_dim=LABEL_DIM, dim=args.rgtrm_dim, num_layers=2, num_heads=8, layout=True)
    adapter_config = wan_adapter_config(dict(transformer.config), every=args.every, rgtrm=rgtrm)
    torch.manual_seed(0)
    adapter = DSGAdapter(adapter_config).to(device).train()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-4)
    t, h, w = (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8
    x0 = torch.randn(1, config["in_channels"], t, h, w, device=device)  # [1, C, t, h, w]
    text = torch.randn(1, TEXT_TOKENS, config["text_dim"], device=device, dtype=dtype)  # [1, L, D]
    graphs, spans = gold_graphs(args.frames, device), latent_frame_spans(args.frames, 4)
    sigmas, generator = FlowSigmas(shift=3.0), torch.Generator(device).manual_seed(0)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()

    def model_fn(x: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = transformer(hidden_states=x.to(dtype), timestep=timestep, encoder_hidden_states=cond, return_dict=False)
        return out[0]

    def step() -> None:
        with autocast:
            objects = adapter.rgtrm(graphs).objects
            adapter.use_grounding(adapter.ground(objects, spans))  # kept for a checkpointed backward
            loss = flow_matching_loss(model_fn, x0, text, sigmas, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    holder = SimpleNamespace(transformer=transformer, transformer_2=None)
    with adapter.installed(WanBackbone.adapter_sites(holder), None):  # type: ignore[arg-type]
        step()  # warm-up
        with FlopCounterMode(display=False) as counter:
            step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = [timed(step, device) for _ in range(args.steps)]
    median, flops = statistics.median(times), counter.get_total_flops()
    backbone = sum(p.numel() for p in transformer.parameters())
    report = {
        "machine": machine(device=str(device), gpu=gpu_name(device), torch=torch.__version__),
        "settings": {**vars(args), "out": str(args.out) if args.out else None, "latent_tokens": t * h * w // 4},
        "backbone_params": backbone,
        "adapter_params": adapter_parameters(adapter_config),
        "step_s_median": median,
        "step_s": times,
        "flops_per_step": flops,
        "tflops_per_s": flops / median / 1e12,
        "mfu": flops / median / (args.peak_tflops * 1e12) if args.peak_tflops else None,
        "peak_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
