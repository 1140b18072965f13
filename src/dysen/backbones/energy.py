"""Energy guidance on the cross-attention maps: the latents pushed, by gradient, towards attention inside the boxes.

An ablation of DSG control (research notes ``backbones2026.md`` §2.3): where the logit bias of ``control`` changes
what the attention computes, this changes the latents so that the backbone's own attention falls where the plan
puts each object, in the manner of LVD (Lian et al. 2024) and of the backward guidance of Chen et al. (2024,
"Training-free layout control with cross-attention guidance", eq. 3). For each object k with phrase tokens T_k and
each latent frame f where its box covers the token cells M_kf,

    a_k(n)  = mean over heads and over T_k of softmax(q_n·K^T / √d) at video token n   (the text pass only)
    E_kf    = (1 − Σ_{n ∈ M_kf} a_k(n) / Σ_{n in frame f} a_k(n))²
    E       = mean over the cross-attention layers and the (k, f) where the object is present,

and before each of the first steered steps the latents move by one normalised gradient step,
x_t ← x_t − η · ∇E / rms(∇E), so η is in units of the latents' own scale. The gradient runs back through the
whole denoiser (one extra forward and backward pass per steered step); the maps are computed from the queries and
keys beside the backbone's own attention, which is left as it is. Memory: one [heads, N, L] map per layer is kept
for the backward pass (Wan2.1 at 832×480×81: 12 × 32,760 × 512 floats, 0.8 GB a layer, 24 GB for 30 layers in
float32), so on real models it needs a large GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from dysen.backbones.control import TokenLayout, level_grid

ProbsFn = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(attention module, video hidden states [B, N, D], text states [B, L, D']) -> probabilities [B, N, L]`` (the
mean over heads of the softmax of the module's own queries and keys)."""


class AttentionRecorder:
    """Collects the cross-attention probabilities of the layers it is installed on while ``on``."""

    def __init__(self, probs_fn: ProbsFn) -> None:
        self.probs_fn, self.on = probs_fn, False
        self.maps: list[torch.Tensor] = []


class RecordingCrossAttention:
    """A cross-attention processor: the one it wraps, and the probabilities of this call into the recorder."""

    def __init__(self, original: Any, recorder: AttentionRecorder) -> None:
        self.original, self.recorder = original, recorder

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if self.recorder.on and encoder_hidden_states is not None:
            self.recorder.maps.append(self.recorder.probs_fn(attn, hidden_states, encoder_hidden_states))
        return self.original(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


@contextmanager
def recording(modules: dict[str, Any], recorder: AttentionRecorder) -> Iterator[AttentionRecorder]:
    """Wrap each cross-attention of ``modules`` (its processor as installed now) with a recorder for the block."""
    originals = {name: module.processor for name, module in modules.items()}
    try:
        for name, module in modules.items():
            module.set_processor(RecordingCrossAttention(originals[name], recorder))
        yield recorder
    finally:
        for name, module in modules.items():
            module.set_processor(originals[name])


def layout_energy(
    maps: list[torch.Tensor], regions: torch.Tensor, tokens: torch.Tensor, layout: TokenLayout
) -> torch.Tensor:
    """E (a scalar) of the module docstring, from the text pass's cross-attention ``maps`` ([1, F·h·w, L] per layer
    for "video", [F, h·w, L] for "frames"), the objects' cells ``regions`` (bool [K, F, gh, gw]) and their phrase
    tokens ``tokens`` ([K, L] 0/1)."""
    frames = regions.shape[1]
    weights = tokens / tokens.sum(-1, keepdim=True).clamp_min(1)  # [K, L]: the mean over each phrase's tokens
    energies = []
    for probs in maps:
        probs = probs.reshape(frames, -1, probs.shape[-1]) if layout == "video" else probs  # [F, h·w, L]
        h, w = level_grid(probs.shape[1], tuple(regions.shape[2:]))
        cells = regions.float()
        if (h, w) != tuple(regions.shape[2:]):  # a lower UNet level: the cells at least half inside
            cells = (F.interpolate(cells, size=(h, w), mode="area") >= 0.5).float()
        cells = cells.flatten(2)  # [K, F, h·w]
        attention = torch.einsum("fnl,kl->kfn", probs.float(), weights)  # [K, F, h·w]
        inside = (attention * cells).sum(-1) / attention.sum(-1).clamp_min(1e-12)  # [K, F]
        present = cells.any(-1)  # [K, F]
        if present.any():
            energies.append(((1 - inside) ** 2)[present].mean())
    if not energies:
        return torch.zeros(())
    return torch.stack(energies).mean()


def guided_latents(
    latents: torch.Tensor, energy_of: Callable[[torch.Tensor], torch.Tensor], eta: float
) -> torch.Tensor:
    """One normalised gradient step on the energy: x − η · ∇E / rms(∇E) (x unchanged where ∇E is 0)."""
    x = latents.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(energy_of(x), x)
    rms = grad.pow(2).mean().sqrt()
    if not torch.isfinite(rms) or rms == 0:
        return latents
    return (latents - eta * grad / rms).detach()
