"""Compositional classifier-free guidance with separate text and DSG scales.

Classifier-free guidance (Ho & Salimans 2022, eq. 6) extended to two conditions, nested as in
InstructPix2Pix (Brooks et al. 2023, eq. 3) with the text as the outer and the DSG as the inner one:

    ε̃ = ε(∅, ∅) + s_text · (ε(text, ∅) − ε(∅, ∅)) + s_dsg · (ε(text, dsg) − ε(text, ∅))

Rewritten as a weighted sum of the three passes,

    ε̃ = (1 − s_text) · ε(∅, ∅) + (s_text − s_dsg) · ε(text, ∅) + s_dsg · ε(text, dsg),

a pass whose weight is exactly 0 need not run: s_text = s_dsg (plain CFG on the joint condition) skips
(text, ∅); s_text = 1 skips (∅, ∅); s_dsg = 0 (or no DSG at all) skips (text, dsg). The weights apply
unchanged to v-predictions, which are linear in ε at fixed x_t. The remaining passes run as one batch.
"""

from __future__ import annotations

import torch

UNCOND, TEXT, FULL = "uncond", "text", "full"  # the passes (∅, ∅), (text, ∅), (text, dsg)
PASSES = (UNCOND, TEXT, FULL)


def guidance_weights(text_scale: float, dsg_scale: float) -> dict[str, float]:
    """The non-zero weights of the passes, in ``PASSES`` order; they always sum to 1."""
    weights = {UNCOND: 1.0 - text_scale, TEXT: text_scale - dsg_scale, FULL: dsg_scale}
    return {name: w for name, w in weights.items() if w != 0.0}


def combine(predictions: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Σ_pass w_pass · prediction_pass; every prediction has the same shape [B, C, T, h, w]."""
    return sum(w * predictions[name] for name, w in weights.items())  # type: ignore[return-value]


def compositional_cfg(
    eps_uncond: torch.Tensor, eps_text: torch.Tensor, eps_full: torch.Tensor, text_scale: float, dsg_scale: float
) -> torch.Tensor:
    """ε̃ in the nested form of the module docstring (reference for ``guidance_weights``/``combine``)."""
    return eps_uncond + text_scale * (eps_text - eps_uncond) + dsg_scale * (eps_full - eps_text)
