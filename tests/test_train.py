"""dysen.train and ``dysen train-vae/train-vdm/finetune`` on tiny models (8×16×16 clips of Dynamic Shapes).

The loop's promises, checked on real runs: training lowers the loss; a run killed by SIGKILL and resumed
repeats the losses of an uninterrupted one; non-finite losses are skipped, counted, and stop the run with
a checkpoint; 2 DDP processes (gloo, torchrun) repeat 1 process with the same global batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from dysen.cli import main
from dysen.config import save_config
from dysen.data.shapes import ShapesConfig
from dysen.data.shapes.dataset import ShapesDataset, collate
from dysen.models.graph_batch import GraphBatch
from dysen.models.rgtrm import RGTrm
from dysen.models.unet3d import UNet3D
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.checkpoint import latest_checkpoint, load_checkpoint
from dysen.train.loop import NonFiniteLossError, StepOutput, TrainConfig, train
from dysen.train.stages import GraphCollate, StageError, VAETask, VDMTask
from pipeline_fixtures import TINY, HashTextEncoder

SHAPES = ShapesConfig(size=16, num_frames=8)
VDM_ARGS = ["--batch-size", "2", "--num-clips", "16", "--lr", "1e-3", "--save-every", "2", "--seed", "3"]
STEPS = 6


def _tiny_minilm_config(folder: Path) -> Path:
    """TINY with the real MiniLM text encoder (384-d), as the CLI builds it."""
    import dataclasses

    config = dataclasses.replace(
        TINY,
        unet=dataclasses.replace(TINY.unet, text_dim=384),
        rgtrm=dataclasses.replace(TINY.rgtrm, label_dim=384),
        text_encoder=dataclasses.replace(TINY.text_encoder, dim=384),
    )
    return save_config(config, folder / "tiny.yaml")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny config, a trained tiny VAE (``vae/``) and an uninterrupted VDM run (``base/``, 1 process, accum 2)."""
    root = tmp_path_factory.mktemp("runs")
    config = _tiny_minilm_config(root)
    assert main(["train-vae", "--config", str(config), "--out", str(root / "vae"), "--steps", "4", *VDM_ARGS]) == 0
    _train_vdm(root, "base", "--steps", str(STEPS), "--grad-accum", "2")
    return root


def _start(
    root: Path, out: str, *extra: str, launcher: list[str] | None = None, own_group: bool = False
) -> subprocess.Popen:
    """``dysen train-vdm`` of the tiny config into ``root/out``, in a subprocess (1 thread per process);
    ``own_group``: in a process group of its own, as a batch job is."""
    args = ["train-vdm", "--config", str(root / "tiny.yaml"), "--vae", str(root / "vae"), "--out", str(root / out)]
    cmd = [*(launcher or [sys.executable, "-m", "dysen.cli"]), *args, *VDM_ARGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    group = 0 if own_group else None  # 0: a new group led by the child
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    return subprocess.Popen(cmd, env=env, process_group=group, **output)


def _train_vdm(root: Path, out: str, *extra: str, launcher: list[str] | None = None) -> None:
    process = _start(root, out, *extra, launcher=launcher)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output


def _losses(run: Path) -> dict[int, float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {entry["step"]: entry["loss"] for entry in map(json.loads, lines)}


def _fixed_batch() -> dict[str, Any]:
    return collate([ShapesDataset(4, config=SHAPES)[i] for i in range(4)])


def _loss(task: Any, batch: dict[str, Any]) -> float:
    with torch.no_grad():
        return float(task.step(batch, torch.Generator().manual_seed(0)).loss)


@pytest.mark.parametrize("stage", ["vae", "vdm"])
def test_training_lowers_the_loss_on_a_fixed_batch(stage: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = KLVideoAutoencoder(TINY.vae.kl3d)
    if stage == "vae":
        task: Any = VAETask(vae)
    else:
        task = VDMTask(UNet3D(TINY.unet), RGTrm(TINY.rgtrm), vae, HashTextEncoder(), TINY)
    batch = _fixed_batch()
    before = _loss(task, batch)
    config = TrainConfig(steps=15, batch_size=4, lr=3e-3, ema_decay=0.0, save_every=100)
    train(task, ShapesDataset(4, config=SHAPES), collate, config, tmp_path / "run")
    after = _loss(task, batch)
    print(f"{stage}: fixed-batch loss {before:.4f} -> {after:.4f} in 15 steps")
    assert after < 0.9 * before
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= line["data_s"] <= line["step_s"] for line in lines), "each step's time and its data wait"
    assert all(line["processes"] == 1 for line in lines), "the world size"


def test_graph_collate_gives_the_step_the_graphs_it_would_build_itself() -> None:
    torch.manual_seed(0)
    vae = KLVideoAutoencoder(TINY.vae.kl3d)
    task = VDMTask(UNet3D(TINY.unet), RGTrm(TINY.rgtrm), vae, HashTextEncoder(), TINY)
    items = [ShapesDataset(4, config=SHAPES)[i] for i in range(4)]
    frames = vae.latent_shape(SHAPES.num_frames, SHAPES.size, SHAPES.size)[1]
    with_graphs = GraphCollate(collate, frames)(items)
    expected = GraphBatch.from_dsgs([item["dsg"] for item in items], frames)
    for field in ("node_label", "edge_index", "frame_to_sg"):
        assert torch.equal(getattr(with_graphs["graphs"], field), getattr(expected, field))
    assert "dsg" not in with_graphs, "DSG objects are slow to send from a worker"
    assert _loss(task, with_graphs) == _loss(task, collate(items))
    missing = GraphCollate(collate, frames)([items[1], {**items[0], "dsg": None}])
    assert "graphs" not in missing
    with pytest.raises(StageError, match=r"clips \[1\] of a batch have no gold DSG"):
        task.step(missing, torch.Generator().manual_seed(0))


class NaNAt:
    """A task that returns a NaN loss at the given (1-based) steps, else the wrapped task's loss."""

    def __init__(self, task: Any, steps: set[int]) -> None:
        self.task, self.steps, self.calls = task, steps, 0

    def modules(self) -> dict[str, torch.nn.Module]:
        return self.task.modules()

    def to(self, device: torch.device) -> NaNAt:
        self.task.to(device)
        return self

    def step(self, batch: Any, generator: torch.Generator) -> StepOutput:
        self.calls += 1
        out = self.task.step(batch, generator)
        return StepOutput(out.loss * math.nan, out.logs) if self.calls in self.steps else out


def test_non_finite_losses_are_skipped_counted_and_stop_the_run_with_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = KLVideoAutoencoder(TINY.vae.kl3d)
    config = TrainConfig(steps=20, batch_size=2, lr=1e-3, ema_decay=0.0, save_every=100, max_nonfinite=3)
    dataset = ShapesDataset(8, config=SHAPES)
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row \(up to step 7\)"):
        train(NaNAt(VAETask(vae), {2, 5, 6, 7}), dataset, collate, config, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [math.isfinite(float(x["loss"])) for x in lines] == [True, False, True, True, False, False, False]
    assert [x["nonfinite_total"] for x in lines] == [0, 1, 1, 1, 2, 3, 4]
    checkpoint = load_checkpoint(latest_checkpoint(tmp_path))  # type: ignore[arg-type]
    assert checkpoint.step == 7 and checkpoint.counters == {"nonfinite_total": 4, "nonfinite_run": 3}
    assert all(torch.isfinite(w).all() for w in checkpoint.weights.values())
    weights_after_4 = {f"vae.{k}": v for k, v in vae.state_dict().items()}  # steps 5-7 changed nothing
    assert all(torch.equal(weights_after_4[k], v) for k, v in checkpoint.weights.items())


def _start_until_checkpoint(runs: Path, out: str, *extra: str, own_group: bool = False) -> subprocess.Popen:
    """A long run in ``runs/out``, returned once it has written its step-2 checkpoint."""
    process = _start(runs, out, "--steps", "1000", "--grad-accum", "2", *extra, own_group=own_group)
    first = runs / out / "checkpoints" / "step-00000002"
    deadline = time.monotonic() + 90
    while not first.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


@pytest.mark.slow
def test_sigkill_then_resume_repeats_the_uninterrupted_losses(runs: Path) -> None:
    killed = _start_until_checkpoint(runs, "killed")
    killed.send_signal(signal.SIGKILL)
    output, _ = killed.communicate()
    assert killed.returncode == -signal.SIGKILL, output
    resumed_from = load_checkpoint(latest_checkpoint(runs / "killed")).step  # type: ignore[arg-type]
    assert 2 <= resumed_from < STEPS, "the run was killed too late to test a resume"
    _train_vdm(runs, "killed", "--steps", str(STEPS), "--grad-accum", "2", "--resume", "latest")
    base, resumed = _losses(runs / "base"), _losses(runs / "killed")
    print(f"killed after step {resumed_from}; uninterrupted {base}; resumed {resumed}")
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert resumed == pytest.approx(base, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resume_repeats_the_losses(runs: Path) -> None:
    stopped = _start_until_checkpoint(runs, "stopped")
    stopped.send_signal(signal.SIGTERM)
    output, _ = stopped.communicate(timeout=60)
    assert stopped.returncode == 128 + signal.SIGTERM, output  # 143: stopped by a signal, not done (issue 22)
    assert "SIGTERM: stopping after this step" in output and "continue with --resume latest" in output
    step = load_checkpoint(latest_checkpoint(runs / "stopped")).step  # type: ignore[arg-type]
    assert f"trained the VDM for {step} steps" in output
    assert (runs / "stopped" / "model" / "model_index.json").is_file(), "the EMA weights so far are exported"
    assert sorted(_losses(runs / "stopped")) == list(range(1, step + 1)), "the step in progress was finished and saved"
    assert 2 <= step < STEPS, "the run was stopped too late to test a resume"
    _train_vdm(runs, "stopped", "--steps", str(STEPS), "--grad-accum", "2", "--resume", "latest")
    assert _losses(runs / "stopped") == pytest.approx(_losses(runs / "base"), rel=1e-5, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_job_spares_the_loader_workers(runs: Path, number: int) -> None:
    """A scheduler's time limit (SLURM signals every process of the job) or Ctrl-C in a terminal (the whole
    foreground group) also reaches the data-loader workers: they must live until the main process has
    finished its step and checkpointed."""
    stopped = _start_until_checkpoint(runs, f"group-{number}", "--workers", "1", own_group=True)
    os.killpg(stopped.pid, number)
    output, _ = stopped.communicate(timeout=60)
    assert stopped.returncode == 128 + number, output  # 143 / 130: stopped by a signal, not done (issue 22)
    assert "continue with --resume latest" in output and "killed by signal" not in output


@pytest.mark.slow
def test_two_ddp_processes_repeat_one_process_with_the_same_global_batch(runs: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    _train_vdm(runs, "ddp", "--steps", str(STEPS), launcher=[*launcher, "-m", "dysen.cli"])
    base, ddp = _losses(runs / "base"), _losses(runs / "ddp")
    print(f"1 process x accum 2: {base}\n2 processes x accum 1: {ddp}")
    assert ddp == pytest.approx(base, rel=1e-5, abs=1e-6)
    lines = [json.loads(line) for line in (runs / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert {line["processes"] for line in lines} == {2}, "metrics record the world size"


@pytest.mark.slow
def test_train_vdm_writes_a_pipeline_with_the_ema_weights(runs: Path) -> None:
    from dysen.pipeline import DysenVDMPipeline

    class Wide(HashTextEncoder):
        dim = 384

    pipe = DysenVDMPipeline.from_pretrained(runs / "base" / "model", text_encoder=Wide())
    ema = load_checkpoint(runs / "base" / "checkpoints" / f"step-{STEPS:08d}").ema
    assert ema is not None
    for key, value in pipe.unet.state_dict().items():
        if f"unet.{key}" in ema:
            assert torch.equal(value, ema[f"unet.{key}"]), key
    video = pipe("a red circle moves right", steps=2, progress=False)
    assert video.frames.shape == (8, 16, 16, 3)


@pytest.mark.slow
def test_the_seed_shell_scripts_run_the_whole_chain_at_tiny_size(runs: Path, tmp_path: Path) -> None:
    scripts = Path(__file__).resolve().parents[1] / "shellscripts"
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "DYSEN": f"{sys.executable} -m dysen.cli", "RESULTS": str(tmp_path),
        "EXPERIMENT_NAME": "shapes", "CONFIG": str(runs / "tiny.yaml"), "STEPS": "2", "BATCH_SIZE": "2",
        "NUM_CLIPS": "4", "DYSEN_PRESET": "tiny", "DYSEN_EMBEDDER": "hashing", "DDIM_STEPS": "2",
    }  # fmt: skip

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(scripts / name)], env=env, capture_output=True, text=True, timeout=180)

    for name in ("train_vdm_autoencoder.sh", "run_train_vdm.sh", "run_train_dysen_vdm.sh"):
        done = run(name)
        assert done.returncode == 0, f"{name}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert (tmp_path / "shapes_dysen" / "final").is_dir()
    assert (tmp_path / "shapes_finetune" / "model" / "model_index.json").is_file()
    assert (tmp_path / "shapes_finetune" / "model" / "policy" / "policy.safetensors").is_file()  # attached
    sampled = run("run_sample_vdm_text2video.sh")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    assert (tmp_path / "samples" / "sample.mp4").stat().st_size > 0
    env["NUM_SAMPLES"] = "2"
    evaluated = run("run_eval_dysen_vdm.sh")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert (tmp_path / "shapes_eval" / "report.json").is_file()


def test_ema_warms_up_like_litema_and_resumes_its_count() -> None:
    from dysen.train.ema import EMA

    layer = torch.nn.Linear(2, 2)
    ema = EMA({"m": layer}, decay=0.999)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update()  # n = 1: d = 2/11, so the shadow moves 9/11 of the way at once (not 0.1 %)
    assert ema.current_decay() == pytest.approx(2 / 11)
    expected = layer.weight + 0  # the shadow started at the initial weights w0
    assert not torch.equal(ema.shadow["m.weight"], expected)
    for _ in range(9000):
        ema.update()
    assert ema.current_decay() == 0.999 and torch.allclose(ema.shadow["m.weight"], expected, atol=1e-6)
    again = EMA({"m": layer}, decay=0.999)
    again.load_state_dict(ema.state_dict())
    assert again.num_updates == 9001 and torch.equal(again.shadow["m.weight"], ema.shadow["m.weight"])


def test_resuming_a_finished_run_runs_no_step_and_says_so(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(runs / "vae", tmp_path / "vae")
    before = (tmp_path / "vae" / "model" / "model.safetensors").read_bytes()
    argv = ["train-vae", "--config", str(runs / "tiny.yaml"), "--out", str(tmp_path / "vae"), "--steps", "4"]
    assert main([*argv, *VDM_ARGS, "--resume", "latest"]) == 0
    printed = capsys.readouterr().out
    assert "trained the autoencoder for 4 steps (no step left to run: already done)" in printed
    assert (tmp_path / "vae" / "model" / "model.safetensors").read_bytes() == before
