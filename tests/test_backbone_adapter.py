"""The DSG adapter for frozen backbones (``dysen.backbones.adapter``): an untrained adapter changes nothing, its
grounding tokens reach only the video tokens of their own and neighbouring latent frames, it counts its
parameters on the real Wan2.1-T2V-1.3B config, and it saves as config.json + safetensors only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbone_fixtures import save_wan
from dysen.backbones.adapter import (
    AdapterConfig,
    AdapterError,
    DSGAdapter,
    GatedGroundingAttention,
    Grounding,
    adapter_parameters,
    box_features,
    wan_adapter_config,
)
from dysen.backbones.base import BackboneOptions
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
        with adapter.installed(wan.transformer.blocks, grounding):
            adapted = _velocity(wan, x)
        assert torch.equal(adapted, plain)
        for layer in adapter.layers:
            layer.gate.fill_(0.5)
        with adapter.installed(wan.transformer.blocks, grounding):
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
    deeper = torch.nn.ModuleList(torch.nn.Identity() for _ in range(adapter.config.num_blocks + 1))
    with pytest.raises(AdapterError, match="blocks"), adapter.installed(deeper, None):
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
