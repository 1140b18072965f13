"""The reconstruction term of stage 1 (``VAETask``): L1 as LDM, or L2 for sparse scenes."""

from __future__ import annotations

import pytest
import torch

from dysen.models.vae import KLVideoAutoencoder, KLVideoAutoencoderConfig
from dysen.train.stages import StageError, VAETask
from dysen.train.vae_loss import VAELossConfig

CONFIG = KLVideoAutoencoderConfig(
    base_channels=8, channel_mult=(1, 2), spatial_downsample=4, temporal_downsample=2, norm_groups=4
)


@pytest.mark.parametrize("recon_loss", ["l1", "l2"])
def test_vae_task_uses_the_chosen_reconstruction_loss(recon_loss: str) -> None:
    torch.manual_seed(0)
    vae = KLVideoAutoencoder(CONFIG)
    task = VAETask(vae, VAELossConfig(kl_weight=0.0, recon_loss=recon_loss)).to(torch.device("cpu"))
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    out = task.step({"video": video}, torch.Generator().manual_seed(1))
    recon, _ = vae(video.contiguous(memory_format=torch.channels_last_3d), torch.Generator().manual_seed(1))
    expected = (recon - video).abs().mean() if recon_loss == "l1" else (recon - video).square().mean()
    assert torch.allclose(out.loss, expected) and torch.allclose(out.logs["recon"], expected)


def test_unknown_reconstruction_loss_is_refused() -> None:
    with pytest.raises(StageError, match="l1 or l2"):
        VAETask(KLVideoAutoencoder(CONFIG), VAELossConfig(recon_loss="huber"))  # type: ignore[arg-type]


def test_frames_per_clip_trains_a_frame_wise_autoencoder_on_random_frames_of_each_clip() -> None:
    torch.manual_seed(0)
    config = KLVideoAutoencoderConfig(
        base_channels=8, channel_mult=(1, 2), spatial_downsample=4, temporal_downsample=1, temporal_kernel=1,
        norm_groups=4,
    )  # fmt: skip
    vae = KLVideoAutoencoder(config)
    task = VAETask(vae, VAELossConfig(kl_weight=0.0, recon_loss="l2", frames_per_clip=3)).to(torch.device("cpu"))
    video = torch.arange(2 * 8, dtype=torch.float32).view(2, 1, 8, 1, 1).expand(2, 3, 8, 16, 16) / 16  # frame ids
    picked = task._frames(video, torch.Generator().manual_seed(1))  # [2, 3, 3, 16, 16]
    ids = (picked[:, 0, :, 0, 0] * 16).round().long()  # [2, 3]
    assert picked.shape == (2, 3, 3, 16, 16)
    assert all(len(set(row.tolist())) == 3 and row.tolist() == sorted(row.tolist()) for row in ids)
    assert ids[0].max() < 8 and ids[1].min() >= 8  # each clip's own frames
    assert torch.isfinite(task.step({"video": video}, torch.Generator().manual_seed(1)).loss)


def test_frames_per_clip_needs_a_frame_wise_autoencoder() -> None:
    with pytest.raises(StageError, match="frame-wise"):
        VAETask(KLVideoAutoencoder(CONFIG), VAELossConfig(frames_per_clip=4))
