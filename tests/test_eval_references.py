"""Published evaluation protocols (``dysen eval --reference``, ``dysen.eval.references``): repeated runs with
mean ± std that redraw the real or the generated clips, KVD beside FVD, LVDM's DDIM η, the I3D's BatchNorm eps, and
StyleGAN-V's call of its TorchScript I3D; each report records the reference and every setting."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dysen.cli.eval as cli_eval
from dysen.cli import main
from dysen.eval.benchmark import VideoSampling
from dysen.eval.features.i3d import I3DExtractor, i3d_features, load_i3d
from dysen.eval.protocols import MetricNetworks, ZeroShotSettings, load_networks, run_zero_shot
from dysen.eval.references import REFERENCES
from dysen.eval.variants import Variant
from test_eval_cli import _ScriptedI3D, _StandIn, tiny_model, ucf101  # noqa: F401  (fixtures)


class _StyleGANVOnlyI3D(torch.nn.Module):
    """A TorchScript I3D stand-in that only answers StyleGAN-V's call: uint8 videos, its own rescale and resize."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        if not (rescale and resize and return_features) or x.dtype != torch.uint8:
            raise RuntimeError("not called as StyleGAN-V calls it")
        return self.proj(x.float().mean(dim=(2, 3, 4)) / 127.5 - 1.0)  # [B, 400]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_stylegan_v_calls_the_torchscript_i3d_on_uint8_videos_at_their_size(tmp_path: Path) -> None:
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_StyleGANVOnlyI3D()).save(str(path))
    videos = np.random.default_rng(0).integers(0, 256, size=(2, 16, 24, 20, 3), dtype=np.uint8)
    features = i3d_features(videos, load_i3d(path, call="stylegan-v"))
    assert features.shape == (2, 400)
    with pytest.raises(Exception, match="not called as StyleGAN-V"):  # torch.jit.Error
        i3d_features(videos, load_i3d(path))  # dysen's own call: resized to 224 by us, its resizing off
    with pytest.raises(Exception, match="TorchScript I3D"):
        I3DExtractor(torch.nn.Identity(), torchscript=False, call="stylegan-v")


def test_the_i3d_batchnorm_eps_is_a_setting(tmp_path: Path) -> None:
    from dysen.eval.features.i3d import InceptionI3d

    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(InceptionI3d(400).state_dict(), path)
    for eps in (1e-5, 1e-3):
        i3d = load_networks(["fvd"], {"i3d": str(path)}, i3d_bn_eps=eps).i3d
        norms = [m for m in i3d.modules() if isinstance(m, torch.nn.BatchNorm3d)]
        assert norms and {m.eps for m in norms} == {eps}


def test_runs_that_redraw_the_real_clips_give_mean_and_std(ucf101, tiny_model) -> None:  # noqa: F811
    settings = ZeroShotSettings("ucf101", ucf101, ("fvd", "kvd"), num=3, num_real=2, batch_size=2, runs=3)
    networks = MetricNetworks(i3d=_StandIn(400, 0))
    variant = Variant("tiny", model=tiny_model, sampling=VideoSampling(steps=1, eta=1.0))
    (row,), record = run_zero_shot(settings, [variant], networks, progress=False)
    runs = row["runs"]
    assert len(runs) == 3 and record["runs"] == 3 and record["redraw"] == "real"
    assert len({run["fvd"] for run in runs}) > 1  # each run drew its own 2 real clips
    assert row["metrics"]["fvd"] == pytest.approx(np.mean([run["fvd"] for run in runs]))
    assert row["metrics"]["kvd_std"] == pytest.approx(np.std([run["kvd"] for run in runs]))
    assert row["sampling"]["eta"] == 1.0 and row["seeds"] == [0, 2]  # one generated set, seeds 0..2


def test_runs_that_redraw_the_generated_clips_use_fresh_seeds(ucf101, tiny_model, tmp_path: Path) -> None:  # noqa: F811
    settings = ZeroShotSettings("ucf101", ucf101, ("is",), num=3, batch_size=3, runs=2, redraw="generated")
    networks = MetricNetworks(c3d=_StandIn(101, 1))
    variant = Variant("tiny", model=tiny_model, sampling=VideoSampling(steps=1))
    (row,), _ = run_zero_shot(settings, [variant], networks, save_dir=tmp_path, progress=False)
    first, second = (tmp_path / "tiny" / f"run-{r:02d}" / "samples.jsonl" for r in range(2))
    seeds = [[json.loads(line)["seed"] for line in path.read_text().splitlines()] for path in (first, second)]
    assert seeds == [[0, 1, 2], [3, 4, 5]]
    assert row["runs"][0]["is"] != row["runs"][1]["is"] and row["num_real"] is None


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_reference_fills_its_settings_refuses_others_and_is_recorded(
    ucf101, tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    base = ["eval", "--data", str(ucf101), "--model", f"tiny={tiny_model}", "--out", str(tmp_path / "r")]
    assert main([*base, "--reference", "lvdm-ucf101", "--num", "3"]) == 1
    assert "fixes these settings; drop or match --num 3 (it fixes 2048)" in capsys.readouterr().err
    assert main([*base, "--reference", "lvdm-ucf101", "--protocol", "msrvtt"]) == 1
    assert "is a ucf101 protocol, not msrvtt" in capsys.readouterr().err

    small = dataclasses.replace(REFERENCES["lvdm-ucf101"], num=3, num_real=4, runs=2)  # the protocol, at test size
    monkeypatch.setitem(cli_eval.REFERENCES, "lvdm-ucf101", small)
    i3d = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_ScriptedI3D()).save(str(i3d))
    argv = [*base, "--reference", "lvdm-ucf101", "--steps", "1", "--i3d", str(i3d), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    (row,) = report["rows"]
    assert report["protocol"] == "ucf101" and report["settings"]["reference"] == "lvdm-ucf101"
    assert report["settings"]["reference_settings"]["eta"] == 1.0 and report["settings"]["runs"] == 2
    assert report["settings"]["i3d"] == {"call": "tats", "bn_eps": 1e-5}
    assert set(row["metrics"]) == {"fvd", "fvd_std", "kvd", "kvd_std"} and row["sampling"]["eta"] == 1.0
    assert row["num_samples"] == 3 and row["num_real"] == 4
    assert "lvdm-ucf101: UCF-101 zero-shot" in (tmp_path / "r" / "report.md").read_text()
    capsys.readouterr()
