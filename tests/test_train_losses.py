"""LVDM's autoencoder loss terms: LPIPS from local weight files, the PatchGAN, and its second optimizer in the loop.

LPIPS runs on a narrow random VGG16 (the widths are read from the file) saved in torchvision's and lpips' key
layouts: identical images are at distance 0, and the distance grows with the distortion; missing and pickled
files are refused. The PatchGAN's generator term trains only the decoder and its hinge loss only the
discriminator; before ``disc_start`` the discriminator does not move, after it both do, and a resumed run
restores both optimizers, repeating the uninterrupted losses and weights exactly.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from dysen.cli import main
from dysen.config import save_config
from dysen.data.shapes import ShapesConfig
from dysen.data.shapes.dataset import ShapesDataset, collate
from dysen.errors import DysenError
from dysen.models.lpips import LPIPS
from dysen.models.patchgan import DiscriminatorError, NLayerDiscriminator
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.checkpoint import latest_checkpoint, load_checkpoint
from dysen.train.loop import TrainConfig, train
from dysen.train.losses import adaptive_weight, hinge_d_loss
from dysen.train.stages import StageError, VAETask
from dysen.train.vae_loss import VAELossConfig
from pipeline_fixtures import TINY

SHAPES = ShapesConfig(size=16, num_frames=8)
WIDTHS = (4, 8, 8, 16, 16)


def _lpips_files(folder: Path, suffix: str = ".pth") -> tuple[Path, Path]:
    """Random LPIPS weights: heads as the lpips package's ``vgg.pth`` keys, VGG16 as torchvision's ``vgg16``."""
    torch.manual_seed(1)
    model = LPIPS(WIDTHS)
    for param in model.parameters():
        param.data.normal_(0.0, 0.5)
    backbone = {**model.net.state_dict(), "classifier.0.weight": torch.zeros(2, 2)}  # the classifier is ignored
    heads = {f"lin{i}.model.1.weight": head.weight.abs() for i, head in enumerate(model.heads)}  # lpips: w ≥ 0
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"vgg{suffix}", folder / f"vgg16{suffix}"
    for state, path in zip((heads, backbone), paths, strict=True):
        save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    return paths


def test_lpips_is_zero_for_identical_frames_and_grows_with_distortion(tmp_path: Path) -> None:
    heads, backbone = _lpips_files(tmp_path)
    lpips = LPIPS.from_files(heads, backbone)
    assert torch.equal(lpips.heads[3].weight, torch.load(heads)["lin3.model.1.weight"])
    assert torch.equal(lpips.net.features[28].weight, torch.load(backbone)["features.28.weight"])  # conv5_3
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    distances = [lpips(x, x + scale * noise) for scale in (0.0, 0.05, 0.2, 0.8)]  # each [3]
    assert torch.equal(distances[0], torch.zeros(3))
    assert all((a < b).all() for a, b in zip(distances[:-1], distances[1:], strict=True))
    again = LPIPS.from_files(*_lpips_files(tmp_path / "st", ".safetensors"))  # same weights as safetensors
    assert torch.allclose(again(x, x + 0.2 * noise), distances[2])
    assert not any(p.requires_grad for p in lpips.parameters()) and not lpips.train().training


class Payload:
    """Not a tensor: unpickling this runs arbitrary code paths, which weights_only must refuse."""


def test_lpips_refuses_missing_and_pickled_files(tmp_path: Path) -> None:
    heads, backbone = _lpips_files(tmp_path)
    with pytest.raises(DysenError, match="LPIPS heads weights not found at .*nowhere.pth"):
        LPIPS.from_files(tmp_path / "nowhere.pth", backbone)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({**torch.load(heads), "extra": Payload()}, unsafe)
    with pytest.raises(DysenError, match="holds pickled Python objects, not only tensors, and is refused"):
        LPIPS.from_files(unsafe, backbone)
    with pytest.raises(DysenError, match="is not an LPIPS heads file"):
        LPIPS.from_files(backbone, backbone)
    with pytest.raises(DysenError, match="is not a VGG16 state dict"):
        LPIPS.from_files(heads, heads)
    assert pickle.dumps(Payload())  # the class itself pickles fine: it is the loader that refuses it


def test_hinge_loss_and_adaptive_weight_match_their_formulas() -> None:
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0  # both beyond the margin
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)) == 1
    layer = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    rec, g = (3 * layer).sum(), (layer**2).sum()  # ∇rec = (3, 3), ∇g = (2, -4)
    expected = 0.5 * (18**0.5) / (20**0.5 + 1e-4)
    assert adaptive_weight(rec, g, layer, 0.5).item() == pytest.approx(expected)
    with torch.no_grad():
        assert adaptive_weight((3 * layer).sum(), (layer**2).sum(), layer, 0.5) == 0


def test_patchgan_gives_patch_logits_and_refuses_too_small_frames() -> None:
    disc = NLayerDiscriminator(channels=4, n_layers=2)
    assert disc(torch.zeros(5, 3, 16, 16)).shape == (5, 1, 2, 2)
    assert disc.main[0].weight.std().item() == pytest.approx(0.02, rel=0.3)  # taming's init
    with pytest.raises(DiscriminatorError, match="too small for a 3-layer PatchGAN"):
        NLayerDiscriminator(channels=4, n_layers=3)(torch.zeros(1, 3, 16, 16))


def _task(tmp_path: Path, disc_start: int) -> VAETask:
    torch.manual_seed(0)
    vae, disc = KLVideoAutoencoder(TINY.vae.kl3d), NLayerDiscriminator(channels=4, n_layers=2)
    lpips = LPIPS.from_files(*_lpips_files(tmp_path / "lpips"))
    loss = VAELossConfig(perceptual_weight=1.0, disc_start=disc_start, disc_weight=0.5)
    return VAETask(vae, loss, lpips=lpips, discriminator=disc)


def test_each_gan_term_trains_only_its_own_network(tmp_path: Path) -> None:
    task = _task(tmp_path, disc_start=0)
    batch = collate([ShapesDataset(2, config=SHAPES)[i] for i in range(2)])
    out = task.step(batch, torch.Generator().manual_seed(0))
    assert out.aux_loss is not None and out.logs["adaptive_weight"] > 0
    vae, disc = list(task.vae.parameters()), list(task.discriminator.parameters())  # type: ignore[union-attr]
    assert all(g is None for g in torch.autograd.grad(out.aux_loss, vae, retain_graph=True, allow_unused=True))
    both = torch.autograd.grad(out.loss + out.aux_loss, disc, retain_graph=True)
    alone = torch.autograd.grad(out.aux_loss, disc, retain_graph=True)
    assert all(torch.equal(a, b) for a, b in zip(both, alone, strict=True))  # the generator term leaves D alone
    decoder = torch.autograd.grad(out.loss, task.vae.decoder[-1].weight)[0]
    assert decoder.abs().sum() > 0


def _weights(run: Path, prefix: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(latest_checkpoint(run))  # type: ignore[arg-type]
    return {k: v for k, v in state.weights.items() if k.startswith(prefix)}


@pytest.mark.slow
def test_discriminator_waits_for_disc_start_then_both_train_and_resume_exactly(tmp_path: Path) -> None:
    dataset = ShapesDataset(8, config=SHAPES)

    def run(name: str, steps: int, resume: bool = False) -> list[dict[str, Any]]:
        config = TrainConfig(steps=steps, batch_size=2, lr=1e-3, ema_decay=0.0, save_every=1, seed=2)
        train(_task(tmp_path, disc_start=1), dataset, collate, config, tmp_path / name, resume)
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    initial = {f"disc.{k}": v for k, v in _task(tmp_path, 1).discriminator.state_dict().items()}  # type: ignore
    initial_vae = {f"vae.{k}": v for k, v in _task(tmp_path, 1).vae.state_dict().items()}
    run("resumed", 1)  # step 0: before disc_start
    before = load_checkpoint(latest_checkpoint(tmp_path / "resumed"))  # type: ignore[arg-type]
    assert all(torch.equal(initial[k], v) for k, v in _weights(tmp_path / "resumed", "disc.").items())
    assert not all(torch.equal(initial_vae[k], v) for k, v in _weights(tmp_path / "resumed", "vae.").items())
    assert before.aux_optimizer is not None and before.aux_optimizer["state"] == {}  # never stepped
    run("resumed", 2, resume=True)  # step 1: both step; the discriminator's Adam moments are now non-zero
    middle = load_checkpoint(latest_checkpoint(tmp_path / "resumed"))  # type: ignore[arg-type]
    assert middle.aux_optimizer["state"] and not all(  # type: ignore[index]
        torch.equal(initial[k], v) for k, v in _weights(tmp_path / "resumed", "disc.").items()
    )
    resumed = run("resumed", 4, resume=True)
    full = run("full", 4)
    assert ["disc_loss" in line for line in full] == [False, True, True, True]
    assert [line["loss"] for line in resumed] == [line["loss"] for line in full]
    assert [line.get("disc_loss") for line in resumed] == [line.get("disc_loss") for line in full]
    after, again = (load_checkpoint(latest_checkpoint(tmp_path / n)) for n in ("resumed", "full"))  # type: ignore
    assert all(torch.equal(v, again.weights[k]) for k, v in after.weights.items())  # VAE and D, BN stats included
    pairs = [(after.aux_optimizer, again.aux_optimizer), (after.optimizer, again.optimizer)]
    for mine, theirs in pairs:
        assert all(
            torch.equal(v, theirs["state"][i][name])  # type: ignore[index]
            for i, slot in mine["state"].items()  # type: ignore[union-attr]
            for name, v in slot.items()
        )


def test_train_vae_cli_takes_the_lpips_and_gan_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    heads, backbone = _lpips_files(tmp_path / "lpips")
    config = save_config(TINY, tmp_path / "tiny.yaml")
    common = ["train-vae", "--config", str(config), "--batch-size", "2", "--num-clips", "4", "--save-every", "100"]
    gan = ["--disc-weight", "0.5", "--disc-start", "1", "--disc-layers", "2", "--disc-channels", "4"]
    lpips = ["--perceptual-weight", "1", "--lpips", str(heads), "--lpips-vgg", str(backbone)]
    out = tmp_path / "vae"
    assert main([*common, "--out", str(out), "--steps", "2", *lpips, *gan]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "lpips" in lines[0] and "disc_loss" not in lines[0] and "disc_loss" in lines[1]
    weights = load_checkpoint(latest_checkpoint(out)).weights  # type: ignore[arg-type]
    assert weights["disc.main.0.weight"].shape == (4, 3, 4, 4)
    saved = json.loads((out / "vae_loss.json").read_text())
    assert (saved["perceptual_weight"], saved["lpips"], saved["disc_start"]) == (1.0, str(heads), 1)
    other = ["--disc-weight", "0.25", *gan[2:]]
    assert main([*common, "--out", str(out), "--steps", "3", *lpips, *other, "--resume", "latest"]) == 1
    assert "with other loss settings for ['disc_weight']" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "no"), "--perceptual-weight", "1"]) == 1
    assert "--perceptual-weight needs the LPIPS weights as local files" in capsys.readouterr().err
    with pytest.raises(StageError, match="needs the LPIPS network"):
        VAETask(KLVideoAutoencoder(TINY.vae.kl3d), VAELossConfig(perceptual_weight=1.0))
