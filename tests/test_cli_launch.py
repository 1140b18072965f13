"""``dysen launch``: the torchrun and accelerate lines it prints for one machine (GPUs or CPU) and for several, its
refusals, and a real run: 2 CPU processes through it (and through its accelerate line) train as 1 process with twice
the accumulation, where ``accelerate launch --cpu --num_processes 2`` trains in one process."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import dysen
from dysen.cli import COMMANDS, build_parser, launch, main
from dysen.config import save_config
from pipeline_fixtures import TINY

PYTHON = sys.executable


def _printed(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["launch", "--print", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_cpu_processes_get_torchrun_and_accelerate_multi_gpu_with_the_cores_shared(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch, "_cores", lambda: 8)
    lines = _printed(capsys, "--processes", "2", "--cpu", "--", "train-vdm", "--vae", "runs/ae", "--out", "runs/v d")
    assert lines == [
        "# 2 processes on the CPU (4 threads each): world size 2",
        f"OMP_NUM_THREADS=4 {PYTHON} -m torch.distributed.run --nproc_per_node 2 --standalone -m dysen.cli "
        "train-vdm --vae runs/ae --out 'runs/v d' --cpu",
        "# the same with Accelerate (--multi_gpu selects its torchrun launcher, on the CPU too; --cpu would start "
        "one process):",
        "accelerate launch --multi_gpu --num_machines 1 --num_processes 2 --main_process_port 0 "
        "--num_cpu_threads_per_process 4 -m dysen.cli train-vdm --vae runs/ae --out 'runs/v d' --cpu",
    ]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the caller's setting wins; --cpu already in the command is kept once
    lines = _printed(capsys, "--processes", "2", "--cpu", "--main-port", "1234", "train-vae", "--out", "r", "--cpu")
    assert lines[1] == f"OMP_NUM_THREADS=3 {PYTHON} -m torch.distributed.run --nproc_per_node 2 --master_port 1234 " \
        "-m dysen.cli train-vae --out r --cpu"  # fmt: skip
    assert "--main_process_port 1234 --num_cpu_threads_per_process 3 -m" in lines[3]


def test_gpus_get_one_process_each_by_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "_gpu_count", lambda: 4)
    lines = _printed(capsys, "--", "finetune", "--init", "m", "--out", "r")
    assert lines[0] == "# 4 processes on GPUs: world size 4"
    assert lines[1] == f"{PYTHON} -m torch.distributed.run --nproc_per_node 4 --standalone -m dysen.cli finetune " \
        "--init m --out r"  # fmt: skip
    assert lines[3] == "accelerate launch --multi_gpu --num_machines 1 --num_processes 4 --main_process_port 0 " \
        "-m dysen.cli finetune --init m --out r"  # fmt: skip
    lines = _printed(capsys, "--processes", "1", "--", "train-vae", "--out", "r")
    assert lines[2] == "# the same with Accelerate:" and lines[3].startswith("accelerate launch --num_machines 1 ")


def test_several_machines_share_the_main_address_and_count_every_process_for_accelerate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "_gpu_count", lambda: 8)
    flags = ["--machines", "2", "--machine-rank", "1", "--main-address", "10.0.0.1"]
    lines = _printed(capsys, *flags, "--", "train-vdm", "--vae", "a", "--out", "b")
    assert lines[0] == "# 8 processes on GPUs on each of 2 machines (this one: rank 1): world size 16"
    assert lines[1] == f"{PYTHON} -m torch.distributed.run --nproc_per_node 8 --nnodes 2 --node_rank 1 " \
        "--master_addr 10.0.0.1 --master_port 29500 -m dysen.cli train-vdm --vae a --out b"  # fmt: skip
    assert lines[3] == "accelerate launch --multi_gpu --num_machines 2 --machine_rank 1 --main_process_ip 10.0.0.1 " \
        "--num_processes 16 --main_process_port 29500 -m dysen.cli train-vdm --vae a --out b"  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "gpus", "message"),
    [
        (["--processes", "2", "--", "generate", "a red circle"], 0, "runs a training command .*not 'generate'"),
        (["--processes", "2"], 0, "none was given"),
        (["--", "train-vae", "--out", "r"], 0, "no GPU to count .*--processes N"),
        (["--cpu", "train-vae", "--out", "r"], 2, "no GPU to count .*--processes N"),
        (["--processes", "3", "train-vae", "--out", "r"], 2, "--processes 3 but 2 GPU"),
        (["--processes", "2", "--machines", "2", "train-vae", "--out", "r"], 0, "needs --machine-rank"),
        (["--processes", "2", "--machines", "2", "--machine-rank", "2", "--main-address", "h", "train-vae",
          "--out", "r"], 0, "--machine-rank 2 is not one of 0 … 1"),  # fmt: skip
        (["--processes", "2", "--machine-rank", "0", "train-vae", "--out", "r"], 0, "add --machines M"),
    ],
)
def test_launches_that_cannot_start_are_refused_with_what_to_do(
    argv: list[str], gpus: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "_gpu_count", lambda: gpus)
    with pytest.raises(launch.LaunchError, match=message):
        launch.plan_launch(build_parser().parse_args(["launch", *argv]))


def test_a_bad_training_flag_is_a_usage_error_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["launch", "--processes", "2", "--cpu", "--print", "--", "train-vae", "--steps", "2"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "dysen train-vae: error: the following arguments are required: --out" in captured.err
    assert captured.out == "", "no launch line for a command that cannot run"


def test_the_training_commands_are_those_of_the_one_loop() -> None:
    trained = {name for name, command in COMMANDS.items() if command.run.__module__ == "dysen.cli.train"}
    assert set(launch.TRAINING_COMMANDS) == trained


def _environment(tmp_path: Path) -> dict[str, str]:
    """The environment of a child: it imports the dysen under test, 1 thread, no user's Accelerate config."""
    src = str(Path(dysen.__file__).resolve().parents[1])
    path = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf")}


def test_the_seed_scripts_train_through_dysen_launch_when_launch_is_set(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "shellscripts" / "train_vdm_autoencoder.sh"
    env = {**_environment(tmp_path), "DYSEN": f"{PYTHON} -m dysen.cli", "RESULTS": str(tmp_path), "STEPS": "2",
           "LAUNCH": "--processes 2 --cpu --print"}  # fmt: skip
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "shapes_ae"
    expected = f"-m torch.distributed.run --nproc_per_node 2 --standalone -m dysen.cli train-vae " \
        f"--config shapes-tiny --out {out} --data shapes --steps 2 --cpu"  # fmt: skip
    assert expected in done.stdout.splitlines()[1]
    assert not out.exists(), "--print starts nothing"


@pytest.mark.slow
def test_two_cpu_processes_really_train_through_the_launch_and_its_accelerate_line(tmp_path: Path) -> None:
    """Both ranks take part: the reduced loss of 2 processes × 1 clip equals 1 process × 2 accumulated clips only
    when rank 1's clip is in it, and the metrics record the world size; the broken line trains alone."""
    config = save_config(TINY, tmp_path / "tiny.yaml")
    flags = ["--config", str(config), "--steps", "2", "--batch-size", "1", "--num-clips", "4", "--seed", "3",
             "--lr", "1e-3", "--ema-decay", "0", "--save-every", "100"]  # fmt: skip
    env = _environment(tmp_path)

    def run(argv: list[str]) -> str:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-8000:]
        return done.stdout

    dysen_cli, accelerate_cli = [PYTHON, "-m", "dysen.cli"], [PYTHON, "-m", "accelerate.commands.accelerate_cli"]
    run([*dysen_cli, "train-vae", *flags, "--grad-accum", "2", "--out", str(tmp_path / "one")])
    launched = ["launch", "--processes", "2", "--cpu", "--", "train-vae", *flags, "--out", str(tmp_path / "launched")]
    printed = run([*dysen_cli, *launched])
    assert printed.count("trained the autoencoder for 2 steps") == 1, "rank 0 alone writes the model"
    launched[-1] = str(tmp_path / "accelerated")
    accelerate = shlex.split(run([*dysen_cli, "launch", "--print", *launched[1:]]).splitlines()[3])
    assert accelerate[:3] == ["accelerate", "launch", "--multi_gpu"]
    run([*accelerate_cli, *accelerate[1:]])
    broken = ["launch", "--cpu", "--num_processes", "2", "-m", "dysen.cli", "train-vae", *flags, "--cpu"]
    run([*accelerate_cli, *broken, "--out", str(tmp_path / "broken")])

    def metrics(out: str) -> tuple[list[int], list[float]]:
        entries = [json.loads(line) for line in (tmp_path / out / "metrics.jsonl").read_text().splitlines()]
        return [entry["processes"] for entry in entries], [entry["loss"] for entry in entries]

    runs = {out: metrics(out) for out in ("one", "launched", "accelerated", "broken")}
    print("\n".join(f"{out}: processes {processes}, losses {losses}" for out, (processes, losses) in runs.items()))
    assert {out: processes for out, (processes, _) in runs.items()} == {
        "one": [1, 1], "launched": [2, 2], "accelerated": [2, 2], "broken": [1, 1]
    }  # fmt: skip
    single = pytest.approx(runs["one"][1], rel=1e-5, abs=1e-6)  # 1 process x 2 accumulated clips
    assert runs["launched"][1] == single and runs["accelerated"][1] == single
    assert runs["broken"][1] != single, "one process with 1 clip per step is another run"
