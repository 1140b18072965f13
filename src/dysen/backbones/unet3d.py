"""ModelScope T2V / ZeroScope (Wang et al. 2023) as a backbone: ``UNet3DConditionModel`` + a per-frame SD
``AutoencoderKL`` + CLIP text + its DDIM scheduler, from a ``TextToVideoSDPipeline`` folder.

The UNet predicts ε (or v, per its scheduler) at [B, C, T, h, w], the project's own layout. Text: the CLIP text
model's last hidden states of ``tokenizer.model_max_length`` (77) tokens, as ``TextToVideoSDPipeline`` encodes
them. Latents: each frame's SD-VAE posterior times ``scaling_factor`` (0.18215); T frames -> T latent frames.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dysen.backbones.base import AdapterSite, Backbone, BackboneDefaults, BackboneGeometry, BackboneOptions, Text
from dysen.backbones.components import BackboneFolderError, FolderIndex, load_component, read_config
from dysen.backbones.placement import place, resolve_device
from dysen.models.frames import frames_to_model, model_to_frames

UNET3D_SCHEDULERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler")
CLIP_TOKENIZERS = ("CLIPTokenizer", "CLIPTokenizerFast", "AutoTokenizer")
FRAMES_PER_CHUNK = 16  # frames the per-frame VAE decodes at once (bounds its memory)


class UNet3DBackbone(Backbone):
    """A loaded ModelScope-style model: 3D UNet, per-frame VAE, CLIP text model and tokenizer, scheduler."""

    name = "unet3d"
    token_layout = "frames"

    def __init__(self, index: FolderIndex, options: BackboneOptions) -> None:
        self.device = resolve_device(options)
        self.dtype = options.torch_dtype
        scheduler_class = load_component(index, "scheduler", UNET3D_SCHEDULERS)
        super().__init__(scheduler_class, read_config(index, "scheduler", "scheduler_config.json"))
        self.folder = index.folder
        self.unet = load_component(index, "unet", ("UNet3DConditionModel",), self.dtype)
        self.vae = load_component(index, "vae", ("AutoencoderKL",), torch.float32)
        self.text_encoder = load_component(index, "text_encoder", ("CLIPTextModel",), self.dtype)
        self.tokenizer = load_component(index, "tokenizer", CLIP_TOKENIZERS)
        self.max_text_tokens = options.max_text_tokens or int(self.tokenizer.model_max_length)

        self.geometry = self.read_geometry(index)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        place([self.unet, self.text_encoder, self.vae], self.device, options.offload)

    @classmethod
    def read_geometry(cls, index: FolderIndex) -> BackboneGeometry:
        """Latent channels from ``unet/config.json``; the VAE's 2^(levels − 1) spatial factor from its config."""
        index.class_of("vae", ("AutoencoderKL",))
        index.class_of("unet", ("UNet3DConditionModel",))
        vae, unet = read_config(index, "vae"), read_config(index, "unet")
        try:
            spatial = 2 ** (len(vae.get("block_out_channels", (64,))) - 1)
            size = int(unet.get("sample_size") or 32) * spatial  # ModelScope: 32 x 8 = 256
            return BackboneGeometry(
                name=cls.name,
                latent_channels=int(unet.get("in_channels", 4)),
                spatial_factor=spatial,
                temporal_factor=1,
                patch=(1, 1),
                defaults=BackboneDefaults(height=size, width=size, num_frames=16, fps=8, steps=50, guidance=9.0),
            )
        except (TypeError, ValueError) as err:
            raise BackboneFolderError(f"the UNet3D configs in {index.folder} are malformed: {err}") from None

    def encode_prompt(self, texts: list[str]) -> Text:
        """CLIP states [B, L, D] of ``texts`` (L = ``max_text_tokens``) and the mask [B, L] of their tokens; the
        UNet attends to every position (padding included), as ModelScope was trained."""
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=self.max_text_tokens, truncation=True, return_tensors="pt"
        )
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)  # [B, L]
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)
        states = self.text_encoder(ids, attention_mask=mask if use_mask else None)[0]  # [B, L, D]
        return states.to(self.dtype), mask.bool()

    def cross_attentions(self) -> dict[str, Any]:
        """``attn2`` of the spatial transformers (the temporal ones and ``transformer_in`` attend to the video, not
        the text)."""
        return {
            name: module
            for name, module in self.unet.named_modules()
            if name.endswith("attn2") and getattr(module, "is_cross_attention", False)
        }

    def cross_attention_probs(
        self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """softmax(q·kᵀ/√d) of a diffusers ``Attention`` as ``AttnProcessor2_0`` computes it, averaged over heads
        [B, N, L]."""
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        query, key = attn.to_q(hidden_states), attn.to_k(encoder_hidden_states)  # [B, N, H·d], [B, L, H·d]
        batch, dim = query.shape[0], key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, dim).transpose(1, 2)  # [B, H, N, d]
        key = key.view(batch, -1, attn.heads, dim).transpose(1, 2)  # [B, H, L, d]
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        logits = query.float() @ key.float().transpose(-1, -2) * dim**-0.5  # [B, H, N, L]
        return logits.softmax(-1).mean(1)  # [B, N, L]

    def self_attentions(self) -> dict[str, Any]:
        """``attn1`` of the spatial transformers (``attentions``: each frame's tokens; the temporal ones,
        ``temp_attentions`` and ``transformer_in``, attend across frames at one place and are left alone)."""
        return {
            name: module
            for name, module in self.unet.named_modules()
            if name.endswith("attn1") and ".attentions." in f".{name}"
        }

    @property
    def denoiser(self) -> nn.Module:
        """The 3D UNet."""
        return self.unet

    def adapter_sites(self) -> list[AdapterSite]:
        """The spatial transformers (``Transformer2DModel``: each frame's tokens, after their text cross-attention) of
        the down, middle and up blocks, in the order the UNet runs them; they return ([B·F, C, h, w],) and C grows
        with depth, so each slot has its own width."""
        from diffusers.models.transformers.transformer_2d import Transformer2DModel

        blocks = [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]
        modules = [m for block in blocks for m in getattr(block, "attentions", ())]
        spatial = [m for m in modules if isinstance(m, Transformer2DModel)]
        return [
            AdapterSite(m, int(m.config.in_channels), int(m.config.num_attention_heads), slot, "frames")
            for slot, m in enumerate(spatial)
        ]

    def denoise_fn(self, x: torch.Tensor, t: torch.Tensor, conditions: Text) -> torch.Tensor:
        """ε (or v) [P, C, T, h, w] at x_t [P, C, T, h, w]."""
        out = self.unet(x.to(self.dtype), t, encoder_hidden_states=conditions[0], return_dict=False)[0]
        return out.float()  # [P, C, T, h, w]

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> scaling_factor · μ per frame [1, C, T, h, w]."""
        self.latent_shape(frames.shape[0], frames.shape[1], frames.shape[2])
        images = frames_to_model(frames).transpose(0, 1).to(self.device)  # [T, 3, H, W] in [-1, 1]
        means = [self.vae.encode(chunk).latent_dist.mode() for chunk in images.split(FRAMES_PER_CHUNK)]
        z = torch.cat(means).float() * self.scaling_factor  # [T, C, h, w]
        return z.transpose(0, 1)[None]  # [1, C, T, h, w]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[1, C, T, h, w] -> uint8 [T, H, W, 3], frame by frame."""
        z = latents[0].transpose(0, 1).float() / self.scaling_factor  # [T, C, h, w]
        images = torch.cat([self.vae.decode(chunk).sample for chunk in z.split(FRAMES_PER_CHUNK)])  # [T, 3, H, W]
        return model_to_frames(images.transpose(0, 1))
