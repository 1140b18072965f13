"""End-to-end ``dysen generate`` latency and peak memory for a randomly initialised ``shapes-tiny``.

Prints one JSON object: seconds to build the pipeline (loading MiniLM; imports excluded) and for each phase
(plan / encode / sample / decode) of the first call and the median of ``--repeats`` warm calls, the
denoising steps per second, the UNet forward batch (guidance passes), the peak resident memory of the
process (``resource.getrusage``), and the machine it ran on (cores, torch threads, and the load average,
which skews CPU timings on a shared machine).

    python benchmarks/generate_speed.py [--steps 20] [--repeats 3] [--dsg-guidance 2.0] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from dysen.config import load_config
from dysen.diffusion.guidance import guidance_weights
from dysen.pipeline import DysenVDMPipeline

PROMPT = "a red circle moves right, then a blue square jumps"


def measure(config_name: str, steps: int, repeats: int, guidance: float, dsg_guidance: float | None) -> dict:
    clock = time.perf_counter()
    pipe = DysenVDMPipeline.from_config(load_config(config_name))
    build_s = time.perf_counter() - clock

    def call() -> dict[str, float]:
        kwargs = {"steps": steps, "guidance": guidance, "dsg_guidance": dsg_guidance, "progress": False}
        return pipe(PROMPT, **kwargs).timings

    first = call()
    warm = [call() for _ in range(repeats)]
    median = {phase: statistics.median(t[phase] for t in warm) for phase in first}
    passes = len(guidance_weights(guidance, guidance if dsg_guidance is None else dsg_guidance))
    return {
        "config": config_name,
        "steps": steps,
        "unet_batch_per_step": passes,
        "build_s": build_s,
        "first_call_s": first,
        "first_call_total_s": sum(first.values()),
        "warm_call_s": median,
        "warm_call_total_s": sum(median.values()),
        "steps_per_s": steps / median["sample"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="shapes-tiny", help="preset or YAML (default: shapes-tiny)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default: 20)")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls to take the median of (default: 3)")
    parser.add_argument("--guidance", type=float, default=7.5, help="s_text (default: 7.5)")
    parser.add_argument("--dsg-guidance", type=float, default=None, help="s_dsg (default: = --guidance, 2 passes)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    result = measure(args.config, args.steps, args.repeats, args.guidance, args.dsg_guidance)
    result["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
