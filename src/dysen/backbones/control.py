"""Training-free DSG control of a backbone: a logit bias on its text cross-attention, early in denoising.

In the manner of TrailBlazer (Ma et al. 2024) and Direct-a-Video (Yang et al. 2024), on the cross-attention (``attn2``)
of Wan's blocks and of the UNet3D's spatial transformers (research notes ``backbones2026.md`` §2.3, §6.2 step 3):
inside its box in a latent frame, an object's phrase tokens get the logit bias +s (their attention weight × e^s
before normalising), outside it −s; an event's phrase tokens the same inside its window (agent ∪ target), and no
bias outside it; the global prompt's tokens and the padding get none, and neither does the unconditional (negative
prompt) pass of classifier-free guidance. The bias is added to the logits by the attention kernel itself
(``scaled_dot_product_attention``'s float ``attn_mask``), so no attention map is ever materialised; it applies for
the first ``ceil(steps · N)`` of the N denoising steps (layout is decided early: Peekaboo, LVD) and the processors
pass through untouched after that. Strength 0 installs nothing.

Optionally (``self_strength`` > 0), the video tokens' self-attention is masked by the same boxes for the same steps,
as Peekaboo (Jain et al. 2024) does with hard masks: a token inside an object's box gets the logit bias −s towards
tokens outside all of that object's boxes, a background token towards every token inside a box (Wan's 3D attention
over all latent frames: ``attn1`` of every block; the UNet3D's spatial self-attention per frame). Unlike the text
bias it applies to every pass, the unconditional one too: the layout is not the prompt's. Its bias is a dense
[N, N] tensor over the N video tokens of a sample (Wan2.1 at 832×480×81: N = 32,760, 2.1 GB in bfloat16), so it is
off by default.

The processors wrap the backbone's own (``WanAttnProcessor``, ``AttnProcessor2_0``) and only add the mask, so the
attention is computed as it is uncontrolled. Attention backends: torch SDPA (diffusers' default ``native``, and
``_native_math``/``_native_efficient``); with a float mask SDPA runs its memory-efficient (or math) kernel, not
flash. Backends that take no bias (flash, sage, xformers through diffusers' dispatcher) are refused.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from dysen.backbones.phrases import PhrasedPrompt
from dysen.backbones.schedule import ControlError, ControlSchedule

TokenLayout = Literal["video", "frames"]
"""How a denoiser's cross-attention sees the video: "video", one query sequence of (t, h, w) tokens per sample
(Wan); "frames", one sequence of (h, w) tokens per frame, the batch being samples × frames (UNet3D)."""

MASK_BACKENDS = ("native", "_native_math", "_native_efficient")
"""diffusers attention backends that add a float ``attn_mask`` to the logits."""


@dataclass(frozen=True)
class ControlSettings:
    """How strongly and how long the plan steers the backbone."""

    strength: float = 0.0  # logit bias s (nats) on phrase tokens: +s inside the region, −s outside; 0: off
    steps: float = 0.4  # share of the denoising steps that are steered (the first ones)
    self_strength: float = 0.0  # logit bias −s between video tokens of different regions in self-attention; 0: off
    energy: float = 0.0  # η of energy guidance on the cross-attention maps (``dysen.backbones.energy``); 0: off

    def __post_init__(self) -> None:
        bounds = (("strength", 0.0, math.inf), ("steps", 0.0, 1.0), ("self_strength", 0.0, math.inf),
                  ("energy", 0.0, math.inf))  # fmt: skip
        for name, low, high in bounds:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
                bound = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f"a finite number >= {low:g}"
                raise ControlError(f"control {name} must be {bound}, got {value!r}")
            if not math.isfinite(value):
                raise ControlError(f"control {name} must be finite, got {value!r}")

    @property
    def enabled(self) -> bool:
        """Whether any step is steered at all."""
        return (self.strength > 0 or self.self_strength > 0 or self.energy > 0) and self.steps > 0

    def active_steps(self, total: int) -> int:
        """How many of ``total`` denoising steps are steered (the first ones)."""
        return min(total, math.ceil(self.steps * total - 1e-9)) if self.enabled else 0  # 0.4 · 5 is 2.0000000000000004


def phrase_values(schedule: ControlSchedule, phrased: PhrasedPrompt, text_tokens: int) -> tuple[torch.Tensor, ...]:
    """The bias of each phrase in units of the strength, per latent token, and its tokens: ``(values [K, F, gh, gw]``
    in {+1, −1, 0}, ``tokens [K, L]`` 0/1) for the K objects and events of ``schedule``."""
    values, tokens = [], []
    for item in schedule.objects:
        values.append(item.masks.float() * 2 - 1)  # [F, gh, gw]: +1 inside its box, −1 everywhere else
        tokens.append(_indicator(phrased.objects.get(item.name, (0, 0)), text_tokens))  # a dropped phrase: none
    for item in schedule.events:
        value = item.masks.float() * 2 - 1  # [F, gh, gw]
        value[: item.window[0]] = 0  # not biased outside its window
        value[item.window[1] :] = 0
        values.append(value)
        tokens.append(_indicator(phrased.events.get(item.index, (0, 0)), text_tokens))
    if not values:
        return torch.zeros(0, schedule.latent_frames, *schedule.grid), torch.zeros(0, text_tokens)
    return torch.stack(values), torch.stack(tokens)


def _indicator(span: tuple[int, int], length: int) -> torch.Tensor:
    row = torch.zeros(length)  # [L]
    row[span[0] : span[1]] = 1
    return row


class ControlState:
    """What the processors of one run read: the bias per phrase, the strength, the passes it applies to, the
    objects' regions and the self-attention strength, and whether the current denoising step is steered
    (``begin_step``, called once per step by the model function)."""

    def __init__(
        self,
        values: torch.Tensor,
        tokens: torch.Tensor,
        strength: float,
        text_rows: list[bool],
        active_steps: int,
        layout: TokenLayout,
        regions: torch.Tensor | None = None,
        self_strength: float = 0.0,
    ) -> None:
        self.values, self.tokens = values, tokens  # [K, F, gh, gw], [K, L]
        self.strength, self.layout = strength, layout
        self.regions = values[:0] > 0 if regions is None else regions  # bool [R, F, gh, gw]: the objects' cells
        self.self_strength = self_strength
        self.text_rows = torch.tensor(text_rows, dtype=torch.float32)  # [P] 1 for passes that see the prompt
        self.active_steps = active_steps
        self.step = -1
        self._suspended = False
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    @property
    def active(self) -> bool:
        """Whether the current step is steered."""
        return not self._suspended and 0 <= self.step < self.active_steps

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No bias for the block: a model call outside the guidance passes (energy guidance's probe of the text
        pass alone) runs the backbone's own attention."""
        self._suspended = True
        try:
            yield
        finally:
            self._suspended = False

    def begin_step(self) -> None:
        """Move on to the next denoising step."""
        self.step += 1
        if not self.active:
            self.clear()

    def clear(self) -> None:
        """Drop the biases built so far (they are rebuilt on demand)."""
        self._cache.clear()

    def bias(self, batch: int, queries: int, keys: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The additive logit bias of a cross-attention call with ``batch`` x ``queries`` video tokens and ``keys``
        text tokens: [P, 1, F·h·w, L] ("video") or [P·F, h·w, L] ("frames"), zero on the unconditional pass."""
        key = (batch, queries, keys, dtype, device)
        if key not in self._cache:
            self._cache[key] = self._bias(batch, queries, keys).to(device=device, dtype=dtype)
        return self._cache[key]

    def _bias(self, batch: int, queries: int, keys: int) -> torch.Tensor:
        count, frames = self.values.shape[:2]
        passes = len(self.text_rows)
        per_frame = queries // frames if self.layout == "video" else queries
        if keys != self.tokens.shape[1] or batch != (passes if self.layout == "video" else passes * frames):
            raise ControlError(
                f"a cross-attention of batch {batch} over {keys} text tokens does not match the control schedule "
                f"({passes} passes, {frames} latent frames, {self.tokens.shape[1]} text tokens)"
            )
        h, w = level_grid(per_frame, self.values.shape[2:])
        values = self.values
        if (h, w) != tuple(values.shape[2:]):  # a lower UNet level: the share of each coarse cell covered
            values = F.interpolate(values, size=(h, w), mode="area")  # [K, F, h, w]
        per_token = self.strength * torch.einsum("kfn,kl->fnl", values.flatten(2), self.tokens)  # [F, h·w, L]
        rows = self.text_rows.view(passes, 1, 1, 1)
        bias = rows * per_token[None]  # [P, F, h·w, L]
        if self.layout == "video":
            return bias.reshape(passes, 1, frames * h * w, keys)  # [P, 1, N, L] (broadcast over heads)
        return bias.reshape(passes * frames, h * w, keys)  # [P·F, h·w, L]


    def self_bias(self, batch: int, queries: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The additive logit bias of a self-attention call over ``batch`` x ``queries`` video tokens: −s between
        tokens of different regions, [1, 1, F·h·w, F·h·w] ("video") or [P·F, h·w, h·w] ("frames"), every pass."""
        key = ("self", batch, queries, dtype, device)
        if key not in self._cache:
            self._cache[key] = self._self_bias(batch, queries).to(device=device, dtype=dtype)
        return self._cache[key]

    def _self_bias(self, batch: int, queries: int) -> torch.Tensor:
        frames = self.regions.shape[1]
        per_frame = queries // frames if self.layout == "video" else queries
        fits = queries % frames == 0 if self.layout == "video" else batch % frames == 0
        if not fits:
            raise ControlError(
                f"a self-attention of batch {batch} over {queries} video tokens does not match the control schedule "
                f"({frames} latent frames)"
            )
        h, w = level_grid(per_frame, tuple(self.regions.shape[2:]))
        regions = self.regions
        if (h, w) != tuple(regions.shape[2:]):  # a lower UNet level: the cells at least half inside a region
            regions = F.interpolate(regions.float(), size=(h, w), mode="area") >= 0.5  # [R, F, h, w]
        if self.layout == "video":
            labels = regions.flatten(1).T.float()  # [F·h·w, R]: every latent frame in one sequence
            return -self.self_strength * (~same_region(labels)).float()[None, None]  # [1, 1, N, N]
        labels = regions.flatten(2).permute(1, 2, 0).float()  # [F, h·w, R]: one sequence per frame
        bias = -self.self_strength * (~same_region(labels)).float()  # [F, h·w, h·w]
        return bias.repeat(batch // frames, 1, 1)  # [P·F, h·w, h·w]


def same_region(labels: torch.Tensor) -> torch.Tensor:
    """bool [..., N, N]: whether two of N tokens with region labels [..., N, R] (1 inside) share a region, or are
    both outside every region (the background)."""
    shared = labels @ labels.transpose(-1, -2) > 0  # [..., N, N]
    background = labels.sum(-1) == 0  # [..., N]
    return shared | (background[..., :, None] & background[..., None, :])


def level_grid(tokens: int, grid: tuple[int, ...]) -> tuple[int, int]:
    """The (h, w) of ``tokens`` query tokens per frame: the token grid, or a UNet level below it (each halving
    rounds up, as a stride-2 convolution with padding 1 does)."""
    h, w = int(grid[0]), int(grid[1])
    for _ in range(16):
        if h * w == tokens:
            return h, w
        h, w = -(-h // 2), -(-w // 2)
    raise ControlError(f"{tokens} video tokens per frame fit no level of the {grid[0]}x{grid[1]} token grid")


class _BiasedAttention:
    """An attention processor: the backbone's own, with a bias of the control added to its attention mask while
    the current step is steered (an exact passthrough otherwise); ``_bias`` says which bias, None for none."""

    def __init__(self, original: Any, state: ControlState) -> None:
        self.original, self.state = original, state

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        bias = self._bias(hidden_states, encoder_hidden_states) if self.state.active else None
        if bias is not None:
            attention_mask = bias if attention_mask is None else attention_mask + bias
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)

    def _bias(self, hidden: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor | None:
        raise NotImplementedError


class ControlledCrossAttention(_BiasedAttention):
    """A cross-attention processor with the phrases' bias (``ControlState.bias``)."""

    def _bias(self, hidden: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor | None:
        if text is None:
            return None
        batch, queries = hidden.shape[:2]  # [B, N, D]
        return self.state.bias(batch, queries, text.shape[1], hidden.dtype, hidden.device)


class MaskedSelfAttention(_BiasedAttention):
    """A self-attention processor with the regions' bias (``ControlState.self_bias``)."""

    def _bias(self, hidden: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor | None:
        if text is not None:
            return None
        batch, queries = hidden.shape[:2]  # [B, N, D]
        return self.state.self_bias(batch, queries, hidden.dtype, hidden.device)


def check_backend(processor: Any) -> None:
    """Refuse a processor whose attention backend takes no float mask (``MASK_BACKENDS``)."""
    if not hasattr(type(processor), "_attention_backend"):
        return  # calls torch SDPA itself (AttnProcessor2_0)
    backend = processor._attention_backend
    if backend is None:
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        backend = _AttentionBackendRegistry.get_active_backend()[0]
    name = getattr(backend, "value", backend)
    if name not in MASK_BACKENDS:
        raise ControlError(
            f"DSG control adds a bias to attention logits, which diffusers' {name!r} attention backend "
            f"does not take; use one of {', '.join(MASK_BACKENDS)} (unset DIFFUSERS_ATTN_BACKEND), or "
            "--control-strength 0"
        )


@contextmanager
def controlled(
    modules: dict[str, Any], state: ControlState, self_attentions: dict[str, Any] | None = None
) -> Iterator[int]:
    """Install a ``ControlledCrossAttention`` on each attention module of ``modules`` and a ``MaskedSelfAttention``
    on each of ``self_attentions`` for the block; yields how many; the original processors are back afterwards,
    whatever happens."""
    wrappers = {name: ControlledCrossAttention for name in modules}
    wrappers.update({name: MaskedSelfAttention for name in self_attentions or {}})
    modules = {**modules, **(self_attentions or {})}
    originals = {name: module.processor for name, module in modules.items()}
    for processor in originals.values():
        check_backend(processor)
    try:
        for name, module in modules.items():
            module.set_processor(wrappers[name](originals[name], state))
        yield len(modules)
    finally:
        for name, module in modules.items():
            module.set_processor(originals[name])
        state.clear()
