"""The reconstruction term of stage 1 (``VAETask``): L1 as LDM, or L2 for sparse scenes."""

from __future__ import annotations

import pytest
import torch

from dysen.models.vae import KLVideoAutoencoder, KLVideoAutoencoderConfig
from dysen.train.stages import StageError, VAETask

CONFIG = KLVideoAutoencoderConfig(
    base_channels=8, channel_mult=(1, 2), spatial_downsample=4, temporal_downsample=2, norm_groups=4
)


@pytest.mark.parametrize("recon_loss", ["l1", "l2"])
def test_vae_task_uses_the_chosen_reconstruction_loss(recon_loss: str) -> None:
    torch.manual_seed(0)
    vae = KLVideoAutoencoder(CONFIG)
    task = VAETask(vae, kl_weight=0.0, recon_loss=recon_loss).to(torch.device("cpu"))
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    out = task.step({"video": video}, torch.Generator().manual_seed(1))
    recon, _ = vae(video.contiguous(memory_format=torch.channels_last_3d), torch.Generator().manual_seed(1))
    expected = (recon - video).abs().mean() if recon_loss == "l1" else (recon - video).square().mean()
    assert torch.allclose(out.loss, expected) and torch.allclose(out.logs["recon"], expected)


def test_unknown_reconstruction_loss_is_refused() -> None:
    with pytest.raises(StageError, match="l1 or l2"):
        VAETask(KLVideoAutoencoder(CONFIG), recon_loss="huber")
