"""Video autoencoders: 3D KL AE shapes for several factors, KL/gradients, scale fitting, save/load; tiny FrameVAE."""

from __future__ import annotations

import pytest
import torch

from dysen.models.vae import AutoencoderError, FrameVAE, KLVideoAutoencoder, KLVideoAutoencoderConfig


def tiny(**overrides) -> KLVideoAutoencoderConfig:
    fields = dict(base_channels=8, channel_mult=(1, 2), spatial_downsample=4, temporal_downsample=2, norm_groups=4)
    return KLVideoAutoencoderConfig(**{**fields, **overrides})


def video(batch: int = 2, frames: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=generator) * 2 - 1  # [B, 3, T, H, W]


@pytest.mark.parametrize(
    ("config", "latent"),
    [
        (tiny(temporal_downsample=1), (4, 8, 4, 4)),
        (tiny(), (4, 4, 4, 4)),
        (tiny(temporal_downsample=4, mid_attention=True), (4, 2, 4, 4)),
        (tiny(channel_mult=(1, 1, 2), spatial_downsample=8, temporal_downsample=4, latent_channels=3), (3, 2, 2, 2)),
        (tiny(temporal_downsample=1, temporal_kernel=1), (4, 8, 4, 4)),
    ],
)
def test_kl_autoencoder_shapes(config, latent):
    torch.manual_seed(0)
    model = KLVideoAutoencoder(config).eval()
    x = video()
    assert model.latent_shape(8, 16, 16) == latent
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (2, *latent)
        assert model.decode(z).shape == x.shape


def test_kl_autoencoder_rejects_bad_configs_and_sizes():
    with pytest.raises(AutoencoderError, match="2 \\*\\* len"):
        KLVideoAutoencoder(tiny(spatial_downsample=8))
    with pytest.raises(AutoencoderError, match="power of two"):
        KLVideoAutoencoder(tiny(temporal_downsample=3))
    with pytest.raises(AutoencoderError, match="norm_groups"):
        KLVideoAutoencoder(tiny(norm_groups=3))
    with pytest.raises(AutoencoderError, match="frame-wise"):
        KLVideoAutoencoder(tiny(temporal_kernel=1))
    with pytest.raises(AutoencoderError, match="temporal_kernel"):
        KLVideoAutoencoder(tiny(temporal_kernel=2))
    with pytest.raises(AutoencoderError, match="multiple of 2"):
        KLVideoAutoencoder(tiny()).encode(video(frames=5))


def test_forward_gives_finite_kl_and_reconstruction_and_gradients_everywhere():
    torch.manual_seed(0)
    model = KLVideoAutoencoder(tiny(mid_attention=True))
    x = video()
    out = model(x, generator=torch.Generator().manual_seed(1))
    kl = out.posterior.kl()  # [B]
    assert out.reconstruction.shape == x.shape and torch.isfinite(out.reconstruction).all()
    assert kl.shape == (2,) and torch.isfinite(kl).all() and (kl >= 0).all()
    ((out.reconstruction - x).abs().mean() + 1e-3 * kl.mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_frame_wise_autoencoder_treats_frames_independently():
    torch.manual_seed(0)
    model = KLVideoAutoencoder(tiny(temporal_downsample=1, temporal_kernel=1)).eval()
    x = video()
    changed = x.clone()
    changed[:, :, 3] = -changed[:, :, 3]  # another picture at frame 3 only
    with torch.no_grad():
        z, z_changed = model.encode(x), model.encode(changed)
        frames = (z - z_changed).abs().amax(dim=(0, 1, 3, 4))  # [t]
        assert frames[3] > 0 and frames[torch.arange(8) != 3].max() == 0
        recon = (model.decode(z) - model.decode(z_changed)).abs().amax(dim=(0, 1, 3, 4))  # [T]
        assert recon[3] > 0 and recon[torch.arange(8) != 3].max() == 0
        # one frame through the model equals that frame inside the clip
        torch.testing.assert_close(model.encode(x[:, :, 5:6]), z[:, :, 5:6])


def test_sampled_encoding_is_reproducible_with_a_seed():
    torch.manual_seed(0)
    model = KLVideoAutoencoder(tiny()).eval()
    x = video()
    with torch.no_grad():
        one = model.encode(x, generator=torch.Generator().manual_seed(3))
        two = model.encode(x, generator=torch.Generator().manual_seed(3))
        assert torch.equal(one, two) and not torch.equal(one, model.encode(x))


def test_fit_scale_normalises_latents_and_decoding_is_unchanged(tmp_path):
    torch.manual_seed(0)
    model = KLVideoAutoencoder(tiny()).eval()
    x = video(batch=4)
    with torch.no_grad():
        before = model.decode(model.encode(x))
        scale, shift = model.fit_scale(model.posterior(x).mean)
        z = model.encode(x)
        after = model.decode(z)
    assert (model.config.scaling_factor, model.config.shift_factor) == (scale, shift)
    assert abs(z.mean().item()) < 1e-4 and abs(z.std().item() - 1) < 1e-4
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    model.save_pretrained(tmp_path / "vae")
    loaded = KLVideoAutoencoder.from_pretrained(tmp_path / "vae").eval()
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), z) and torch.equal(loaded.decode(z), after)
    with pytest.raises(AutoencoderError, match="std"):
        model.fit_scale(torch.zeros(2, 4, 1, 2, 2))


@pytest.fixture(scope="module")
def tiny_sd_vae(tmp_path_factory) -> str:
    """A random two-level diffusers AutoencoderKL (downsampling 2) saved to a folder."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-sd-vae")
    vae.save_pretrained(folder)
    return str(folder)


def test_frame_vae_encodes_each_frame_with_the_sd_scaling(tiny_sd_vae):
    model = FrameVAE.load(tiny_sd_vae, frames_per_chunk=3)
    x = video(frames=5)
    assert model.latent_shape(5, 16, 16) == (4, 5, 8, 8)
    with torch.no_grad():
        z = model.encode(x)
        frame = model.vae.encode(x[:, :, 4]).latent_dist.mode() * model.scaling_factor  # [B, 4, 8, 8]
        decoded = model.decode(z)
        whole = FrameVAE(model.vae, frames_per_chunk=16).decode(z)
    assert model.scaling_factor == pytest.approx(0.18215)
    assert z.shape == (2, 4, 5, 8, 8)
    torch.testing.assert_close(z[:, :, 4], frame, rtol=1e-4, atol=1e-5)
    assert decoded.shape == x.shape
    torch.testing.assert_close(decoded, whole, rtol=1e-4, atol=1e-5)  # chunking does not matter
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(AutoencoderError, match="multiples of 2"):
        model.encode(video(size=15))


def test_frame_vae_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(AutoencoderError, match="cannot load the frame VAE"):
        FrameVAE.load(tmp_path / "nowhere")
