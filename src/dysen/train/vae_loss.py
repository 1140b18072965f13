"""The loss settings of stage 1 (the 3D KL autoencoder), declared once: ``VAETask`` takes them, ``dysen train-vae``
makes its flags from them and saves them as the run's ``vae_loss.json``. Importing this module loads no torch.

The defaults are those the shipped model was trained with (L1 + 1e-6 · KL, no LPIPS, no GAN); LVDM's own
autoencoder used ``perceptual_weight`` 1.0, ``disc_weight`` 0.5 and ``disc_start`` 50001 (dysen_spec.md §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class VAELossConfig:
    """loss = rec(x̂, x) [+ perceptual_weight · LPIPS] + kl_weight · KL [+ disc_weight · λ · PatchGAN from
    ``disc_start``]; checked by ``VAETask``, which also needs the LPIPS network and the discriminator."""

    kl_weight: float = 1e-6  # weight of KL(q(z|x) ‖ N(0, I))
    recon_loss: Literal["l1", "l2"] = "l1"  # l1 (LDM/LVDM) or l2 (better for small objects on plain backgrounds)
    perceptual_weight: float = 0.0  # weight of LPIPS per frame (LVDM: 1.0); > 0 needs the LPIPS network
    disc_weight: float = 0.0  # PatchGAN generator weight, times the adaptive λ (LVDM: 0.5); 0: no GAN
    disc_start: int = 50001  # optimizer step the PatchGAN terms start at (LVDM: 50001)
    disc_layers: int = 3  # depth of the PatchGAN the CLI builds; frames need 3·2^N pixels
    disc_channels: int = 64  # base channels of the PatchGAN the CLI builds
    frames_per_clip: int | None = None  # train on N random frames of each clip (frame-wise AEs only); None: all
