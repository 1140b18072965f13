"""Wan 2.1 / 2.2 (Wan Team 2025) as a backbone: ``WanTransformer3DModel`` + ``AutoencoderKLWan`` + UMT5 + a
flow-matching scheduler, from a ``WanPipeline`` folder.

The transformer predicts the flow velocity v = ε − x_0 (rectified flow; the scheduler integrates it). Text: UMT5
states of the first ``max_text_tokens`` (512) tokens, zero past each prompt's end, as ``WanPipeline`` pads them.
Latents are the VAE's posterior normalised per channel, z = (μ − latents_mean) / latents_std; the VAE is causal in
time (1 + 4·m frames -> 1 + m latent frames) and 8x (Wan 2.2 5B: 16x) in space. Wan 2.2 A14B's second
transformer takes over below ``boundary_ratio`` · num_train_timesteps (same guidance scale for both here);
Wan 2.2 TI2V's per-token timesteps (``expand_timesteps``) are given as one t per token.
"""

from __future__ import annotations

import html
import re
from typing import Any

import torch
from torch import nn

from dysen.backbones.base import (
    AdapterSite,
    Backbone,
    BackboneDefaults,
    BackboneError,
    BackboneGeometry,
    BackboneOptions,
    Text,
)
from dysen.backbones.components import BackboneFolderError, FolderIndex, load_component, read_config
from dysen.backbones.placement import place, resolve_device
from dysen.models.frames import frames_to_model, model_to_frames

WAN_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler")
WAN_TEXT_ENCODERS = ("UMT5EncoderModel", "T5EncoderModel")
WAN_TOKENIZERS = ("T5Tokenizer", "T5TokenizerFast", "AutoTokenizer")
WAN_MAX_TEXT_TOKENS = 512  # WanPipeline.__call__'s max_sequence_length

WAN21 = BackboneDefaults(height=480, width=832, num_frames=81, fps=16, steps=50, guidance=5.0)
WAN21_T2V_1_3B_TRANSFORMER = {
    "patch_size": (1, 2, 2), "num_attention_heads": 12, "attention_head_dim": 128, "in_channels": 16,
    "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 8960, "num_layers": 30,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
    "added_kv_proj_dim": None, "rope_max_seq_len": 1024,
}  # fmt: skip
"""``transformer/config.json`` of Wan-AI/Wan2.1-T2V-1.3B-Diffusers: what the meta-device tests and the speed
benchmarks build (random weights; nothing is downloaded)."""
WAN22_5B = BackboneDefaults(height=704, width=1280, num_frames=121, fps=24, steps=50, guidance=5.0)


class WanBackbone(Backbone):
    """A loaded Wan: transformer(s), VAE, UMT5 and its tokenizer, and the folder's scheduler."""

    name = "wan"
    token_layout = "video"

    def __init__(self, index: FolderIndex, options: BackboneOptions) -> None:
        self.device = resolve_device(options)  # refuses impossible options before any weight is read
        self.dtype = options.torch_dtype
        scheduler_class = load_component(index, "scheduler", WAN_SCHEDULERS)
        super().__init__(scheduler_class, read_config(index, "scheduler", "scheduler_config.json"))
        self.folder = index.folder
        self.transformer = load_component(index, "transformer", ("WanTransformer3DModel",), self.dtype)
        self.transformer_2 = None
        if "transformer_2" in index.components:
            self.transformer_2 = load_component(index, "transformer_2", ("WanTransformer3DModel",), self.dtype)
        self.vae = load_component(index, "vae", ("AutoencoderKLWan",), torch.float32)
        self.text_encoder = load_component(index, "text_encoder", WAN_TEXT_ENCODERS, self.dtype)
        self.tokenizer = load_component(index, "tokenizer", WAN_TOKENIZERS)
        self.boundary_ratio: float | None = index.settings.get("boundary_ratio")
        self.expand_timesteps = bool(index.settings.get("expand_timesteps", False))
        self.max_text_tokens = options.max_text_tokens or WAN_MAX_TEXT_TOKENS

        self.geometry = self.read_geometry(index)
        vae = self.vae.config
        shape = (1, self.geometry.latent_channels, 1, 1, 1)
        self._latents_mean = torch.tensor(vae.latents_mean, dtype=torch.float32).view(shape)  # [1, C, 1, 1, 1]
        self._latents_std = torch.tensor(vae.latents_std, dtype=torch.float32).view(shape)  # [1, C, 1, 1, 1]
        denoisers = [m for m in (self.transformer, self.transformer_2) if m is not None]
        place([*denoisers, self.text_encoder, self.vae], self.device, options.offload)

    @classmethod
    def read_geometry(cls, index: FolderIndex) -> BackboneGeometry:
        """Latent channels and the VAE's factors from ``vae/config.json``; the patch from the transformer's."""
        index.class_of("vae", ("AutoencoderKLWan",))
        index.class_of("transformer", ("WanTransformer3DModel",))
        vae, transformer = read_config(index, "vae"), read_config(index, "transformer")
        try:
            spatial = int(vae.get("scale_factor_spatial") or 8)
            patch_size = transformer.get("patch_size", (1, 2, 2))  # (t, h, w)
            patch = (int(patch_size[1]), int(patch_size[2]))
            return BackboneGeometry(
                name=cls.name,
                latent_channels=int(vae.get("z_dim", 16)),
                spatial_factor=spatial,
                temporal_factor=int(vae.get("scale_factor_temporal") or 4),
                patch=patch,
                defaults=WAN22_5B if spatial == 16 else WAN21,
            )
        except (TypeError, ValueError, IndexError) as err:
            raise BackboneFolderError(f"the Wan configs in {index.folder} are malformed: {err}") from None

    def encode_prompt(self, texts: list[str]) -> Text:
        """UMT5 states [B, L, D] of ``texts`` (L = ``max_text_tokens``), zero past each prompt's tokens, as
        ``WanPipeline._get_t5_prompt_embeds``; mask [B, L] True on the prompt's tokens."""
        tokens = self.tokenizer(
            [clean_wan_prompt(text) for text in texts], padding="max_length", max_length=self.max_text_tokens,
            truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
        )  # fmt: skip
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)  # [B, L]
        states = self.text_encoder(ids, mask).last_hidden_state  # [B, L, D]
        states = states * mask[..., None].to(states.dtype)  # zero past the prompt, as WanPipeline pads
        return states.to(self.dtype), mask.bool()

    def clean_prompt(self, text: str) -> str:
        """HTML entities unescaped, whitespace collapsed (``WanPipeline``'s cleaning, as ``encode_prompt``)."""
        return clean_wan_prompt(text)

    def cross_attentions(self) -> dict[str, Any]:
        """``attn2`` of every block of the transformer (and of Wan 2.2's second expert)."""
        return _block_attentions(self, "attn2")

    def cross_attention_probs(
        self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """softmax(q·kᵀ/√d) of a ``WanAttention`` (its RMS-normed queries and keys), averaged over heads [B, N, L]."""
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        if attn.add_k_proj is not None:
            raise BackboneError("energy guidance reads text-to-video Wan's cross-attention, not image-to-video's")
        query, key, _ = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))  # [B, N, H, d]
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))  # [B, L, H, d]
        logits = torch.einsum("bnhd,blhd->bhnl", query.float(), key.float()) * query.shape[-1] ** -0.5
        return logits.softmax(-1).mean(1)  # [B, N, L]

    def self_attentions(self) -> dict[str, Any]:
        """``attn1`` of every block (full attention over all the video's tokens)."""
        return _block_attentions(self, "attn1")

    @property
    def denoiser(self) -> nn.Module:
        """The transformer (Wan 2.2 A14B: its high-noise expert; the low-noise one has the same config)."""
        return self.transformer

    def adapter_sites(self) -> list[AdapterSite]:
        """Every block of the transformer, slot i for block i; Wan 2.2 A14B's second expert's block i shares slot i
        (one adapter serves both experts: each runs in its own noise range, in training as in sampling)."""
        dim = self.transformer.config.num_attention_heads * self.transformer.config.attention_head_dim
        heads = self.transformer.config.num_attention_heads
        return [
            AdapterSite(block, dim, heads, slot, "video")
            for model in (self.transformer, self.transformer_2) if model is not None
            for slot, block in enumerate(model.blocks)
        ]  # fmt: skip

    def denoise_fn(self, x: torch.Tensor, t: torch.Tensor, conditions: Text) -> torch.Tensor:
        """The flow velocity [P, C, T, h, w] at x_t [P, C, T, h, w]; the text mask is not used (Wan attends to the
        zero-padded states, as it was trained)."""
        model = self.transformer
        if self.transformer_2 is not None and self.boundary_ratio is not None:
            if t < self.boundary_ratio * self.num_train_timesteps:  # Wan 2.2 A14B: the low-noise expert
                model = self.transformer_2
        count = x.shape[0]
        timestep = t.expand(count)  # [P]
        if self.expand_timesteps:  # Wan 2.2 TI2V: one timestep per token
            patch = self.geometry.patch
            tokens = x.shape[2] * (x.shape[3] // patch[0]) * (x.shape[4] // patch[1])
            timestep = t.expand(count, tokens)  # [P, N]
        out = model(
            hidden_states=x.to(self.dtype), timestep=timestep, encoder_hidden_states=conditions[0], return_dict=False
        )[0]  # [P, C, T, h, w]
        return out.float()

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T, H, W, 3] (T = 1 + 4·m) -> z = (μ − mean) / std [1, C, t, h, w]."""
        self.latent_shape(frames.shape[0], frames.shape[1], frames.shape[2])
        video = frames_to_model(frames)[None].to(self.device)  # [1, 3, T, H, W] in [-1, 1]
        mean = self.vae.encode(video).latent_dist.mode().float()  # [1, C, t, h, w]
        return (mean - self._latents_mean.to(mean.device)) / self._latents_std.to(mean.device)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """z [1, C, t, h, w] -> uint8 [T, H, W, 3], T = 1 + 4·(t − 1)."""
        z = latents.float() * self._latents_std.to(latents.device) + self._latents_mean.to(latents.device)
        video = self.vae.decode(z, return_dict=False)[0]  # [1, 3, T, H, W] in ~[-1, 1]
        return model_to_frames(video[0])


def _block_attentions(backbone: Any, attention: str) -> dict[str, Any]:
    """The ``attention`` module (``attn1``, ``attn2``) of every block of the transformer and of Wan 2.2's second
    expert, by name."""
    modules = {}
    for name in ("transformer", "transformer_2"):
        model = getattr(backbone, name)
        if model is not None:
            modules.update({f"{name}.blocks.{i}.{attention}": getattr(block, attention)
                            for i, block in enumerate(model.blocks)})  # fmt: skip
    return modules


def clean_wan_prompt(text: str) -> str:
    """``WanPipeline``'s prompt cleaning without ftfy: HTML entities unescaped, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()
