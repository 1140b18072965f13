"""The shipped ``shapes-wan-tiny`` (issue 24 §4): a diffusers-format folder inside the package that loads only
through ``--backbone`` (by its name), within its size budget, with a model card whose SHA-256 table matches its
files; and its shipped DSG adapter (issue 25), the same way through ``--adapter``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from dysen.backbones.folder import SHIPPED_ADAPTERS, SHIPPED_BACKBONES, load_backbone
from dysen.cli import main
from dysen.data.video import read_video

FOLDER = SHIPPED_BACKBONES["shapes-wan-tiny"]
ADAPTER = SHIPPED_ADAPTERS["shapes-wan-tiny-adapter"]


def test_it_is_a_diffusers_folder_of_real_classes_within_budget() -> None:
    index = json.loads((FOLDER / "model_index.json").read_text())
    assert index["_class_name"] == "DysenWanPipeline"
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    transformer = WanTransformer3DModel.from_pretrained(FOLDER / "transformer")  # diffusers reads it as it is
    assert sum(p.numel() for p in transformer.parameters()) == 1_267_904
    FlowMatchEulerDiscreteScheduler.from_pretrained(FOLDER / "scheduler")
    size = sum(f.stat().st_size for f in FOLDER.rglob("*") if f.is_file())
    assert size <= 12 * 2**20
    package = sum(f.stat().st_size for f in FOLDER.parent.rglob("*.safetensors"))  # every shipped model
    assert package <= 30 * 2**20
    assert not [f for f in FOLDER.rglob("*") if f.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]


@pytest.mark.parametrize("folder", [FOLDER, ADAPTER], ids=["backbone", "adapter"])
def test_the_model_card_lists_every_weight_file_with_its_sha256(folder: Path) -> None:
    card = (folder / "README.md").read_text()
    rows = dict(re.findall(r"\| `([^`]+\.safetensors)` \| `([0-9a-f]{64})` \|", card))
    files = {str(f.relative_to(folder)): f for f in folder.rglob("*.safetensors")}
    assert set(rows) == set(files)
    for name, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rows[name], name


def test_generate_takes_it_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no folder named shapes-wan-tiny here: the shipped one is meant
    out = tmp_path / "v.mp4"
    prompt = "a red circle moves right, then a blue square jumps"
    assert main(["generate", prompt, "--backbone", "shapes-wan-tiny", "--steps", "4", "--out", str(out)]) == 0
    assert read_video(out).shape == (16, 64, 64, 3)
    steered = tmp_path / "s.mp4"
    flags = ["--control-strength", "2", "--steps", "4", "--out", str(steered)]
    assert main(["generate", prompt, "--backbone", "shapes-wan-tiny", *flags]) == 0
    assert steered.with_suffix(".dsg.json").is_file()
    assert load_backbone("shapes-wan-tiny").geometry.name == "wan"


def test_the_shipped_adapter_fits_the_shipped_backbone_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dysen.backbones.adapter import load_adapter

    assert sum(f.stat().st_size for f in ADAPTER.rglob("*") if f.is_file()) <= 5 * 2**20  # issue 25's budget
    adapter = load_adapter("shapes-wan-tiny-adapter", load_backbone("shapes-wan-tiny").denoiser.config)
    params = sum(p.numel() for p in adapter.parameters())
    assert params == 101_410 and params < 0.1 * 1_267_904
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "a.mp4"
    prompt = "a red circle moves right, then a blue square jumps"
    argv = ["generate", prompt, "--backbone", "shapes-wan-tiny", "--adapter", "shapes-wan-tiny-adapter"]
    assert main([*argv, "--steps", "3", "--out", str(out)]) == 0
    assert read_video(out).shape == (16, 64, 64, 3) and out.with_suffix(".dsg.json").is_file()
