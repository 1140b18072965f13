"""``dysen eval`` and ``run_eval_dysen_vdm.sh`` end to end on a tiny saved model; the zero-shot protocols on
miniature UCF-101 / MSR-VTT fixtures with stand-in or random-weight feature networks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dysen.cli import main
from dysen.config import TextEncoderSpec, VideoSpec
from dysen.data.datasets import load_records
from dysen.data.video import write_video
from dysen.eval.benchmark import VideoSampling
from dysen.eval.features.clip import ClipEmbedder
from dysen.eval.protocols import (
    ENV_OF,
    MetricNetworks,
    ProtocolError,
    ZeroShotSettings,
    load_networks,
    msrvtt_plan,
    run_zero_shot,
    ucf101_plan,
)
from dysen.eval.variants import Variant
from dysen.pipeline import DysenVDMPipeline
from dysen.planner.lexicon import COLOUR_WORDS
from pipeline_fixtures import TINY
from test_eval_metrics import tiny_clip  # noqa: F401  (the fixture: a random tiny CLIP folder)

SCRIPTS = Path(__file__).resolve().parents[1] / "shellscripts"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random tiny Dysen-VDM with the bundled MiniLM text encoder (so it loads from its folder), 16x16x16."""
    unet = dataclasses.replace(TINY.unet, text_dim=384)
    rgtrm = dataclasses.replace(TINY.rgtrm, label_dim=384)
    config = dataclasses.replace(
        TINY, unet=unet, rgtrm=rgtrm, text_encoder=TextEncoderSpec(), video=VideoSpec(16, 16, 16, 8)
    )
    folder = tmp_path_factory.mktemp("tiny-model") / "model"
    DysenVDMPipeline.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _no_metric_weights(monkeypatch):
    for variable in ENV_OF.values():
        monkeypatch.delenv(variable, raising=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dysen_eval_writes_the_report_with_weight_hashes_counts_and_resolution(tiny_model, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["eval", "--model", f"tiny={tiny_model}", "--real", "--num", "2", "--steps", "2", "--seed", "4"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "shapes" and report["wall_s"] > 0 and report["machine"]["cpus"] >= 1
    command = f"dysen eval --protocol shapes --out {out} --model tiny={tiny_model} --real --num 2 --steps 2 --seed 4"
    assert report["command"] == command + " --no-progress"  # what reproduces the run, defaults left out
    truth, model = report["rows"]
    assert truth["name"] == "ground truth (renders)" and truth["summary"]["overall"]["action_accuracy"] == 1.0
    assert model["name"] == "tiny" and model["num_samples"] == 2 and model["frames"] == 16
    assert model["resolution"] == [16, 16] and model["sampling"]["steps"] == 2 and model["seeds"] == [4, 5]
    files = sorted(tiny_model.rglob("*.safetensors"))
    assert len(files) == 3  # unet, rgtrm, vae
    assert model["weights"] == {str(f.relative_to(tiny_model)): _sha256(f) for f in files}
    markdown = (out / "report.md").read_text()
    assert all(digest in markdown for digest in model["weights"].values())
    captions = "of the captions of Dynamic Shapes test split from clip 0"
    assert f"2 videos of 16 frames at 16x16 {captions}; 2 sampling steps" in markdown
    assert all((out / name).is_file() for name in ("scores.png", "per_action.png", "per_num_events.png"))
    assert "tiny: action_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "ucf101"], "needs the dataset: --data ROOT"),
        (["--reference", "lvdm-ucf101", "--data", "no-such-folder"], "--data no-such-folder is not a folder"),
        (
            ["--protocol", "ucf101", "--data", "."],
            "IS needs the C3D weights: pass --c3d PATH or set DYSEN_C3D_WEIGHTS",
        ),
        (["--protocol", "msrvtt", "--data", ".", "--metrics", "clipsim"], "CLIPSIM needs the CLIP weights"),
        (["--protocol", "msrvtt", "--data", ".", "--metrics", "psnr"], "unknown metric"),
        (["--protocol", "msrvtt", "--data", ".", "--real"], "only for --protocol shapes"),
        (["--protocol", "msrvtt", "--data", ".", "--autoencoder-ceiling"], "only for --protocol shapes"),
        (["--ablation", "--videos", "."], "--ablation runs on --protocol shapes"),
        (["--text-only", "."], "--text-only belongs to --ablation"),
        (["--planner-model", "gpt-4o-mini"], "need --planner"),
        (["--model", "absent-model-folder"], "is not a folder"),
        (["--num", "0"], "--num must be >= 1"),
        (["--videos", "a=.", "--videos", "a=."], "two rows share a name"),
    ],
)
def test_dysen_eval_errors_are_one_clear_line(args, message, tmp_path, capsys):
    assert main(["eval", *args, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dysen: error:") and message in err and "Traceback" not in err


@pytest.mark.slow
def test_the_seed_script_evaluates_a_trained_model_folder(tiny_model, tmp_path):
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "DYSEN": f"{sys.executable} -m dysen.cli", "RESULTS": str(tmp_path),
        "EXPERIMENT_NAME": "shapes", "VDM_MODEL": str(tiny_model), "NUM_SAMPLES": "2", "DDIM_STEPS": "1",
        "EVAL_ARGS": "--no-progress",
    }  # fmt: skip
    script = str(SCRIPTS / "run_eval_dysen_vdm.sh")
    done = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "shapes_eval" / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["ground truth (renders)", "model"]
    assert report["rows"][1]["num_samples"] == 2 and report["rows"][1]["sampling"]["steps"] == 1
    missing = subprocess.run(
        ["bash", script], env={**env, "VDM_MODEL": str(tmp_path / "absent")}, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "not a trained model folder" in missing.stderr


# -- zero-shot protocols ----------------------------------------------------------------------------------------


class _StandIn(torch.nn.Module):
    """A random feature network: global average pool of [B, 3, (T,) H, W] then a linear map to ``dim``."""

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.proj = torch.nn.Linear(3, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(2).mean(-1))  # [B, dim]


class _ScriptedI3D(torch.nn.Module):
    """StyleGAN-V's TorchScript signature, tiny (as tests/test_eval_metrics.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        return self.proj(x.mean(dim=(2, 3, 4)))  # [B, 400]


def _video(seed: int, frames: int = 16, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ucf101(tmp_path_factory) -> Path:
    """UCF-101 in miniature: 3 classes, 2 videos each (train list) and 1 each (test list)."""
    root = tmp_path_factory.mktemp("ucf101")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    classes = ["ApplyEyeMakeup", "BoxingSpeedBag", "YoYo"]
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    train, test = [], []
    for k, name in enumerate(classes):
        for g in range(3):
            relative = f"{name}/v_{name}_g0{g}_c01.mp4"
            (root / "UCF-101" / name).mkdir(parents=True, exist_ok=True)
            write_video(root / "UCF-101" / relative, _video(10 * k + g))
            (train if g < 2 else test).append(f"{relative} {k + 1}\n" if g < 2 else f"{relative}\n")
    (lists / "trainlist01.txt").write_text("".join(train))
    (lists / "testlist01.txt").write_text("".join(test))
    return root


def test_ucf101_prompts_spread_over_the_classes_with_one_seed_each():
    samples = ucf101_plan(["ApplyEyeMakeup", "BoxingSpeedBag", "YoYo"], num=7, seed=10, template="a person doing {}")
    assert [s.prompt for s in samples].count("a person doing apply eye makeup") == 3
    assert [s.prompt for s in samples].count("a person doing yo yo") == 2
    assert [s.seed for s in samples] == list(range(10, 17)) and len({s.id for s in samples}) == 7
    with pytest.raises(ProtocolError, match="must contain"):
        ucf101_plan(["YoYo"], num=1, template="no slot")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_dysen_eval_ucf101_computes_fvd_with_a_torchscript_i3d(ucf101, tiny_model, tmp_path):
    i3d = tmp_path / "i3d_torchscript.pt"
    torch.manual_seed(0)
    torch.jit.script(_ScriptedI3D()).save(str(i3d))
    out = tmp_path / "ucf"
    argv = ["eval", "--protocol", "ucf101", "--data", str(ucf101), "--model", f"tiny={tiny_model}", "--num", "3"]
    argv += ["--steps", "1", "--metrics", "fvd", "--i3d", str(i3d), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    (row,) = report["rows"]
    assert row["num_samples"] == 3 and row["num_real"] == 6 and row["frames"] == 16 and row["resolution"] == [16, 16]
    assert row["metrics"]["fvd"] > 0 and row["seeds"] == [0, 2]
    assert report["settings"]["extractors"] == {"i3d": _sha256(i3d)}
    markdown = (out / "report.md").read_text()
    assert _sha256(i3d) in markdown and "UCF-101 zero-shot: 3 videos" in markdown
    assert (out / "metrics.png").is_file()


def test_ucf101_is_and_fvd_through_the_protocol_runner(ucf101, tiny_model):
    settings = ZeroShotSettings("ucf101", ucf101, num=3, num_real=4, batch_size=2)
    networks = MetricNetworks(i3d=_StandIn(400, 0), c3d=_StandIn(101, 1))
    variant = Variant("tiny", model=tiny_model, sampling=VideoSampling(steps=1))
    (row,), record = run_zero_shot(settings, [variant], networks, progress=False)
    assert set(row["metrics"]) == {"is", "is_std", "fvd"} and 1.0 <= row["metrics"]["is"] <= 3.0
    assert row["num_real"] == 4 and record["metrics"] == ["is", "fvd"]


@pytest.fixture(scope="module")
def msrvtt(tmp_path_factory) -> Path:
    """MSR-VTT in miniature: one training and two test videos, three captions each."""
    root = tmp_path_factory.mktemp("msrvtt")
    ids = ["video0", "video7010", "video7011"]
    sentences = [
        {"video_id": v, "sen_id": 3 * i + j, "caption": f"{v} caption {j}"}
        for i, v in enumerate(ids)
        for j in range(3)
    ]
    (root / "MSRVTT_data.json").write_text(
        json.dumps({"videos": [{"video_id": v} for v in ids], "sentences": sentences})
    )
    (root / "videos").mkdir()
    for i, v in enumerate(ids):
        write_video(root / "videos" / f"{v}.mp4", _video(i))
    return root


def test_msrvtt_takes_one_seeded_caption_per_test_video(msrvtt):
    records = load_records("msrvtt", msrvtt, "test")
    samples = msrvtt_plan(records, seed=1)
    assert [s.id for s in samples] == ["video7010", "video7011"]
    assert all(s.prompt.startswith(s.id + " caption") for s in samples) and samples == msrvtt_plan(records, seed=1)


def test_msrvtt_clipsim_fid_and_fvd_through_the_protocol_runner(msrvtt, tiny_model, tiny_clip, tmp_path):  # noqa: F811
    settings = ZeroShotSettings("msrvtt", msrvtt, batch_size=2)
    networks = MetricNetworks(i3d=_StandIn(400, 0), clip=ClipEmbedder(tiny_clip), inception=_StandIn(8, 2))
    variant = Variant("tiny", model=tiny_model, sampling=VideoSampling(steps=1))
    (row,), record = run_zero_shot(settings, [variant], networks, save_dir=tmp_path, progress=False)
    assert row["num_samples"] == 2 and row["num_real"] == 2 and set(row["metrics"]) == {"clipsim", "fid", "fvd"}
    assert -1.0 <= row["metrics"]["clipsim"] <= 1.0 and row["metrics"]["fid"] >= 0 and row["metrics"]["fvd"] >= 0
    assert "MSR-VTT zero-shot" in record["description"]
    saved = tmp_path / "tiny"
    assert (saved / "samples.jsonl").is_file() and len(list(saved.glob("*.mp4"))) == 2
    rescored = Variant("saved", source="folder", folder=saved)
    (again,), _ = run_zero_shot(settings, [rescored], networks, progress=False)
    assert again["num_samples"] == 2 and again["metrics"]["clipsim"] == pytest.approx(
        row["metrics"]["clipsim"], abs=0.05
    )
    with pytest.raises(ProtocolError, match="is not a folder"):
        run_zero_shot(dataclasses.replace(settings, data=tmp_path / "absent"), [variant], networks, progress=False)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_load_networks_reads_files_and_records_their_hashes(tmp_path):
    i3d = tmp_path / "i3d.pt"
    torch.jit.script(_ScriptedI3D()).save(str(i3d))
    networks = load_networks(["fvd"], {"i3d": str(i3d)})
    assert networks.i3d is not None and networks.hashes == {"i3d": _sha256(i3d)}
    with pytest.raises(ProtocolError, match="FID needs the INCEPTION weights"):
        load_networks(["fid"], {})


@pytest.mark.slow
def test_the_ablation_table_runs_offline_with_the_models_rules_planner(tiny_model, tmp_path):
    out = tmp_path / "ablation"
    argv = ["eval", "--ablation", "--model", str(tiny_model), "--num", "2", "--steps", "1", "--save-videos"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    rows = {row["name"]: row for row in json.loads((out / "report.json").read_text())["rows"]}
    full, raw = rows["Dysen-VDM (full)"], rows["no imagination"]
    assert full["num_samples"] == raw["num_samples"] == 2 and not raw["planner"]["imagination"]
    assert "--text-only" in rows["text-only backbone"]["skipped"]
    assert "plans without any" in rows["random demonstrations"]["skipped"]  # the model's rules planner has no demos
    plans = [json.loads(p.read_text()) for p in sorted((out / "videos").glob("*/*.dsg.json"))]
    assert len(plans) == 4  # the full model's and the no-imagination row's, 2 each
    colours = [[a for g in p["graphs"] for a in g["attributes"] if a["attribute"] in COLOUR_WORDS] for p in plans]
    assert all(colours[:2]) and not any(colours[2:])  # Step II's raw graphs name no colours
    markdown = (out / "report.md").read_text()
    assert "imagination off" in markdown and "not run: random demonstrations need" in markdown

    out = tmp_path / "with-demos"  # --demos without --planner changes the model's own planner
    argv = ["eval", "--ablation", "--model", str(tiny_model), "--num", "1", "--steps", "1", "--demos", "shapes"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    rows = {row["name"]: row for row in json.loads((out / "report.json").read_text())["rows"]}
    assert (
        rows["random demonstrations"]["num_samples"] == 1
        and rows["random demonstrations"]["planner"]["demos"] == "random"
    )
    assert rows["Dysen-VDM (full)"]["planner"]["source"] == "shapes"
    assert "changed: demos shapes" in rows["Dysen-VDM (full)"]["planner"]["backend"]


def test_autoencoder_ceiling_row_uses_the_models_autoencoder(tiny_model, tmp_path):
    out = tmp_path / "report"
    argv = ["eval", "--model", f"tiny={tiny_model}", "--autoencoder-ceiling", "--num", "2", "--steps", "2"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    ceiling, model = json.loads((out / "report.json").read_text())["rows"]
    assert ceiling["name"] == "ground truth through the autoencoder" and ceiling["source"] == "reconstructions"
    assert ceiling["num_samples"] == 2 and ceiling["weights"] == model["weights"]
    assert ceiling["resolution"] == [16, 16] and "encoded and decoded" in ceiling["renderer"]


def test_eval_scores_validation_captions_of_a_chosen_world(tmp_path) -> None:
    """--split/--first/--world-* pick the captions (releases are chosen on val); the renders score 1.0 there too."""
    import json

    from dysen.cli import main

    args = ["eval", "--real", "--num", "2", "--split", "val", "--first", "5", "--no-progress"]
    world = ["--world-colours", "red,orange,yellow,green,blue,purple,pink,cyan", "--world-start-angle", "random"]
    assert main([*args, *world, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    row = report["rows"][0]
    assert [c["id"] for c in row["clips"]] == ["val-0-000005", "val-0-000006"]
    assert "val split from clip 5" in row["renderer"] and "start_angle random" in row["renderer"]
    assert "val split from clip 5" in report["settings"]["captions"]
    assert "--world-colours red,orange,yellow,green,blue,purple,pink,cyan" in report["command"]
    assert row["summary"]["overall"]["action_accuracy"] == 1.0
