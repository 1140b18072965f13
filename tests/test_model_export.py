"""``dysen model export``: a training checkpoint written as a model folder, checked tensor by tensor.

A 4-step ``train-backbone`` run of the wan-test preset keeps every checkpoint (``--keep-checkpoints 0``); its step-2
checkpoint is exported and loaded through ``--backbone``'s own loader, the newest one reproduces the run's
``model/`` exactly, and a checkpoint that does not fit the template is refused with the tensors named.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dysen.backbones.folder import load_backbone
from dysen.cli import main
from dysen.train.checkpoint import load_checkpoint, step_folder

ARGS = ["--config", "wan-test", "--batch-size", "2", "--num-clips", "8", "--lr", "1e-3", "--save-every", "1"]
TRANSFORMER = Path("transformer") / "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step wan-test run that keeps all four checkpoints."""
    out = tmp_path_factory.mktemp("export") / "run"
    assert main(["train-backbone", "--out", str(out), "--steps", "4", "--keep-checkpoints", "0", *ARGS]) == 0
    return out


def test_keep_checkpoints_0_keeps_every_one(run: Path) -> None:
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"step-{s:08d}" for s in (1, 2, 3, 4)]


def test_an_earlier_checkpoint_loads_as_a_backbone_with_its_ema_weights(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "step2"
    assert main(["model", "export", str(run), "--step", "2", "--out", str(out)]) == 0
    ema = load_checkpoint(step_folder(run, 2)).ema
    assert ema is not None
    backbone = load_backbone(out)
    final = load_backbone(run / "model")
    changed = False
    for key, value in backbone.transformer.state_dict().items():
        assert torch.equal(value, ema[f"transformer.{key}"]), key
        changed |= not torch.equal(value, final.transformer.state_dict()[key])
    assert changed, "step 2 and step 4 should differ"
    vae = Path("vae") / "model.safetensors"
    assert (out / vae).read_bytes() == (run / "model" / vae).read_bytes()


def test_the_newest_checkpoint_reproduces_the_runs_model_and_raw_weights_are_the_optimizers(
    run: Path, tmp_path: Path
) -> None:
    assert main(["model", "export", str(run), "--out", str(tmp_path / "ema")]) == 0
    exported, written = load_file(tmp_path / "ema" / TRANSFORMER), load_file(run / "model" / TRANSFORMER)
    assert exported.keys() == written.keys()
    assert all(torch.equal(exported[k], written[k]) for k in written)
    assert main(["model", "export", str(run), "--weights", "raw", "--out", str(tmp_path / "raw")]) == 0
    raw = load_file(tmp_path / "raw" / TRANSFORMER)
    weights = load_checkpoint(step_folder(run, 4)).weights
    assert all(torch.equal(raw[k], weights[f"transformer.{k}"]) for k in raw)


def test_a_backbone_run_still_going_exports_without_a_template(run: Path, tmp_path: Path) -> None:
    going = tmp_path / "going"
    shutil.copytree(run, going, ignore=shutil.ignore_patterns("model"))  # no model/ yet
    assert main(["model", "export", str(going), "--step", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(["model", "export", str(run), "--step", "2", "--out", str(tmp_path / "b")]) == 0
    for part in ("transformer/diffusion_pytorch_model.safetensors", "vae/model.safetensors"):
        built, copied = load_file(tmp_path / "a" / part), load_file(tmp_path / "b" / part)
        assert built.keys() == copied.keys() and all(torch.equal(built[k], copied[k]) for k in built), part
    assert load_backbone(tmp_path / "a").defaults == load_backbone(tmp_path / "b").defaults


def test_a_checkpoint_that_does_not_fit_the_template_is_refused_by_name(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "template"
    shutil.copytree(run / "model", template)
    tensors = load_file(template / TRANSFORMER)
    name = "proj_out.weight"
    tensors[name] = torch.zeros(3, 3)
    save_file(tensors, template / TRANSFORMER)
    out = tmp_path / "out"
    assert main(["model", "export", str(run), "--template", str(template), "--out", str(out)]) == 1
    assert f"{name} (" in capsys.readouterr().err and not out.exists()


def test_missing_steps_runs_and_folders_get_clear_errors(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "export", str(run), "--step", "7", "--out", str(tmp_path / "a")]) == 1
    assert "no checkpoint of step 7; it keeps step-00000001" in capsys.readouterr().err
    assert main(["model", "export", str(tmp_path), "--out", str(tmp_path / "b")]) == 1
    assert "has no checkpoints/" in capsys.readouterr().err
    assert main(["model", "export", str(run), "--out", str(run / "model")]) == 1
    assert "exists" in capsys.readouterr().err
