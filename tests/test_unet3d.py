"""UNet3D and its layers: shapes, layout tricks against reference ops, gradients, zero-init, frame-aligned DSG."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dysen.models.layers import (
    Attention,
    FrameAlignedCrossAttention,
    TemporalConv,
    _attention_with_learned_bias,
    frames_to_clip,
)
from dysen.models.unet3d import UNet3D, UNet3DConfig, UNet3DError

TINY = UNet3DConfig(
    model_channels=8,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(1, 2),
    head_dim=4,
    ff_mult=2,
    norm_groups=4,
    text_dim=6,
    dsg_dim=5,
)
B, C, T, H, W, L, M = 2, 4, 8, 8, 8, 3, 4


def alignment(t: int = T, m: int = M) -> torch.Tensor:
    """``frame_to_sg [B, T, M]``: frame f shows step floor(f*M/T) (dysen.dsg.convert.align_steps_to_frames)."""
    f2s = torch.zeros(B, t, m)
    f2s[:, torch.arange(t), torch.arange(t) * m // t] = 1.0
    return f2s


def inputs(t: int = T, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, C, t, H, W, generator=g)
    steps = torch.tensor([10, 700])
    text = (torch.randn(B, L, TINY.text_dim, generator=g), torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool))
    graph_cond = (torch.randn(B, M, TINY.dsg_dim, generator=g), torch.ones(B, M, dtype=torch.bool), alignment(t))
    return z, steps, text, graph_cond


def make(**overrides) -> UNet3D:
    torch.manual_seed(0)
    return UNet3D(dataclasses.replace(TINY, **overrides))


def wake_zero_inits(model: torch.nn.Module) -> None:
    """Give every all-zero parameter (the zero-initialised paths) random values, so that every path is live."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def with_step_changed(graph_cond, k: int):
    tokens, mask, f2s = graph_cond
    tokens = tokens.clone()
    tokens[:, k] += 1.0
    return tokens, mask, f2s


def changed_frames(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Which frames of ``[B, C, T, h, w]`` outputs differ, as ``[B, T]`` booleans."""
    return (a - b).abs().amax(dim=(1, 3, 4)) > 1e-6


# ---------------------------------------------------------------------------------------------------------------------
# layers


def test_temporal_conv_equals_conv3d_on_bcthw():
    conv = TemporalConv(6)
    x = torch.randn(B, 6, 5, 3, 4)  # [B, C, T, H, W]
    frames = x.permute(0, 2, 1, 3, 4).reshape(B * 5, 6, 3, 4).contiguous(memory_format=torch.channels_last)
    ours = conv(frames, num_frames=5).reshape(B, 5, 6, 3, 4).permute(0, 2, 1, 3, 4)
    ref = F.conv3d(x, conv.conv.weight.unsqueeze(-1), conv.conv.bias, padding=(1, 0, 0))
    torch.testing.assert_close(ours, ref)
    assert frames_to_clip(frames, 5).is_contiguous(memory_format=torch.channels_last)  # a view, no copy


def test_attention_matches_naive_softmax_with_key_mask_and_empty_rows():
    attn = Attention(8, head_dim=4, context_dim=3)
    x, ctx = torch.randn(3, 5, 8), torch.randn(3, 6, 3)
    mask = torch.rand(3, 1, 1, 6) > 0.4
    mask[0] = False  # this query row sees no key at all
    out = attn(x, ctx, mask=mask)
    q = attn.to_q(x).view(3, 5, 2, 4).transpose(1, 2)
    k, v = (t.view(3, 6, 2, 4).transpose(1, 2) for t in attn.to_kv(ctx).chunk(2, dim=-1))
    scores = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~mask, float("-inf"))
    probs = torch.nan_to_num(scores.softmax(-1))  # empty rows -> 0
    ref = attn.to_out((probs @ v).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(out[1:], ref[1:])
    assert torch.equal(out[0], torch.zeros(5, 8))  # a query that sees no key: zero update


def test_biased_attention_matches_sdpa_and_trains_the_bias():
    q, k, v = torch.randn(3, 6, 2, 5, 4).unbind(0)  # [N, heads, T, d]
    bias = torch.randn(1, 2, 5, 5, requires_grad=True)
    out = _attention_with_learned_bias(q, k, v, bias)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    out.square().sum().backward()
    assert bias.grad is not None and bias.grad.any()


@pytest.mark.parametrize("mode", ["aligned", "broadcast"])
def test_dsg_cross_attention_layer_alignment(mode):
    torch.manual_seed(0)
    layer = FrameAlignedCrossAttention(8, context_dim=5, head_dim=4, mode=mode)
    wake_zero_inits(layer)
    x = torch.randn(B * T, 9, 8, requires_grad=True)  # [B*T, h*w, C]
    graph_cond = (torch.randn(B, M, 5), torch.ones(B, M, dtype=torch.bool), alignment())
    graph_cond[2][1, 5] = 0.0  # video 1, frame 5 shows no step
    base = layer(x, *graph_cond)
    k = 2
    diff = (layer(x, *with_step_changed(graph_cond, k)) - base).abs().amax(dim=(1, 2)).view(B, T) > 1e-6
    if mode == "aligned":
        assert torch.equal(diff, graph_cond[2][:, :, k].bool())
        assert base.view(B, T, 9, 8)[1, 5].abs().max() == 0  # frame without a step: zero update, not NaN
    else:
        assert diff.all()
    base.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_one_dsg_key_per_frame_gives_every_position_the_same_update_several_keys_do_not():
    """Why RGTrm has a node readout: with one key the softmax is 1, so the DSG cannot say *where* anything is."""
    torch.manual_seed(0)
    layer = FrameAlignedCrossAttention(8, context_dim=5, head_dim=4)
    wake_zero_inits(layer)
    x = torch.randn(B * T, 9, 8)  # [B*T, h*w, C]
    one_key = layer(x, torch.randn(B, M, 5), torch.ones(B, M, dtype=torch.bool), alignment())  # a key per frame
    assert (one_key - one_key[:, :1]).abs().max() < 1e-6  # the same vector at all 9 positions
    nodes = 3  # each step: 3 keys (e.g. its pooled token and two nodes), all seen by its frames
    several = layer(
        x, torch.randn(B, M * nodes, 5), torch.ones(B, M * nodes, dtype=torch.bool),
        alignment().repeat_interleave(nodes, dim=2),
    )  # fmt: skip
    assert (several - several[:, :1]).abs().amax(dim=(1, 2)).min() > 1e-4  # positions differ in every frame


# ---------------------------------------------------------------------------------------------------------------------
# UNet3D


@pytest.mark.parametrize(
    "overrides, frames",
    [
        ({}, T),
        ({"conv": "2+1d"}, T),
        ({"use_temporal_attention": False}, T),
        ({"conv": "2+1d", "dsg_cross_attention": "broadcast"}, 7),
        ({"use_text_cross_attention": False, "dsg_cross_attention": "off", "channel_mult": (1, 2, 2)}, 5),
    ],
)
def test_output_shapes(overrides, frames):
    model = make(**overrides)
    z, steps, text, graph_cond = inputs(frames)
    for t, txt, g in ((steps, text, graph_cond), (3, None, None), (torch.tensor(0.5), text, None)):
        out = model(z, t, txt, g)
        assert out.shape == (B, C, frames, H, W) and out.is_contiguous() and torch.isfinite(out).all()


def test_at_init_the_dsg_path_changes_nothing():
    model = make()
    z, steps, text, graph_cond = inputs()
    assert torch.equal(model(z, steps, text, graph_cond), model(z, steps, text, None))


@pytest.mark.parametrize("conv", ["2d", "2+1d"])
def test_gradients_reach_every_parameter_after_one_step(conv):
    model = make(conv=conv)
    z, steps, text, graph_cond = inputs()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    outputs = ("attn_dsg.attn.to_out.weight", "attn.to_out.weight", "res.conv2.weight")  # zero-initialised layers
    zero = {n for n, p in model.named_parameters() if not p.any() and n.endswith(outputs)}
    assert any("attn_dsg" in n for n in zero) and any("temporal" in n for n in zero)
    model(z, steps, text, graph_cond).square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert all(p.any() for n, p in model.named_parameters() if n in zero)  # the zero-init paths woke up
    model(z, steps, text, graph_cond).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead


def test_frame_alignment_through_the_unet():
    z, steps, text, cond = inputs()
    k = 1
    aligned = cond[2][:, :, k].bool()  # [B, T]
    local = make(use_temporal_attention=False)
    wake_zero_inits(local)
    changed = changed_frames(local(z, steps, text, cond), local(z, steps, text, with_step_changed(cond, k)))
    assert torch.equal(changed, aligned)  # only the frames that show step k

    for mixing in (make(), make(use_temporal_attention=False, conv="2+1d")):
        wake_zero_inits(mixing)
        changed = changed_frames(mixing(z, steps, text, cond), mixing(z, steps, text, with_step_changed(cond, k)))
        assert changed[aligned].all() and changed[~aligned].any()  # temporal layers carry it to other frames

    broadcast = make(use_temporal_attention=False, dsg_cross_attention="broadcast")
    wake_zero_inits(broadcast)
    changed = changed_frames(broadcast(z, steps, text, cond), broadcast(z, steps, text, with_step_changed(cond, k)))
    assert changed.all()


def test_gradient_checkpointing_gives_the_same_gradients():
    z, steps, text, graph_cond = inputs()
    grads = []
    for ckpt in (False, True):
        model = make(conv="2+1d", gradient_checkpointing=ckpt)
        wake_zero_inits(model)
        model(z, steps, text, graph_cond).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, msg=name)


def test_save_pretrained_round_trip_is_bit_identical(tmp_path):
    model = make(conv="2+1d", dsg_cross_attention="broadcast").eval()
    wake_zero_inits(model)
    model.save_pretrained(tmp_path / "unet")
    loaded = UNet3D.from_pretrained(tmp_path / "unet").eval()
    assert loaded.config == model.config
    z, steps, text, graph_cond = inputs()
    assert torch.equal(loaded(z, steps, text, graph_cond), model(z, steps, text, graph_cond))


def test_feed_forward_multiplier_per_level(tmp_path):
    model = make(ff_mult=(2, 6))
    widths = {8: 2, 16: 6}  # level width -> ff_mult: each transformer's FF hidden width follows its level
    ffs = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.in_features in widths]
    hidden = {
        (m.in_features, m.out_features) for m in ffs if m.out_features == 2 * m.in_features * widths[m.in_features]
    }
    assert hidden == {(8, 32), (16, 192)}  # GEGLU projections in -> 2 * mult * in, at both levels
    model.save_pretrained(tmp_path / "unet")
    assert UNet3D.from_pretrained(tmp_path / "unet").config.ff_mult == (2, 6)  # a list in config.json, a tuple back
    with pytest.raises(UNet3DError, match="one per level"):
        dataclasses.replace(TINY, ff_mult=(2, 2, 2))
    with pytest.raises(UNet3DError, match=">= 1"):
        dataclasses.replace(TINY, ff_mult=(2, 0))


def test_bad_config_and_inputs_raise_clear_errors():
    with pytest.raises(UNet3DError, match="conv"):
        dataclasses.replace(TINY, conv="3d")
    with pytest.raises(UNet3DError, match="multiple"):
        dataclasses.replace(TINY, model_channels=6)
    model = make()
    z, steps, text, (tokens, mask, f2s) = inputs()
    with pytest.raises(UNet3DError, match="frame_to_sg"):
        model(z, steps, text, (tokens, mask, f2s[:, :4]))
    with pytest.raises(UNet3DError, match="multiples"):
        model(z[..., :7], steps, text, None)


def test_hand_written_backwards_match_autograd() -> None:
    """The fused GEGLU projection and the q/k/v head split have hand-written backwards: check them in float64."""
    from dysen.models.layers import Attention, _GEGLUProjection, _SplitHeads

    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_GEGLUProjection.apply, (x, weight, bias))
    a, gate = torch.nn.functional.linear(x, weight, bias).chunk(2, dim=-1)
    assert torch.allclose(_GEGLUProjection.apply(x, weight, bias), a * torch.nn.functional.gelu(gate))
    packed = torch.randn(2, 4, 3 * 2 * 3, dtype=torch.float64, requires_grad=True)  # [N, L, parts*heads*d]
    assert torch.autograd.gradcheck(
        lambda t: sum(v.sum() * (i + 1) for i, v in enumerate(_SplitHeads.apply(t, 3, 2))), (packed,)
    )
    attention = Attention(16, 8).double()
    tokens = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(attention, (tokens,))
