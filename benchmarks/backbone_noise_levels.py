"""Where a text-only flow-matching backbone loses the objects (issue 24 §4): from which noise level it still
draws what a real clip holds.

For each Dynamic Shapes validation clip, its latents x_0 are noised to x_σ = (1 − σ) x_0 + σ ε (SD3 eq. 3) at a
start level σ of the backbone's own schedule, and the flow ODE is integrated from there to σ = 0 with its
scheduler's steps (Euler: x ← x + (σ_next − σ) v, the caption as the only condition, no guidance); the decoded
video is scored against the clip's gold DSG. σ = 1 is plain generation; small σ keeps the clip's layout and asks
only for detail. A backbone that scores well from σ = 0.6 but not from 1.0 draws shapes it is shown and cannot
place or keep them itself: the high-noise regime is what it has not learnt.

Measured (the README's shapes-wan-tiny recipe, 3,500 steps of patch (1, 2, 2); 12 default-world val captions, 25
steps of its shifted schedule; 2-core VM, 1 thread, about 3 min)::

    start σ   object fidelity   action accuracy
    0.2            0.931            0.861
    0.4            0.889            0.861
    0.6            0.861            0.736
    0.8            0.583            0.389
    1.0            0.181            0.083

    python benchmarks/backbone_noise_levels.py BACKBONE_DIR [--num 12] [--steps 25] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dysen.backbones.base import Backbone
from dysen.backbones.folder import load_backbone
from dysen.data.shapes.dataset import ShapesDataset
from dysen.data.video import model_to_frames
from dysen.eval.dynamics import score_video

START_SIGMAS = (0.2, 0.4, 0.6, 0.8, 1.0)


@torch.no_grad()
def denoise_from(
    backbone: Backbone, x0: torch.Tensor, caption: str, start: float, steps: int, seed: int
) -> np.ndarray:
    """uint8 [T, H, W, 3]: ``x0`` [1, C, T, h, w] noised to the first level of the schedule at or below ``start``,
    then integrated to 0 by Euler steps of the backbone's flow (``v = ε − x_0``)."""
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas  # [steps + 1], from ~1 down to 0
    first = next(k for k in range(steps) if sigmas[k] <= start + 1e-6)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    x = (1 - sigmas[first]) * x0 + sigmas[first] * noise  # x_σ, SD3 eq. 3
    text = backbone.encode_prompt([caption])
    for k in range(first, steps):
        v = backbone.denoise_fn(x, scheduler.timesteps[k].reshape(()), text)  # [1, C, T, h, w]
        x = x + (sigmas[k + 1] - sigmas[k]) * v
    return backbone.decode_latents(x).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbone", type=Path, help="a backbone folder (dysen train-backbone's RUN/model)")
    parser.add_argument("--num", type=int, default=12, help="validation clips (default 12)")
    parser.add_argument("--steps", type=int, default=25, help="steps of the full schedule (default 25)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args()

    started = time.perf_counter()
    backbone = load_backbone(args.backbone)
    data = ShapesDataset(args.num, split="val")
    clips = [data[i] for i in range(args.num)]
    latents = [backbone.encode_video(model_to_frames(clip["video"])) for clip in clips]
    rows = []
    for start in START_SIGMAS:
        scores = [
            score_video(denoise_from(backbone, x0, clip["caption"], start, args.steps, seed=i), clip["dsg"])
            for i, (clip, x0) in enumerate(zip(clips, latents, strict=True))
        ]
        objects = [s.object_fidelity for s in scores if s.object_fidelity is not None]
        actions = [s.action_accuracy for s in scores if s.action_accuracy is not None]
        rows.append({"start_sigma": start, "object_fidelity": float(np.mean(objects)),
                     "action_accuracy": float(np.mean(actions))})  # fmt: skip
        print(f"start σ {start:.1f}: object fidelity {rows[-1]['object_fidelity']:.3f}, "
              f"action accuracy {rows[-1]['action_accuracy']:.3f}", flush=True)  # fmt: skip
    result = {
        "backbone": str(args.backbone), "num": args.num, "steps": args.steps, "rows": rows,
        "machine": f"{platform.platform()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
