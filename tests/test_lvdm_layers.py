"""LVDM's layouts (``UNet3DConfig.arch`` lvdm-t2v / lvdm-short) against reference computations written out here from
their definitions (``backbones.md`` §2.3): clip-wise GroupNorm, Shaw relative positions on temporal keys and values,
the short models' transposed key term, FiLM ResBlocks. Every weight is random, also those initialised to zero."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dysen.models.layers import ClipGroupNorm, ResBlock
from dysen.models.lvdm_blocks import LVDMSTAttention, ShawTemporalAttention
from dysen.models.unet3d import UNet3D, UNet3DConfig, UNet3DError

B, C, T, H, W = 2, 8, 6, 3, 2  # T > the clipping distance 2 below


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return module.double()


def _frames(video: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W] channels-last (the UNet's inner layout)."""
    return video.transpose(1, 2).flatten(0, 1).contiguous(memory_format=torch.channels_last)


def _video(frames: torch.Tensor) -> torch.Tensor:
    return frames.unflatten(0, (B, T)).transpose(1, 2)


def _clip(d: int, max_distance: int) -> list[list[int]]:
    return [[min(max(j - i, -max_distance), max_distance) + max_distance for j in range(T)] for i in range(T)]


def test_clip_group_norm_is_group_norm_over_the_whole_clip() -> None:
    norm = _randomise(ClipGroupNorm(4, C, eps=1e-6))
    video = torch.randn(B, C, T, H, W, dtype=torch.float64)
    expected = F.group_norm(video, 4, norm.weight, norm.bias, 1e-6)  # statistics over (C/G, T, H, W)
    assert torch.allclose(_video(norm(_frames(video), T)), expected, atol=1e-12)


def test_shaw_temporal_attention_matches_its_formula() -> None:
    heads, d, max_distance = 2, C // 2, 2
    attn = _randomise(ShawTemporalAttention(C, heads, max_distance))
    video = torch.randn(B, C, T, H, W, dtype=torch.float64)
    tokens = _frames(video).permute(0, 2, 3, 1).reshape(B * T, H * W, C)  # [B*T, H*W, C]
    out = attn(tokens, T).view(B, T, H * W, C)
    x = video.permute(0, 3, 4, 2, 1).reshape(B * H * W, T, C)  # per pixel
    q, k, v = (proj(x).view(-1, T, heads, d) for proj in (attn.to_q, attn.to_k, attn.to_v))
    rel = _clip(d, max_distance)
    expected = torch.zeros(B * H * W, T, heads, d, dtype=torch.float64)
    for i in range(T):
        scores = torch.stack(
            [(q[:, i] * (k[:, j] + attn.rel_k.table[rel[i][j]])).sum(-1) for j in range(T)], dim=-1
        ) / math.sqrt(d)  # [N, heads, T]: (q_i·k_j + q_i·r^K_(j-i)) / sqrt(d)
        a = scores.softmax(-1)
        expected[:, i] = sum(a[..., j, None] * (v[:, j] + attn.rel_v.table[rel[i][j]]) for j in range(T))
    expected = attn.to_out(expected.flatten(2)).view(B, H * W, T, C).transpose(1, 2)  # [B, T, H*W, C]
    assert torch.allclose(out, expected, atol=1e-10)


def test_short_models_temporal_attention_keeps_lvdms_transposed_key_term() -> None:
    heads, d, max_distance = 2, C // 2, 2
    block = _randomise(LVDMSTAttention(C, heads, 4, max_distance, dsg_dim=None, dsg_mode="aligned"))
    video = torch.randn(B, C, T, H, W, dtype=torch.float64)
    after_space = _video(block(_frames(video), T))  # the whole block, spatial then temporal
    spatial_only = copy.deepcopy(block)
    torch.nn.init.zeros_(spatial_only.out_time.weight), torch.nn.init.zeros_(spatial_only.out_time.bias)
    spatial = _video(spatial_only(_frames(video), T))
    x = spatial.permute(0, 3, 4, 1, 2).reshape(B * H * W, C, T)  # per pixel [N, C, T]
    qkv = block.qkv_time(F.group_norm(x, 4, block.norm_time.weight, block.norm_time.bias).transpose(1, 2))
    q, k, v = qkv.view(-1, T, 3, heads, d).unbind(2)  # [N, T, heads, d]
    rel = _clip(d, max_distance)
    expected = torch.zeros(B * H * W, T, heads, d, dtype=torch.float64)
    for i in range(T):
        scores = torch.stack(
            [(q[:, i] * k[:, j]).sum(-1) / math.sqrt(d) + (q[:, j] * block.rel_k.table[rel[j][i]]).sum(-1) / d**0.25
             for j in range(T)], dim=-1,
        )  # fmt: skip  # query i, key j: q_j · r^K_(i-j), as LVDM's einsum 'bct,tsc->bst'
        a = scores.softmax(-1)
        expected[:, i] = sum(a[..., j, None] * (v[:, j] + block.rel_v.table[rel[i][j]]) for j in range(T))
    update = block.out_time(expected.flatten(2)).view(B, H, W, T, C).permute(0, 4, 3, 1, 2)  # [B, C, T, H, W]
    assert torch.allclose(after_space, spatial + update, atol=1e-10)


def test_film_resblock_with_clip_norm_matches_its_formula() -> None:
    block = _randomise(ResBlock(C, 16, 12, 4, clip_norm=True, scale_shift=True))
    video, emb = torch.randn(B, C, T, H, W, dtype=torch.float64), torch.randn(B, 12, dtype=torch.float64)

    def conv(layer: torch.nn.Conv2d, v: torch.Tensor) -> torch.Tensor:  # per frame
        return F.conv3d(v, layer.weight[:, :, None], layer.bias, padding=(0, layer.padding[0], layer.padding[1]))

    h = conv(block.conv1, F.silu(F.group_norm(video, 4, block.norm1.weight, block.norm1.bias)))
    scale, shift = block.emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
    h = F.group_norm(h, 4, block.norm2.weight, block.norm2.bias) * (1 + scale) + shift  # FiLM (ADM)
    expected = conv(block.skip, video) + conv(block.conv2, F.silu(h))
    assert torch.allclose(_video(block(_frames(video), emb, T)), expected, atol=1e-10)


TINY_LVDM = {
    "lvdm-t2v": UNet3DConfig(
        model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2), num_heads=2,
        norm_groups=4, text_dim=16, dsg_dim=8, temporal_max_distance=2, arch="lvdm-t2v",
    ),
    "lvdm-short": UNet3DConfig(
        model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2), num_heads=2,
        norm_groups=4, text_dim=16, dsg_dim=8, temporal_max_distance=2, arch="lvdm-short",
        use_text_cross_attention=False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("arch", sorted(TINY_LVDM))
def test_lvdm_unets_train_every_parameter_and_checkpoint_the_same(arch: str) -> None:
    torch.manual_seed(0)
    unet = UNet3D(TINY_LVDM[arch])
    _randomise(unet).float()
    z, t = torch.randn(2, 4, 5, 8, 8), torch.tensor([3, 800])
    text = (torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.bool))
    graph = (torch.randn(2, 2, 8), torch.ones(2, 2, dtype=torch.bool), torch.ones(2, 5, 2, dtype=torch.bool))
    unet(z, t, text, graph).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in unet.named_parameters()}
    assert all(g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items() if not g.abs().sum()]
    unet.zero_grad()
    unet.config = type(unet.config)(**{**unet.config.__dict__, "gradient_checkpointing": True})
    unet.train()(z, t, text, graph).square().mean().backward()
    assert all(torch.allclose(p.grad, grads[n], atol=1e-6) for n, p in unet.named_parameters())


def test_lvdm_arch_is_checked() -> None:
    with pytest.raises(UNet3DError, match="no text cross-attention"):
        UNet3DConfig(arch="lvdm-short", norm_groups=4)
    with pytest.raises(UNet3DError, match="conv '2d'"):
        UNet3DConfig(arch="lvdm-t2v", conv="2+1d")
    with pytest.raises(UNet3DError, match="arch must be"):
        UNet3DConfig(arch="lvdm")
