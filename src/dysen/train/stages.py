"""The training stages of Dysen-VDM as ``Task``s of the one loop (dysen_spec.md §6).

* Stage 1, ``VAETask``: the 3D KL video autoencoder, loss = L1(x̂, x) + kl_weight · KL(q(z|x) ‖ N(0, I))
  (per-frame L1 as LVDM; LVDM's LPIPS and PatchGAN terms are not supported yet, see ``VAETask``).
* Stage 2, ``VDMTask``: the 3D-UNet and the RGTrm on latents of the frozen VAE, conditioned on the frozen
  text encoder's tokens and on the RGTrm's tokens of the clip's **gold** DSG, with text and DSG dropped
  independently for classifier-free guidance; loss = L_simple (``dysen.diffusion.diffusion_loss``).
  In-domain fine-tuning is the same task started from a trained model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dysen.config import DysenVDMConfig
from dysen.diffusion.loss import condition_dropout, diffusion_loss
from dysen.errors import DysenError
from dysen.models.rgtrm import GraphBatch, RGTrm
from dysen.models.text import TextEncoder
from dysen.models.unet3d import UNet3D
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.loop import StepOutput


class StageError(DysenError):
    """A stage cannot train on what it was given (missing gold DSGs, an unsupported loss term)."""


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


class VAETask:
    """Stage 1: reconstruct clips through a posterior sample of the 3D KL autoencoder."""

    def __init__(
        self,
        vae: KLVideoAutoencoder,
        kl_weight: float = 1e-6,
        perceptual_weight: float = 0.0,
        recon_loss: str = "l1",
    ) -> None:
        if recon_loss not in ("l1", "l2"):
            raise StageError(f"recon_loss must be l1 or l2, got {recon_loss!r}")
        self.recon_loss = recon_loss
        if perceptual_weight:
            raise StageError(
                "the LPIPS/PatchGAN terms of LVDM's autoencoder loss are not supported yet: use perceptual_weight=0"
            )
        self.vae, self.kl_weight = vae.train(), kl_weight

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def to(self, device: torch.device) -> VAETask:
        self.vae.to(device, memory_format=torch.channels_last_3d)  # ~1.2x faster Conv3d on CPU (oneDNN)
        return self

    def step(self, batch: dict[str, Any], generator: torch.Generator) -> StepOutput:
        video = _video(batch, generator.device).contiguous(memory_format=torch.channels_last_3d)  # [B, 3, T, H, W]
        recon, posterior = self.vae(video, generator)  # [B, 3, T, H, W], q(z|x) [B, c, t, h, w]
        l1 = (recon - video).abs().mean()
        # L1 (LDM) seeks the per-pixel median: on sparse scenes (small shapes on a plain background, as Dynamic
        # Shapes) without LPIPS it settles on the background; L2 seeks the mean, so small objects keep a gradient.
        recon_term = l1 if self.recon_loss == "l1" else (recon - video).square().mean()
        kl = posterior.kl().mean()  # summed over latent elements, averaged over the batch (LDM)
        logs = {"l1": l1.detach(), "kl": kl.detach(), "recon": recon_term.detach()}
        return StepOutput(recon_term + self.kl_weight * kl, logs)


class VDMTask:
    """Stage 2 (and fine-tuning): denoise VAE latents under text and gold-DSG conditions."""

    def __init__(
        self,
        unet: UNet3D,
        rgtrm: RGTrm,
        vae: nn.Module,
        text_encoder: TextEncoder,
        config: DysenVDMConfig,
    ) -> None:
        self.unet, self.rgtrm = unet.train(), rgtrm.train()
        self.vae, self.text_encoder, self.config = _freeze(vae), text_encoder, config

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "rgtrm": self.rgtrm}

    def to(self, device: torch.device) -> VDMTask:
        for module in (self.unet, self.rgtrm, self.vae):
            module.to(device)
        return self

    def step(self, batch: dict[str, Any], generator: torch.Generator) -> StepOutput:
        device = generator.device
        if any(dsg is None for dsg in batch["dsg"]):
            raise StageError(
                "a training clip has no gold DSG: annotate the dataset first (dysen dsg annotate) and pass it as gold"
            )
        with torch.no_grad():
            x0 = self.vae.encode(_video(batch, device), generator)  # [B, c, t, h, w]
        drop_text, drop_dsg = condition_dropout(len(x0), self.config.diffusion, generator, device)  # [B], [B]
        drops = drop_text.tolist()
        captions = ["" if drop else caption for caption, drop in zip(batch["caption"], drops, strict=True)]
        with torch.no_grad():
            tokens, mask = self.text_encoder(captions)  # [B, L, Dt], [B, L]
        graphs = GraphBatch.from_dsgs(batch["dsg"], x0.shape[2]).with_label_embeddings(self.text_encoder)
        dsg_tokens, dsg_mask, frame_to_sg = self.rgtrm(graphs.to(device))  # [B, M, Dg], [B, M], [B, t, M]
        text = (tokens.to(device), mask.to(device))
        dsg = (dsg_tokens, dsg_mask & ~drop_dsg[:, None], frame_to_sg)  # null DSG = every token masked out

        def model_fn(z_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
            return self.unet(z_t, t, text=cond[0], dsg=cond[1])  # [B, c, t, h, w]

        return StepOutput(diffusion_loss(model_fn, x0, (text, dsg), self.config.diffusion, generator), {})


def _video(batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    video = batch["video"]
    if video is None:
        raise StageError("every clip of a batch failed to load: check the dataset with `dysen data shards` or scan")
    return video.to(device)  # [B, 3, T, H, W]
