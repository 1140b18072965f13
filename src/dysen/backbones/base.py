"""``Backbone``: a pretrained latent video denoiser with its VAE, text encoder and scheduler.

The project speaks one latent layout, [B, C, T, h, w], and one model function (``dysen.diffusion.loss.ModelFn``:
``denoise_fn(x, t, conditions) -> prediction``), so a backbone plugs into the one sampler
(``dysen.diffusion.sampler.denoise``) like the project's own 3D-UNet. Each implementation (``wan``, ``unet3d``)
adapts its diffusers/transformers modules to that: text states, the model's prediction (flow velocity, ε or v),
and the VAE's latent scaling. The geometry rules live here: how many latent frames a video of T frames has (a
causal temporal VAE with factor k takes T = 1 + k·m frames, a per-frame VAE any T) and the token grid that later
control masks are drawn on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from dysen.errors import DysenError

if TYPE_CHECKING:
    from dysen.backbones.components import FolderIndex
    from dysen.backbones.control import TokenLayout

PredictionType = Literal["flow", "epsilon", "v_prediction"]
DTypeName = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[DTypeName, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
Text = tuple[torch.Tensor, torch.Tensor]  # states [B, L, D], mask [B, L] (bool)


class BackboneError(DysenError, ValueError):
    """A backbone option, or a request (frames, size) the backbone cannot take."""


class BackboneSizeError(BackboneError):
    """A number of frames or a resolution the backbone's VAE and patching cannot represent."""


@dataclass(frozen=True)
class BackboneOptions:
    """How a backbone is loaded and where it runs."""

    dtype: DTypeName = "float32"  # weights of the denoiser and the text encoder (the VAE stays float32)
    device: str | None = None  # where the denoising runs; None: "cuda" when a GPU exists, else "cpu"
    offload: bool = False  # sequential CPU offload (accelerate's hooks): weights stay in CPU memory; needs a GPU
    max_text_tokens: int | None = None  # text states per prompt; None: the backbone's own (Wan 512, CLIP 77)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise BackboneError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.max_text_tokens is not None and self.max_text_tokens < 1:
            raise BackboneError(f"max_text_tokens must be >= 1, got {self.max_text_tokens}")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The ``torch.dtype`` of ``dtype``."""
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class BackboneDefaults:
    """What a backbone makes when asked for nothing in particular (its pipeline's ``__call__`` defaults)."""

    height: int
    width: int
    num_frames: int
    fps: int
    steps: int
    guidance: float  # classifier-free guidance scale


@dataclass(frozen=True)
class BackboneGeometry:
    """How a backbone's video maps to latents and tokens, read from its configs before any weight is loaded."""

    name: str  # short name shown to users ("wan", "unet3d")
    latent_channels: int
    spatial_factor: int  # pixels per latent pixel (VAE)
    temporal_factor: int  # video frames per latent frame after the first (1: a per-frame VAE)
    patch: tuple[int, int]  # latent pixels per token (h, w)
    defaults: BackboneDefaults

    def video_size(
        self, num_frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        """``(num_frames, height, width)`` with each unset one the backbone's default."""
        d = self.defaults
        return (
            d.num_frames if num_frames is None else num_frames,
            d.height if height is None else height,
            d.width if width is None else width,
        )

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of a ``num_frames`` video: (T - 1) // k + 1 for a causal VAE with temporal factor k
        (Wan: k = 4, T = 1, 5, 9, …), T for a per-frame VAE (k = 1)."""
        k = self.temporal_factor
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise BackboneSizeError(f"num_frames must be a whole number >= 1, got {num_frames!r}")
        if (num_frames - 1) % k:
            low = (num_frames - 1) // k * k + 1
            raise BackboneSizeError(
                f"the {self.name} backbone's causal VAE encodes 1 + {k}·m frames (1, {1 + k}, {1 + 2 * k}, …); "
                f"{num_frames} is not one: use {low} or {low + k}"
            )
        return (num_frames - 1) // k + 1

    def frames_at_least(self, num_frames: int) -> int:
        """The fewest frames this backbone takes that are at least ``num_frames`` (Wan: 16 -> 17; per-frame: 16)."""
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise BackboneSizeError(f"num_frames must be a whole number >= 1, got {num_frames!r}")
        k = self.temporal_factor
        return -(-(num_frames - 1) // k) * k + 1

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """Tokens per latent frame (rows, columns) of a ``height`` x ``width`` video: latent size / patch size."""
        cell_h, cell_w = self.spatial_factor * self.patch[0], self.spatial_factor * self.patch[1]
        for label, size, cell in (("height", height, cell_h), ("width", width, cell_w)):
            if isinstance(size, bool) or not isinstance(size, int) or size < cell or size % cell:
                low = max(cell, size // cell * cell) if isinstance(size, int) else cell
                raise BackboneSizeError(
                    f"{label} must be a positive multiple of {cell} for the {self.name} backbone "
                    f"({self.spatial_factor}x VAE, patch {self.patch}), got {size!r}: use {low} or {low + cell}"
                )
        return height // cell_h, width // cell_w

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, t, h, w)`` of the latents of a ``num_frames`` x ``height`` x ``width`` video; refuses sizes the
        backbone cannot take (``BackboneSizeError``)."""
        self.token_grid(height, width)
        t = self.latent_frames(num_frames)
        return self.latent_channels, t, height // self.spatial_factor, width // self.spatial_factor


@dataclass(frozen=True, eq=False)
class AdapterSite:
    """A block of a backbone's denoiser after which a DSG adapter layer may run (``dysen.backbones.adapter``)."""

    module: nn.Module  # the block; its output is the residual stream the layer adds to
    dim: int  # that stream's width
    heads: int  # the block's own attention heads (an adapter layer's default)
    slot: int  # the adapter layer position: Wan 2.2 A14B's two experts share them (block i of each)
    layout: TokenLayout  # "video": the block returns [B, N, d]; "frames": a tuple whose first item is [B·F, d, h, w]


class Backbone(ABC):
    """A loaded backbone: modules placed on their device, ready to denoise.

    Subclasses read their ``geometry`` from the folder's configs and implement ``encode_prompt``, ``denoise_fn``
    and the VAE's ``encode_video``/``decode_latents``.
    """

    name: str  # short name shown to users ("wan", "unet3d")
    folder: Path  # the local diffusers folder it was loaded from
    geometry: BackboneGeometry
    device: torch.device  # where the denoising loop's tensors live (the execution device under offload)
    dtype: torch.dtype  # the denoiser's weights
    tokenizer: Any  # the text encoder's (fast) tokenizer
    max_text_tokens: int  # text states per prompt
    token_layout: TokenLayout  # how its cross-attention sees the video (``dysen.backbones.control``)

    def __init__(self, scheduler_class: type, scheduler_config: dict[str, Any]) -> None:
        self._scheduler_class, self._scheduler_config = scheduler_class, scheduler_config

    @classmethod
    @abstractmethod
    def read_geometry(cls, index: FolderIndex) -> BackboneGeometry:
        """The geometry of the backbone in ``index``'s folder, from its JSON configs alone (no weights)."""

    @property
    def defaults(self) -> BackboneDefaults:
        """What it makes when asked for nothing in particular."""
        return self.geometry.defaults

    def latent_frames(self, num_frames: int) -> int:
        """``BackboneGeometry.latent_frames``."""
        return self.geometry.latent_frames(num_frames)

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """``BackboneGeometry.token_grid``."""
        return self.geometry.token_grid(height, width)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``BackboneGeometry.latent_shape``."""
        return self.geometry.latent_shape(num_frames, height, width)

    # -- sampling ----------------------------------------------------------------------------------------------

    @property
    def prediction_type(self) -> PredictionType:
        """What the denoiser predicts: the flow velocity (Wan), ε or v (its scheduler's ``prediction_type``)."""
        config = self._scheduler_config
        kind = config.get("prediction_type")
        if kind == "flow_prediction" or "FlowMatch" in self._scheduler_class.__name__:
            return "flow"
        return "v_prediction" if kind == "v_prediction" else "epsilon"

    @property
    def num_train_timesteps(self) -> int:
        """Noise levels the denoiser was trained on (the most steps a scheduler can space)."""
        return int(self._scheduler_config.get("num_train_timesteps", 1000))

    def make_scheduler(self) -> Any:
        """A fresh scheduler of the folder's class and config (schedulers keep per-run state)."""
        return self._scheduler_class.from_config(self._scheduler_config)

    @abstractmethod
    def encode_prompt(self, texts: list[str]) -> Text:
        """Text states [B, L, D] (the denoiser's dtype, on ``device``) and mask [B, L] of ``texts``."""

    def clean_prompt(self, text: str) -> str:
        """``text`` as ``encode_prompt`` tokenizes it (Wan collapses whitespace); the text itself by default."""
        return text

    @abstractmethod
    def cross_attentions(self) -> dict[str, Any]:
        """The denoiser's text cross-attention modules by name: where DSG control processors go."""

    @abstractmethod
    def cross_attention_probs(
        self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """The probabilities [B, N, L] (mean over heads) with which a cross-attention module of ``cross_attentions``
        lets N video tokens [B, N, D] attend to L text tokens [B, L, D'], from its own queries and keys (without
        any mask): what energy guidance differentiates."""

    @abstractmethod
    def self_attentions(self) -> dict[str, Any]:
        """The denoiser's self-attention modules over a frame's (or the video's) tokens by name: where the optional
        region masking of DSG control goes."""

    @property
    @abstractmethod
    def denoiser(self) -> nn.Module:
        """The network that denoises (Wan's transformer, the first of Wan 2.2 A14B's two; the UNet3D): an adapter is
        tied to its config."""

    @abstractmethod
    def adapter_sites(self) -> list[AdapterSite]:
        """The blocks a DSG adapter's layers follow, in slot order (``dysen.backbones.adapter``)."""

    @abstractmethod
    def denoise_fn(self, x: torch.Tensor, t: torch.Tensor, conditions: Text) -> torch.Tensor:
        """The model function of ``denoise``: x_t [P, C, T, h, w] at timestep ``t`` under text states
        ``conditions`` ([P, L, D], [P, L]) -> the prediction [P, C, T, h, w] in float32."""

    # -- the VAE -------------------------------------------------------------------------------------------------

    @abstractmethod
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] -> normalised latents [1, C, t, h, w] (float32, the posterior mean)."""

    @abstractmethod
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [1, C, t, h, w] -> uint8 frames [T, H, W, 3] on the CPU."""
