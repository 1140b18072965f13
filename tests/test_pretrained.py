"""config.json + safetensors folders: exact round trips, atomic writes, pickles and mismatches refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from dysen.models.pretrained import CheckpointError, Pretrained


@dataclass(frozen=True)
class InnerConfig:
    width: int = 4


@dataclass(frozen=True)
class ToyConfig:
    inner: InnerConfig = InnerConfig()
    depth: int = 2
    heads: tuple[int, ...] = (1, 2)


class Toy(nn.Module, Pretrained):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(nn.Linear(config.inner.width, config.inner.width) for _ in range(config.depth))


def test_round_trip_is_bit_identical_and_keeps_nested_config(tmp_path):
    torch.manual_seed(0)
    model = Toy(ToyConfig(inner=InnerConfig(width=3), depth=3, heads=(2, 4)))
    model.save_pretrained(tmp_path / "toy")
    loaded = Toy.from_pretrained(tmp_path / "toy")
    assert loaded.config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_save_replaces_a_folder_and_leaves_no_staging(tmp_path):
    Toy(ToyConfig()).save_pretrained(tmp_path / "toy")
    Toy(ToyConfig(depth=1)).save_pretrained(tmp_path / "toy")
    assert Toy.from_pretrained(tmp_path / "toy").config.depth == 1
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


def test_pickled_weights_are_refused(tmp_path):
    folder = Toy(ToyConfig()).save_pretrained(tmp_path / "toy")
    (folder / "model.safetensors").unlink()
    torch.save(Toy(ToyConfig()).state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled weights"):
        Toy.from_pretrained(folder)
    torch.save(Toy(ToyConfig()).state_dict(), folder / "model.safetensors")  # a pickle in disguise
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        Toy.from_pretrained(folder)


def test_missing_folder_wrong_class_and_wrong_shapes_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        Toy.from_pretrained(tmp_path / "nothing")
    folder = Toy(ToyConfig()).save_pretrained(tmp_path / "toy")
    (folder / "config.json").write_text('{"_class": "Toy", "depth": 1}')
    with pytest.raises(CheckpointError, match="does not match"):
        Toy.from_pretrained(folder)
    (folder / "config.json").write_text('{"_class": "Toy", "inner": {"width": 5}}')
    with pytest.raises(CheckpointError, match="does not match"):
        Toy.from_pretrained(folder)
    (folder / "config.json").write_text('{"_class": "UNet3D"}')
    with pytest.raises(CheckpointError, match="holds a UNet3D"):
        Toy.from_pretrained(folder)
