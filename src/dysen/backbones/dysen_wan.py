"""A Wan trained here: a real ``WanTransformer3DModel`` with dysen's own VAE and MiniLM, as a diffusers-format folder.

Issue 24 §4 (shapes-wan-tiny): no real backbone weights can be downloaded here, so dysen trains its own small Wan
(``dysen train-backbone``) and loads it only through ``load_backbone`` / ``dysen generate --backbone``, the path
real Wan folders take. Design (option b of the issue's discussion): the folder is what ``save_pretrained`` writes,
``model_index.json`` + one subfolder per component, and

* the denoiser and the scheduler are the real diffusers classes, saved by their own ``save_pretrained``:
  ``WanTransformer3DModel`` (patch (1, 2, 2), text states by cross-attention, flow velocity out) and
  ``FlowMatchEulerDiscreteScheduler``;
* the VAE and the text encoder are dysen's own, named by an explicit entry of the component table
  (``dysen.backbones.components.COMPONENT_CLASSES``, library ``"dysen"``): the per-frame ``KLVideoAutoencoder``
  (the shipped shapes-tiny one gives 4×16×16×16 latents for 16×64×64 video: 16·8·8 = 1024 tokens) and the
  bundled all-MiniLM-L6-v2 (384-d), stored by reference (``text_encoder/config.json``), not copied;
* the pipeline class is ``DysenWanPipeline``, not ``WanPipeline``: diffusers cannot build this folder (its VAE and
  text encoder are not diffusers/transformers classes), so it does not claim to be one, and a ``WanPipeline``
  folder is still loaded only with Wan's own ``AutoencoderKLWan`` + UMT5 (``dysen.backbones.wan``). Both map to
  the same loader (``load_backbone``) and the same transformer code (``WanBackbone.denoise_fn``,
  ``cross_attentions``): DSG control and the one sampler see this model exactly as a real Wan.

Why not a real tiny ``AutoencoderKLWan`` (option a): it would have to be trained here first (hours of 2 CPUs the
denoiser needs), and its causal 4x temporal compression is the part a 16-frame toy world has least use for. The
per-frame VAE means no temporal compression: latent frames = frames (``temporal_factor`` 1).

Text states as ``WanPipeline`` pads UMT5's: MiniLM's last hidden states of the cleaned prompt, zero past its
tokens, padded to ``max_length`` (the transformer attends to every position, as it was trained). Sampling defaults
(size, frames, fps, steps, guidance) are the ``"defaults"`` entry of ``model_index.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dysen.atomic import staged_dir, write_text_atomic
from dysen.backbones.base import Backbone, BackboneDefaults, BackboneGeometry, BackboneOptions, Text
from dysen.backbones.components import INDEX_NAME, BackboneFolderError, FolderIndex, load_component, read_config
from dysen.backbones.placement import place, resolve_device
from dysen.backbones.wan import WAN_SCHEDULERS, WanBackbone, clean_wan_prompt
from dysen.encoders.minilm import locate_minilm
from dysen.encoders.text import MiniLMTextEncoder
from dysen.models.frames import frames_to_model, model_to_frames
from dysen.models.pretrained import config_from_dict

PIPELINE_CLASS = "DysenWanPipeline"
TEXT_CONFIG = "config.json"
BERT_SPECIAL_TOKENS = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
                       "mask_token": "[MASK]"}  # fmt: skip


@dataclass(frozen=True)
class WanSize:
    """The ``WanTransformer3DModel`` of a preset (the rest of its config follows from the VAE and text encoder)."""

    num_layers: int = 4
    num_attention_heads: int = 4
    attention_head_dim: int = 32  # width = heads × head_dim
    ffn_dim: int = 512
    freq_dim: int = 64  # sinusoidal timestep features
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (t, h, w) latent pixels per token, as Wan 2.1

    def build(self, latent_channels: int, text_dim: int) -> nn.Module:
        """A freshly initialised transformer (seed torch first for the same weights)."""
        from diffusers import WanTransformer3DModel

        return WanTransformer3DModel(
            patch_size=self.patch_size, num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim, in_channels=latent_channels, out_channels=latent_channels,
            text_dim=text_dim, freq_dim=self.freq_dim, ffn_dim=self.ffn_dim, num_layers=self.num_layers,
        )  # fmt: skip


@dataclass(frozen=True)
class MiniLMSpec:
    """The text encoder of the folder: MiniLM by reference (``text_encoder/config.json``)."""

    model: str | None = None  # a local BERT-style folder; None: the bundled all-MiniLM-L6-v2
    max_length: int = 64  # text states per prompt: the prompt's tokens, then zeros
    dim: int = 384  # width of the states (MiniLM: 384; checked against the loaded encoder)


class MiniLMStates:
    """MiniLM's states of cleaned prompts, zero past each prompt and padded to ``max_length``: [B, L, D]."""

    def __init__(self, spec: MiniLMSpec, device: str | torch.device = "cpu") -> None:
        self.spec = spec
        self.encoder = MiniLMTextEncoder(spec.model, max_length=spec.max_length, device=device)
        self._fast_tokenizer: Any = None

    @classmethod
    def load(cls, folder: Path) -> MiniLMStates:
        """The encoder that ``folder/config.json`` names."""
        data = json.loads((folder / TEXT_CONFIG).read_text(encoding="utf-8"))
        data.pop("_class", None)
        return cls(config_from_dict(MiniLMSpec, data))

    def save(self, folder: Path) -> None:
        """``folder/config.json``: the reference (no weights)."""
        data = {"_class": "MiniLMTextEncoder", **asdict(self.spec)}
        write_text_atomic(folder / TEXT_CONFIG, json.dumps(data, indent=2) + "\n")

    @property
    def tokenizer(self) -> Any:
        """A transformers fast tokenizer of the encoder's vocabulary: the token offsets DSG control reads (the
        bundled MiniLM runs on dysen's own tokenizer wrapper, which has none); same ids, same special tokens."""
        if self._fast_tokenizer is None:
            from transformers import AutoTokenizer, PreTrainedTokenizerFast

            source = locate_minilm(self.spec.model)
            file = Path(source) / "tokenizer.json"
            self._fast_tokenizer = (
                PreTrainedTokenizerFast(tokenizer_file=str(file), **BERT_SPECIAL_TOKENS)
                if file.is_file()
                else AutoTokenizer.from_pretrained(source, local_files_only=True)
            )
        return self._fast_tokenizer

    def to(self, device: torch.device) -> MiniLMStates:
        self.encoder.to(device)
        return self

    def __call__(self, texts: list[str]) -> Text:
        """States [B, L, D] (zero past each prompt; L = ``max_length``) and mask [B, L] of the cleaned ``texts``."""
        states, mask = self.encoder([clean_wan_prompt(text) for text in texts])  # [B, l, D], [B, l]
        if states.shape[-1] != self.spec.dim:
            raise BackboneFolderError(
                f"the text encoder gives {states.shape[-1]}-d states; the folder says {self.spec.dim}"
            )
        states = states * mask[..., None].to(states.dtype)  # zero past the prompt, as WanPipeline pads
        pad = self.spec.max_length - states.shape[1]
        return F.pad(states, (0, 0, 0, pad)), F.pad(mask, (0, pad))  # [B, L, D], [B, L]


class DysenWanBackbone(WanBackbone):
    """A loaded ``DysenWanPipeline`` folder: Wan's transformer and scheduler, dysen's per-frame VAE and MiniLM."""

    def __init__(self, index: FolderIndex, options: BackboneOptions) -> None:
        device = resolve_device(options)
        scheduler_class = load_component(index, "scheduler", WAN_SCHEDULERS)
        transformer = load_component(index, "transformer", ("WanTransformer3DModel",), options.torch_dtype)
        vae = load_component(index, "vae", ("KLVideoAutoencoder",))
        text = load_component(index, "text_encoder", ("MiniLMTextEncoder",))
        scheduler_config = read_config(index, "scheduler", "scheduler_config.json")
        self._setup(transformer, vae, text, scheduler_class, scheduler_config, self.read_geometry(index), device)
        self.folder, self.dtype = index.folder, options.torch_dtype
        place([transformer, vae], device, options.offload)
        text.to(device)

    @classmethod
    def from_modules(
        cls, transformer: nn.Module, vae: nn.Module, text: MiniLMStates, scheduler: Any, defaults: BackboneDefaults
    ) -> DysenWanBackbone:
        """The backbone of modules in memory (training's sample videos): nothing is moved, frozen or copied."""
        backbone = cls.__new__(cls)
        geometry = _geometry(vae.config, tuple(transformer.config.patch_size), defaults)
        device = next(transformer.parameters()).device
        backbone._setup(transformer, vae, text, type(scheduler), dict(scheduler.config), geometry, device)
        backbone.dtype = next(transformer.parameters()).dtype
        return backbone

    def _setup(
        self, transformer: nn.Module, vae: Any, text: MiniLMStates, scheduler_class: type,
        scheduler_config: dict[str, Any], geometry: BackboneGeometry, device: torch.device,
    ) -> None:  # fmt: skip
        Backbone.__init__(self, scheduler_class, scheduler_config)
        self.transformer, self.transformer_2, self.vae, self.text_encoder = transformer, None, vae, text
        self.boundary_ratio, self.expand_timesteps = None, False
        self.max_text_tokens, self.geometry, self.device = text.spec.max_length, geometry, device
        self.folder = Path()

    @property
    def tokenizer(self) -> Any:  # type: ignore[override]
        return self.text_encoder.tokenizer

    @classmethod
    def read_geometry(cls, index: FolderIndex) -> BackboneGeometry:
        """Latent channels and the spatial factor from ``vae/config.json``, the patch from the transformer's, the
        sampling defaults from ``model_index.json``."""
        index.class_of("vae", ("KLVideoAutoencoder",))
        index.class_of("transformer", ("WanTransformer3DModel",))
        vae, transformer = read_config(index, "vae"), read_config(index, "transformer")
        try:
            defaults = BackboneDefaults(**index.settings["defaults"])
            return _geometry_of(vae, tuple(transformer.get("patch_size", (1, 2, 2))), defaults)
        except (KeyError, TypeError, ValueError) as err:
            raise BackboneFolderError(
                f"the configs in {index.folder} are malformed ({INDEX_NAME} needs \"defaults\": {{height, width, "
                f"num_frames, fps, steps, guidance}}): {err}"
            ) from None

    def encode_prompt(self, texts: list[str]) -> Text:
        """MiniLM states [B, L, D] of ``texts`` (zero past each prompt), mask [B, L]; on ``device``."""
        states, mask = self.text_encoder(texts)
        return states.to(self.device, self.dtype), mask.to(self.device).bool()

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> the normalised posterior mean [1, c, T, h, w]."""
        self.latent_shape(frames.shape[0], frames.shape[1], frames.shape[2])
        return self.vae.encode(frames_to_model(frames)[None].to(self.device)).float()

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[1, c, T, h, w] -> uint8 [T, H, W, 3]."""
        return model_to_frames(self.vae.decode(latents.float())[0])


def _geometry(vae_config: Any, patch: tuple[int, ...], defaults: BackboneDefaults) -> BackboneGeometry:
    return _geometry_of(asdict(vae_config), patch, defaults)


def _geometry_of(vae: dict[str, Any], patch: tuple[int, ...], defaults: BackboneDefaults) -> BackboneGeometry:
    """A per-frame VAE's geometry (``temporal_downsample`` must be 1: latent frames = frames)."""
    if int(vae.get("temporal_downsample", 1)) != 1:
        raise BackboneFolderError("a DysenWanPipeline's VAE must be per-frame (temporal_downsample 1)")
    return BackboneGeometry(
        name="wan", latent_channels=int(vae["latent_channels"]), spatial_factor=int(vae["spatial_downsample"]),
        temporal_factor=1, patch=(int(patch[1]), int(patch[2])), defaults=defaults,
    )  # fmt: skip


def save_dysen_wan(
    folder: str | Path, transformer: nn.Module, vae: Any, text: MiniLMSpec, scheduler: Any, defaults: BackboneDefaults
) -> Path:
    """Write a ``DysenWanPipeline`` folder atomically: each component's own ``save_pretrained`` + the index."""
    from diffusers import __version__ as diffusers_version

    from dysen import __version__

    index = {
        "_class_name": PIPELINE_CLASS, "_diffusers_version": diffusers_version, "dysen_version": __version__,
        "transformer": ["diffusers", type(transformer).__name__], "scheduler": ["diffusers", type(scheduler).__name__],
        "vae": ["dysen", "KLVideoAutoencoder"], "text_encoder": ["dysen", "MiniLMTextEncoder"],
        "tokenizer": [None, None], "defaults": asdict(defaults),
    }  # fmt: skip
    with staged_dir(folder) as stage:
        transformer.save_pretrained(stage / "transformer", safe_serialization=True)
        scheduler.save_pretrained(stage / "scheduler")
        vae.save_pretrained(stage / "vae")
        (stage / "text_encoder").mkdir()
        MiniLMStates(text).save(stage / "text_encoder")
        (stage / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return Path(folder)
