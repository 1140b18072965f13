"""Compositional classifier-free guidance with separate text and DSG scales.

Classifier-free guidance (Ho & Salimans 2022, eq. 6) extended to two conditions, nested as in
InstructPix2Pix (Brooks et al. 2023, eq. 3) with the text as the outer and the DSG as the inner one:

    ε̃ = ε(∅, ∅) + s_text · (ε(text, ∅) − ε(∅, ∅)) + s_dsg · (ε(text, dsg) − ε(text, ∅))

Rewritten as a weighted sum of the three passes,

    ε̃ = (1 − s_text) · ε(∅, ∅) + (s_text − s_dsg) · ε(text, ∅) + s_dsg · ε(text, dsg),

a pass whose weight is exactly 0 need not run: s_text = s_dsg (plain CFG on the joint condition) skips
(text, ∅); s_text = 1 skips (∅, ∅); s_dsg = 0 (or no DSG at all) skips (text, dsg). The weights apply
unchanged to v-predictions, which are linear in ε at fixed x_t. The remaining passes run as one batch
(``stack_passes``), always in the order (∅, ∅), (text, ∅), (text, dsg) of ``PASSES``.

This module knows no network: the graph condition it batches only has to provide ``expand`` and ``dropped``
(``dysen.models.rgtrm.GraphCondition`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import torch

PassName = Literal["uncond", "text", "full"]
UNCOND, TEXT, FULL = "uncond", "text", "full"  # the passes (∅, ∅), (text, ∅), (text, dsg)
PASSES: tuple[PassName, ...] = (UNCOND, TEXT, FULL)
Text = tuple[torch.Tensor, torch.Tensor]  # tokens [B, L, Dt], mask [B, L]


@dataclass(frozen=True)
class GuidancePass:
    """One UNet pass of the guidance: which conditions it sees (by ``name``) and its weight in ε̃."""

    name: PassName
    weight: float

    @property
    def sees_text(self) -> bool:
        """False for (∅, ∅): the pass runs on the null prompt."""
        return self.name != UNCOND

    @property
    def sees_graph(self) -> bool:
        """True for (text, dsg) only; the other passes get the null DSG (every key masked out)."""
        return self.name == FULL


def guidance_passes(text_scale: float, dsg_scale: float) -> tuple[GuidancePass, ...]:
    """The passes of non-zero weight, in ``PASSES`` order; their weights always sum to 1 (module docstring)."""
    weights = {UNCOND: 1.0 - text_scale, TEXT: text_scale - dsg_scale, FULL: dsg_scale}
    return tuple(GuidancePass(name, weights[name]) for name in PASSES if weights[name] != 0.0)


def combine(predictions: Sequence[torch.Tensor], passes: Sequence[GuidancePass]) -> torch.Tensor:
    """ε̃ = Σ_pass w_pass · prediction_pass, ``predictions`` in the order of ``passes``, each [B, C, T, h, w]."""
    return sum(p.weight * x for p, x in zip(passes, predictions, strict=True))  # type: ignore[return-value]


def compositional_cfg(
    eps_uncond: torch.Tensor, eps_text: torch.Tensor, eps_full: torch.Tensor, text_scale: float, dsg_scale: float
) -> torch.Tensor:
    """ε̃ in the nested form of the module docstring (reference for ``guidance_passes``/``combine``)."""
    return eps_uncond + text_scale * (eps_text - eps_uncond) + dsg_scale * (eps_full - eps_text)


C = TypeVar("C", bound="GraphConditionLike")


class GraphConditionLike(Protocol):
    """What ``stack_passes`` needs of a graph condition (``dysen.models.rgtrm.GraphCondition``)."""

    def expand(self: C, count: int) -> C:
        """A batch of one repeated ``count`` times."""
        ...

    def dropped(self: C, drop: torch.Tensor) -> C:
        """The null condition on the rows where ``drop`` [B] is True."""
        ...


def stack_passes(passes: Sequence[GuidancePass], text: Text, null_text: Text, graph_cond: C) -> tuple[Text, C]:
    """The conditions of ``passes`` stacked along the batch (batches of one in, ``len(passes)`` rows out), to run
    them in one UNet forward.

    (∅, ·) uses the null prompt; (·, ∅) keeps the DSG's keys with every one masked out, the null DSG that
    condition dropout trains (``dysen.diffusion.loss.condition_dropout``). It is used even when no pass sees
    the DSG, rather than no graph condition at all, so that ε(text, ∅) means the same in every call.
    """
    drop = torch.tensor([not p.sees_graph for p in passes])  # [P]
    return stack_text(passes, text, null_text), graph_cond.expand(len(passes)).dropped(drop)


def stack_text(passes: Sequence[GuidancePass], text: Text, null_text: Text) -> Text:
    """The text of ``passes`` stacked along the batch: the prompt's, or the null prompt's for (∅, ·); batches of
    one in, tokens [P, L, Dt] and mask [P, L] out."""
    tokens = torch.cat([text[0] if p.sees_text else null_text[0] for p in passes])  # [P, L, Dt]
    mask = torch.cat([text[1] if p.sees_text else null_text[1] for p in passes])  # [P, L]
    return tokens, mask
