"""The DSG adapter for frozen backbones (``dysen.backbones.adapter``): an untrained adapter changes nothing, its
grounding tokens reach only the video tokens of their own and neighbouring latent frames, it counts its
parameters on the real Wan2.1-T2V-1.3B config, and it saves as config.json + safetensors only; the same for a
ModelScope-style UNet3D (per-frame tokens, a width per level) and Wan 2.2 A14B's two experts (shared layers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbone_fixtures import save_unet3d, save_wan
from dysen.backbones.adapter import (
    AdapterConfig,
    AdapterError,
    DSGAdapter,
    GatedGroundingAttention,
    Grounding,
    adapter_config,
    adapter_parameters,
    box_features,
    video_tokens,
    wan_adapter_config,
)
from dysen.backbones.base import AdapterSite, BackboneOptions
from dysen.backbones.folder import load_backbone
from dysen.backbones.schedule import latent_frame_spans
from dysen.models.graph_batch import GraphBatch
from dysen.models.pretrained import CheckpointError
from dysen.models.rgtrm import RGTrmConfig
from test_backbone_control import two_step_plan
from test_rgtrm import HashLabels

FRAMES = 17  # Wan's causal VAE: 5 latent frames


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return load_backbone(save_wan(tmp_path_factory.mktemp("adapter") / "wan"), BackboneOptions(device="cpu"))


def _adapter(wan, **changes) -> DSGAdapter:  # noqa: ANN001
    rgtrm = RGTrmConfig(label_dim=HashLabels.dim, dim=16, num_layers=1, num_heads=2, layout=True)
    config = wan_adapter_config(wan.transformer.config, every=1, rgtrm=rgtrm, **changes)
    torch.manual_seed(0)
    return DSGAdapter(config)


def _grounding(adapter: DSGAdapter) -> Grounding:
    batch = GraphBatch.from_dsgs([two_step_plan()], FRAMES).with_label_embeddings(HashLabels())
    objects = adapter.rgtrm(batch).objects
    return adapter.ground(objects, latent_frame_spans(FRAMES, 4))


def _velocity(wan, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    states, mask = wan.encode_prompt(["a red circle moves right then a blue square jumps"])
    return wan.denoise_fn(x, torch.tensor(500.0), (states, mask))


def test_an_untrained_adapter_leaves_the_backbone_bit_for_bit(wan) -> None:  # noqa: ANN001
    adapter = _adapter(wan)
    c, t, h, w = wan.latent_shape(FRAMES, 64, 64)
    x = torch.randn(1, c, t, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = _velocity(wan, x)
        grounding = _grounding(adapter)
        width = wan.transformer.config.num_attention_heads * wan.transformer.config.attention_head_dim
        assert grounding.tokens.shape == (1, t, 1, width)  # one object present at a time in this plan
        assert grounding.mask.all()
        with adapter.installed(wan.adapter_sites(), grounding):
            adapted = _velocity(wan, x)
        assert torch.equal(adapted, plain)
        for layer in adapter.layers:
            layer.gate.fill_(0.5)
        with adapter.installed(wan.adapter_sites(), grounding):
            opened = _velocity(wan, x)
        assert not torch.equal(opened, plain)
        assert torch.equal(_velocity(wan, x), plain)  # the hooks are gone


def test_grounding_tokens_reach_their_own_and_neighbouring_latent_frames_only() -> None:
    torch.manual_seed(0)
    layer = GatedGroundingAttention(8, 2)
    with torch.no_grad():
        layer.gate.fill_(1.0)
    frames, cells, count = 5, 3, 2
    mask = torch.ones(1, frames, count, dtype=torch.bool)
    mask[0, 0, 1] = False  # object 1 absent from frame 0
    tokens = torch.randn(1, frames, count, 8)
    hidden = torch.randn(1, frames * cells, 8)
    before = layer(hidden, tokens.flatten(1, 2), Grounding(tokens, mask).allowed(cells, 1))
    changed = tokens.clone()
    changed[0, 2] += 5.0  # the tokens of latent frame 2
    after = layer(hidden, changed.flatten(1, 2), Grounding(changed, mask).allowed(cells, 1))
    moved = (after - before).abs().amax(-1).view(frames, cells).amax(-1)  # [F]
    assert moved[1:4].min() > 0 and moved[0] == 0 and moved[4] == 0
    allowed = Grounding(tokens, mask).allowed(cells, 0)  # [1, F·cells, F·K]
    assert allowed[0, :cells].tolist() == [[True, False] + [False] * 8] * cells  # frame 0: its object 0 only


def test_a_narrow_adapter_for_shapes_wan_tiny_trains_under_a_tenth_of_its_parameters() -> None:
    from dysen.train.adapter_task import ADAPTER_PRESETS

    tiny = {"num_attention_heads": 4, "attention_head_dim": 32, "num_layers": 4, "ffn_dim": 512}  # wan-tiny's
    preset = ADAPTER_PRESETS["adapter-tiny"]
    config = wan_adapter_config(tiny, every=preset.every, width=preset.width, rgtrm=preset.rgtrm)
    assert config.inner == 64 and config.adapted_blocks == (1, 3)
    assert adapter_parameters(config) < 0.1 * 1_267_904  # shapes-wan-tiny's transformer


def test_box_features_are_gligens_fourier_embedding() -> None:
    features = box_features(torch.tensor([[0.0, 0.25, 0.5, 1.0]]), 8)
    assert features.shape == (1, 64)
    assert torch.allclose(features[0, :8], torch.zeros(8)) and torch.allclose(features[0, 8:16], torch.ones(8))


def test_the_adapter_for_wan21_1_3b_is_under_a_tenth_of_its_size() -> None:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    from test_backbones import WAN21_T2V_1_3B

    with init_empty_weights():
        backbone = sum(p.numel() for p in WanTransformer3DModel(**WAN21_T2V_1_3B).parameters())
    config = wan_adapter_config(WAN21_T2V_1_3B, every=3, rgtrm=RGTrmConfig(label_dim=4096, dim=512, layout=True))
    assert config.dim == 1536 and config.adapted_blocks == tuple(range(2, 30, 3))
    count = adapter_parameters(config)
    layers = 10 * (4 * (1536 * 1536 + 1536) + 2 * 1536 + 1536 + 1)  # q, k, v, out; norm; null; gate
    assert count > layers and count < 0.1 * backbone
    print(f"\nWan2.1-T2V-1.3B: {backbone / 1e6:.1f}M parameters; adapter every 3rd block: {count / 1e6:.1f}M "
          f"({100 * count / backbone:.1f}%)")  # fmt: skip


def test_configs_that_cannot_fit_are_refused() -> None:
    with pytest.raises(AdapterError, match="layout=True"):
        AdapterConfig(rgtrm=RGTrmConfig())
    with pytest.raises(AdapterError, match="heads"):
        AdapterConfig(dim=10, heads=4)
    with pytest.raises(AdapterError, match="every"):
        AdapterConfig(num_blocks=4, every=5)


def test_an_adapter_refuses_another_depth_and_saves_as_safetensors(wan, tmp_path: Path) -> None:  # noqa: ANN001
    adapter = _adapter(wan)
    width = adapter.config.dim
    blocks = adapter.config.num_blocks
    deeper = [AdapterSite(torch.nn.Identity(), width, 2, slot, "video") for slot in range(blocks + 1)]
    with pytest.raises(AdapterError, match="blocks"), adapter.installed(deeper, None):
        pass
    wider = [AdapterSite(torch.nn.Identity(), width + 2, 2, slot, "video") for slot in range(blocks)]
    with pytest.raises(AdapterError, match="widths"), adapter.installed(wider, None):
        pass
    folder = adapter.save_pretrained(tmp_path / "adapter")
    again = DSGAdapter.from_pretrained(folder)
    assert again.config == adapter.config
    pairs = zip(adapter.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    torch.save(adapter.state_dict(), folder / "model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="pickle|safetensors"):
        DSGAdapter.from_pretrained(folder)


def _rgtrm() -> RGTrmConfig:
    return RGTrmConfig(label_dim=HashLabels.dim, dim=16, num_layers=1, num_heads=2, layout=True)


def _opened_changes_only_with_the_hooks(backbone, adapter: DSGAdapter, frames: int, size: int, t: float) -> None:  # noqa: ANN001
    """At initialisation the adapter changes nothing; with open gates it changes the prediction; removed, nothing."""
    c, lt, h, w = backbone.latent_shape(frames, size, size)
    x = torch.randn(1, c, lt, h, w, generator=torch.Generator().manual_seed(1))
    text = backbone.encode_prompt(["a red circle moves right then a blue square jumps"])
    batch = GraphBatch.from_dsgs([two_step_plan()], frames).with_label_embeddings(HashLabels())
    with torch.no_grad():
        spans = latent_frame_spans(frames, backbone.geometry.temporal_factor)
        grounding = adapter.ground(adapter.rgtrm(batch).objects, spans)
        plain = backbone.denoise_fn(x, torch.tensor(t), text)
        with adapter.installed(backbone.adapter_sites(), grounding):
            assert torch.equal(backbone.denoise_fn(x, torch.tensor(t), text), plain)
            for layer in adapter.layers:
                layer.gate.fill_(0.5)
            opened = backbone.denoise_fn(x, torch.tensor(t), text)
        assert not torch.equal(opened, plain)
        assert torch.equal(backbone.denoise_fn(x, torch.tensor(t), text), plain)  # the hooks are gone


def test_a_unet3d_adapter_has_a_width_per_level_and_changes_nothing_untrained(tmp_path: Path) -> None:
    unet3d = load_backbone(save_unet3d(tmp_path / "unet3d", channels=(4, 8)), BackboneOptions(device="cpu"))
    sites = unet3d.adapter_sites()
    assert [(site.slot, site.dim, site.layout) for site in sites] == [
        (0, 4, "frames"), (1, 8, "frames"), (2, 4, "frames"), (3, 4, "frames")
    ]  # down level 0; the middle (level 1); up level 0 (two layers)
    config = adapter_config(unet3d, every=1, rgtrm=_rgtrm(), width=8, heads=2)
    assert config.block_dims == (4, 8, 4, 4) and config.backbone
    torch.manual_seed(0)
    adapter = DSGAdapter(config)
    assert [layer.to_q.in_features for layer in adapter.layers] == [4, 8, 4, 4]
    _opened_changes_only_with_the_hooks(unet3d, adapter, 8, 16, 500.0)
    assert DSGAdapter.from_pretrained(adapter.save_pretrained(tmp_path / "a")).config == config


def test_frames_layout_tokens_are_frame_major_and_go_back_unchanged() -> None:
    b, frames, d, h, w = 2, 3, 4, 2, 5
    sample = torch.randn(b * frames, d, h, w)
    hidden, restore = video_tokens((sample,), "frames", frames)
    assert hidden.shape == (b, frames * h * w, d)
    assert torch.equal(hidden[1, 2 * h * w + 1 * w + 3], sample[1 * frames + 2, :, 1, 3])  # clip 1, frame 2, (1, 3)
    back = restore(hidden)
    assert isinstance(back, tuple) and torch.equal(back[0], sample)


def test_wan22_experts_share_the_adapter_layers(tmp_path: Path) -> None:
    import json
    import shutil

    folder = save_wan(tmp_path / "wan22")
    shutil.copytree(folder / "transformer", folder / "transformer_2")
    index = json.loads((folder / "model_index.json").read_text())
    index.update(transformer_2=["diffusers", "WanTransformer3DModel"], boundary_ratio=0.5)
    (folder / "model_index.json").write_text(json.dumps(index))
    wan22 = load_backbone(folder, BackboneOptions(device="cpu"))
    with torch.no_grad():
        for p in wan22.transformer_2.parameters():
            p.add_(0.01 * torch.randn_like(p))  # the low-noise expert differs from the high-noise one
    sites = wan22.adapter_sites()
    assert [site.slot for site in sites] == [0, 0]  # block 0 of each expert: one slot
    assert {id(site.module) for site in sites} == {id(wan22.transformer.blocks[0]), id(wan22.transformer_2.blocks[0])}
    config = adapter_config(wan22, every=1, rgtrm=_rgtrm())
    assert config.num_blocks == 1 and config.block_dims == ()
    for t in (900.0, 100.0):  # the high-noise expert, then the low-noise one
        torch.manual_seed(0)
        _opened_changes_only_with_the_hooks(wan22, DSGAdapter(config), FRAMES, 64, t)


def test_default_heads_divide_a_narrow_adapters_width() -> None:
    """A narrow adapter (adapter-tiny's 64) on a backbone whose heads do not divide it (Wan2.1-1.3B: 12; ModelScope's
    first level: 5) takes the most heads below the backbone's that do."""
    from types import SimpleNamespace

    def backbone(heads: int, dim: int) -> SimpleNamespace:
        site = AdapterSite(torch.nn.Identity(), dim, heads, 0, "video")
        return SimpleNamespace(name="test", adapter_sites=lambda: [site], denoiser=SimpleNamespace(config={"d": dim}))

    one = {"every": 1, "rgtrm": _rgtrm()}
    assert adapter_config(backbone(12, 1536), width=64, **one).heads == 8
    assert adapter_config(backbone(5, 320), width=64, **one).heads == 4
    assert adapter_config(backbone(5, 320), **one).heads == 5  # its own width: its own heads
    assert adapter_config(backbone(12, 1536), width=64, heads=2, **one).heads == 2  # as asked
