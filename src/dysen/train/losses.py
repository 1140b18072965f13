"""The terms of LDM/LVDM's autoencoder loss (``LPIPSWithDiscriminator``, backbones.md §2.2), frame by frame.

* Reconstruction: mean |x − x̂| (or squared) + perceptual_weight · mean LPIPS(x, x̂) over frames. LDM divides
  by exp(logvar) of a learned scalar, but leaves it out of the optimizer, so it stays 0 and drops out.
* Generator: −mean D(x̂), weighted by λ = disc_weight · ‖∇_L rec‖ / (‖∇_L g‖ + 1e-4), clamped to [0, 1e4],
  with L the decoder's last layer (VQGAN, Esser et al., CVPR 2021, eq. 7).
* Discriminator: hinge loss ½(mean relu(1 − D(x)) + mean relu(1 + D(x̂))) (Lim & Ye 2017; taming ``hinge_d_loss``).

Both adversarial terms start at step ``disc_start`` (taming's ``adopt_weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ADAPTIVE_EPS = 1e-4  # VQGAN's denominator guard
ADAPTIVE_MAX = 1e4  # VQGAN's clamp of λ


def video_frames(video: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B·T, C, H, W]: the frames of every clip, as LVDM's 2D loss terms see them."""
    return video.transpose(1, 2).flatten(0, 1).contiguous()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """½(E relu(1 − D(x)) + E relu(1 + D(x̂))), a scalar."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """−E D(x̂), a scalar: the decoder is pushed towards patches the discriminator calls real."""
    return -logits_fake.mean()


def adaptive_weight(
    rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, disc_weight: float
) -> torch.Tensor:
    """λ of VQGAN eq. 7: the generator term scaled to the reconstruction's gradient at ``last_layer`` (detached).

    Without autograd (evaluating under ``no_grad``) there is no gradient to compare, and λ is 0 (as taming).
    """
    if not (torch.is_grad_enabled() and rec_loss.requires_grad and g_loss.requires_grad):
        return rec_loss.new_zeros(())
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + ADAPTIVE_EPS)
    return weight.clamp(0.0, ADAPTIVE_MAX).detach() * disc_weight
