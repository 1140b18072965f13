"""``dysen train-adapter`` (issue 25) on a tiny backbone trained here (``train-backbone --config wan-test``): only the
adapter learns, a run stopped and resumed repeats the uninterrupted losses, the adapter is tied to its backbone,
and backbones it cannot train on are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backbone_fixtures import save_unet3d
from dysen.backbone_pipeline import BackbonePipeline
from dysen.backbones.adapter import AdapterError, load_adapter
from dysen.backbones.folder import load_backbone
from dysen.cli import main
from dysen.data.video import read_video
from test_dsg_boxes import real_data_with_tracks
from test_video import needs_real

DATA = ["--batch-size", "2", "--num-clips", "8", "--save-every", "2", "--ema-decay", "0"]
ARGS = ["--config", "adapter-test", "--lr", "1e-2", *DATA]


def _losses(run: Path) -> dict[int, float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {entry["step"]: entry["loss"] for entry in map(json.loads, lines)}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step wan-test backbone (8 frames of 16x16, a per-frame autoencoder): its model/ folder."""
    out = tmp_path_factory.mktemp("adapter-backbone") / "run"
    assert main(["train-backbone", "--out", str(out), "--config", "wan-test", "--steps", "2", *DATA]) == 0
    return out / "model"


@pytest.fixture(scope="module")
def run(backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 4-step adapter run on it."""
    out = tmp_path_factory.mktemp("adapter") / "base"
    assert main(["train-adapter", "--backbone", str(backbone), "--out", str(out), "--steps", "4", *ARGS]) == 0
    return out


def test_only_the_adapter_learns(backbone: Path, run: Path) -> None:
    before = load_file(backbone / "transformer" / "diffusion_pytorch_model.safetensors")
    frozen = load_backbone(backbone).transformer.state_dict()
    assert all(torch.equal(frozen[name], value) for name, value in before.items())  # the folder is untouched
    adapter = load_adapter(run / "model", load_backbone(backbone).transformer.config)
    assert any(float(layer.gate.detach()) != 0 for layer in adapter.layers)  # the gates opened: it learnt
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    weights = load_file(checkpoint / "weights.safetensors")
    assert weights and all(name.startswith("adapter.") for name in weights)  # nothing of the backbone is saved
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    counts = sum(len(group["params"]) for group in optimizer["param_groups"])
    trained = [name for name, p in adapter.named_parameters() if p.requires_grad]
    assert counts == len(trained)  # optimizer state for the adapter's trained parameters only
    frozen = {name for name, p in adapter.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith("rgtrm.pool.") for name in frozen)  # the pooling it does not read


def test_resume_repeats_the_uninterrupted_losses(backbone: Path, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    base = ["train-adapter", "--backbone", str(backbone), "--out", str(out), *ARGS]
    assert main([*base, "--steps", "2"]) == 0
    assert main([*base, "--steps", "4", "--resume", "latest"]) == 0
    assert _losses(out) == pytest.approx(_losses(run), rel=1e-5)


def test_the_adapter_refuses_another_backbone(backbone: Path, run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    changed = ["--batch-size", "2", "--num-clips", "4", "--steps", "1", "--seed", "3"]
    config = json.loads((backbone.parent / "backbone.json").read_text())["config"]
    config["transformer"]["ffn_dim"] = 24  # another architecture
    (tmp_path / "b.json").write_text(json.dumps(config))
    assert main(["train-backbone", "--out", str(other), "--config", str(tmp_path / "b.json"), *changed]) == 0
    with pytest.raises(AdapterError, match="trained for another backbone"):
        load_adapter(run / "model", load_backbone(other / "model").transformer.config)


def test_a_unet3d_adapter_trains_by_the_backbones_own_loss_and_generates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ModelScope-style UNet3D (ε-prediction under its DDIM scheduler's ᾱ): train, then generate with the adapter;
    dysen's latent cache is refused (the backbone has its own VAE)."""
    folder = save_unet3d(tmp_path / "unet3d", channels=(4, 8))
    out = tmp_path / "run"
    base = ["train-adapter", "--backbone", str(folder), *ARGS, "--config", str(_json(tmp_path, width=8, heads=2))]
    assert main([*base, "--out", str(out), "--steps", "2"]) == 0
    assert "of the frozen denoiser's" in capsys.readouterr().out
    losses = _losses(out)
    assert sorted(losses) == [1, 2] and all(0 < loss < 10 for loss in losses.values())
    adapter = load_adapter(out / "model", load_backbone(folder).unet.config)
    assert adapter.config.block_dims == (4, 8, 4, 4)
    weights = load_file(sorted((out / "checkpoints").iterdir())[-1] / "weights.safetensors")
    assert weights and all(name.startswith("adapter.") for name in weights)
    video = tmp_path / "v.gif"
    argv = ["generate", "a red circle moves right", "--backbone", str(folder), "--adapter", str(out / "model")]
    assert main([*argv, "--steps", "2", "--out", str(video)]) == 0
    assert read_video(video).shape[0] == 16
    cached = ["--out", str(tmp_path / "cached"), "--steps", "1", "--cache-latents", str(tmp_path / "cache")]
    assert main([*base, *cached]) == 1
    assert "needs a backbone with dysen's autoencoder" in capsys.readouterr().err


def _json(folder: Path, **changes: object) -> Path:
    """An adapter.json of the adapter-test preset with ``changes``."""
    import dataclasses

    from dysen.train.adapter_task import ADAPTER_PRESETS

    config = dataclasses.asdict(dataclasses.replace(ADAPTER_PRESETS["adapter-test"], **changes))
    path = folder / "adapter.json"
    path.write_text(json.dumps({"config": config}))
    return path


def test_generate_and_eval_with_the_adapter(
    backbone: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = "a red circle moves right then a blue square jumps"
    base = ["generate", prompt, "--backbone", str(backbone), "--steps", "2", "--seed", "1"]
    assert main([*base, "--out", str(tmp_path / "plain.gif")]) == 0
    assert main([*base, "--adapter", str(run / "model"), "--out", str(tmp_path / "adapted.gif")]) == 0
    assert (tmp_path / "adapted.dsg.json").is_file()  # the plan it followed
    assert read_video(tmp_path / "adapted.gif").shape == read_video(tmp_path / "plain.gif").shape
    assert (read_video(tmp_path / "adapted.gif") != read_video(tmp_path / "plain.gif")).any()

    pipe = BackbonePipeline.from_folder(backbone)
    plain = pipe(prompt, steps=2, seed=1, progress=False)
    pipe.load_adapter(run / "model")
    for layer in pipe.adapter.layers:  # type: ignore[union-attr]
        layer.gate.data.zero_()  # closed gates: the adapter adds nothing, the plan's text is not appended
    closed = pipe(prompt, steps=2, seed=1, progress=False)
    assert (closed.frames == plain.frames).all() and closed.text == prompt and closed.dsg is not None
    pipe.load_adapter(run / "model")  # gates open again
    from dysen.backbones.control import ControlSettings

    every = ControlSettings(1.0, 1.0, self_strength=2.0, energy=0.5)  # energy's probe runs the text pass alone
    both = pipe("a red circle moves right", steps=2, seed=1, progress=False, control=every, drop_cut_phrases=True)
    assert both.dsg is not None and pipe.adapter._grounding is None  # type: ignore[union-attr]

    out = tmp_path / "report"
    argv = ["eval", "--backbone", f"b={backbone}", "--adapter", str(run / "model")]  # (its 32 tokens hold no phrases)
    assert main([*argv, "--num", "1", "--steps", "2", "--no-progress", "--out", str(out)]) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [row["name"] for row in rows] == ["b", "b + adapter"]
    assert rows[0]["adapter"] is None and rows[1]["adapter"]["weights"] and rows[1]["planner"]
    capsys.readouterr()


def test_a_step_sends_gradients_to_the_adapter_only(backbone: Path) -> None:
    from dysen.backbones.adapter import DSGAdapter
    from dysen.data.shapes import ShapesConfig
    from dysen.data.shapes.dataset import ShapesDataset, collate
    from dysen.encoders.text import MiniLMTextEncoder
    from dysen.train.adapter_task import ADAPTER_PRESETS, AdapterTask

    wan = load_backbone(backbone)
    config = ADAPTER_PRESETS["adapter-test"]
    adapter = DSGAdapter(config.adapter_config(wan))
    for layer in adapter.layers:
        layer.gate.data.fill_(0.5)  # open, so the layers' own weights are on the gradient's path too
    video = wan.defaults
    task = AdapterTask(wan, adapter, MiniLMTextEncoder(), config, video.num_frames)
    shapes = ShapesConfig(size=video.height, num_frames=video.num_frames, fps=video.fps)
    batch = collate([ShapesDataset(2, "train", 0, shapes)[i] for i in range(2)])
    task.step(batch, torch.Generator().manual_seed(0)).loss.backward()
    frozen = [p for module in vars(wan).values() if isinstance(module, torch.nn.Module) for p in module.parameters()]
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    assert all(p.grad is not None for p in adapter.layers.parameters())
    assert adapter.rgtrm.label_proj.weight.grad is not None  # through the grounding tokens into the RGTrm


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(backbone: Path) -> None:
    """The backward pass reruns checkpointed blocks and their adapter hooks: the step's grounding must still be
    there, so the gradients are those of the plain step."""
    from dysen.backbones.adapter import DSGAdapter
    from dysen.data.shapes import ShapesConfig
    from dysen.data.shapes.dataset import ShapesDataset, collate
    from dysen.encoders.text import MiniLMTextEncoder
    from dysen.train.adapter_task import ADAPTER_PRESETS, AdapterTask

    config = ADAPTER_PRESETS["adapter-test"]
    grads = []
    for checkpointed in (False, True):
        wan = load_backbone(backbone)
        if checkpointed:
            wan.denoiser.enable_gradient_checkpointing()
        torch.manual_seed(0)
        adapter = DSGAdapter(config.adapter_config(wan))
        for layer in adapter.layers:
            layer.gate.data.fill_(0.5)
        video = wan.defaults
        task = AdapterTask(wan, adapter, MiniLMTextEncoder(), config, video.num_frames)
        shapes = ShapesConfig(size=video.height, num_frames=video.num_frames, fps=video.fps)
        batch = collate([ShapesDataset(2, "train", 0, shapes)[i] for i in range(2)])
        loss = task.step(batch, torch.Generator().manual_seed(0)).loss
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in adapter.parameters() if p.grad is not None]))
    (plain_loss, plain), (ckpt_loss, ckpt) = grads
    assert torch.equal(plain_loss, ckpt_loss) and len(plain) == len(ckpt) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, ckpt, strict=True))


def test_bf16_with_gradient_checkpointing_from_the_cli(backbone: Path, tmp_path: Path) -> None:
    """In a process of its own: Accelerate keeps one mixed-precision setting per process."""
    import subprocess
    import sys

    out = tmp_path / "bf16"
    argv = ["train-adapter", "--backbone", str(backbone), "--out", str(out), "--steps", "2", *ARGS]
    argv += ["--mixed-precision", "bf16", "--gradient-checkpointing"]
    done = subprocess.run([sys.executable, "-m", "dysen.cli", *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    losses = _losses(out)
    assert sorted(losses) == [1, 2] and all(0 < loss < 10 for loss in losses.values())
    assert (out / "model" / "model.safetensors").is_file()


@needs_real
def test_real_clips_with_tracker_boxes_train_and_unboxed_clips_train_as_the_null_dsg(
    backbone: Path, tmp_path: Path
) -> None:
    """The real-data path: gold DSGs boxed from a tracker's MOTChallenge file (dysen dsg boxes), a folder of real
    clips (one of them without boxes), one adapter step each."""
    data = real_data_with_tracks(tmp_path)
    boxed = tmp_path / "boxed.jsonl"
    argv = ["dsg", "boxes", "--dataset", "folder", "--root", str(data["root"]), "--gold", str(data["gold"])]
    assert main([*argv, "--tracks", str(data["tracks"]), "--classes", str(data["names"]), "--out", str(boxed)]) == 0
    out = tmp_path / "run"
    real = ["--data", "folder", "--root", str(data["root"]), "--gold", str(boxed), "--batch-size", "2"]
    base = ["train-adapter", "--backbone", str(backbone), "--out", str(out), "--config", "adapter-test"]
    assert main([*base, *real, "--steps", "2", "--ema-decay", "0", "--lr", "1e-2", "--save-every", "2"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["unboxed"] for m in metrics] == [1.0, 1.0]  # cup.mp4 has no boxes; walk.avi has
    assert all(0 < m["loss"] < 10 for m in metrics)


def test_an_adapter_trains_on_a_diffusers_wan_folder_at_a_chosen_clip_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real-format Wan (WanPipeline folder: AutoencoderKLWan, UMT5) whose video is 480×832×81: square clips of
    --frames x --size², the size kept for a resume; sizes its VAE and patches cannot take are refused."""
    from backbone_fixtures import save_wan

    folder = save_wan(tmp_path / "wan")
    out = tmp_path / "run"
    base = ["train-adapter", "--backbone", str(folder), "--out", str(out), *ARGS]
    assert main([*base, "--steps", "2", "--frames", "9", "--size", "32"]) == 0
    assert json.loads((out / "adapter.json").read_text())["clips"] == {"frames": 9, "size": 32}
    assert len(_losses(out)) == 2
    assert main([*base, "--steps", "3", "--frames", "9", "--size", "48", "--resume", "latest"]) == 1
    assert "other clips" in capsys.readouterr().err
    assert main([*base, "--steps", "3", "--frames", "9", "--size", "32", "--resume", "latest"]) == 0
    assert len(_losses(out)) == 3
    assert main(["train-adapter", "--backbone", str(folder), "--out", str(tmp_path / "b"), *ARGS, "--size", "40"]) == 1
    assert "multiple of 16" in capsys.readouterr().err
