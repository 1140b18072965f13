"""Issue 22, the edges: training on data where nothing loads (12), damaged checkpoints and strict metrics (13),
hub look-ups without network (14), the demo's upload limits (15) and one-line errors at the CLI (16)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dysen.cli import main
from dysen.config import save_config
from dysen.data.datasets import ClipSampling, collate, open_dataset
from dysen.data.shapes import ShapesConfig
from dysen.data.shapes.dataset import ShapesDataset
from dysen.data.shapes.dataset import collate as shapes_collate
from dysen.models.vae import KLVideoAutoencoder
from dysen.train import bad_items
from dysen.train.checkpoint import TrainCheckpointError, checkpoint_dir, load_checkpoint
from dysen.train.loop import TrainConfig, train
from dysen.train.stages import VAETask
from pipeline_fixtures import TINY

SHAPES = ShapesConfig(size=16, num_frames=8)


def _vae_task() -> VAETask:
    torch.manual_seed(0)
    return VAETask(KLVideoAutoencoder(TINY.vae.kl3d))


# -- 12: a folder where every video is bad -------------------------------------------------------------------


def _all_bad_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for n in range(4):
        (root / f"bad{n}.mp4").write_text("not a video\n")
        (root / f"bad{n}.txt").write_text("a caption\n")
    return root


def test_item12_train_stops_with_a_clear_error_when_no_item_loads(tmp_path: Path) -> None:
    sampling = ClipSampling(num_frames=8, size=16, train=True)
    dataset = open_dataset("folder", _all_bad_folder(tmp_path / "videos"), sampling=sampling)
    config = TrainConfig(steps=40, batch_size=2, lr=1e-3, ema_decay=0.0, save_every=100)  # 2 steps an epoch
    message = r"no item loaded in a whole epoch \(up to step 2\): 4 bad items"
    with pytest.raises(bad_items.NoGoodItemsError, match=message):
        train(_vae_task(), dataset, collate, config, tmp_path / "run")


def test_item12_train_vae_cli_on_an_all_bad_folder_is_one_line(tmp_path: Path, capsys) -> None:
    root = _all_bad_folder(tmp_path / "videos")
    config = save_config(TINY, tmp_path / "tiny.yaml")
    argv = ["train-vae", "--config", str(config), "--data", "folder", "--root", str(root), "--out",
            str(tmp_path / "vae"), "--batch-size", "2", "--steps", "30", "--save-every", "100"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no item loaded" in err and "Check the data" in err


# -- 13: checkpoints ----------------------------------------------------------------------------------------


def _run(tmp_path: Path, steps: int, resume: bool = False) -> object:
    config = TrainConfig(steps=steps, batch_size=2, lr=1e-3, ema_decay=0.0, save_every=2, keep_checkpoints=2)
    return train(_vae_task(), ShapesDataset(4, config=SHAPES), shapes_collate, config, tmp_path / "run", resume)


def test_item13_a_damaged_latest_checkpoint_falls_back_to_the_older_one(tmp_path: Path, capsys) -> None:
    _run(tmp_path, 4)
    latest = checkpoint_dir(tmp_path / "run") / "step-00000004"
    (latest / "optimizer.pt").write_bytes(b"")  # 0 bytes
    with pytest.raises(TrainCheckpointError, match="cannot read"):
        load_checkpoint(latest)
    result = _run(tmp_path, 6, resume=True)
    assert "resuming from step-00000002" in capsys.readouterr().out
    assert result.steps_run == 4 and result.step == 6  # type: ignore[attr-defined]


@pytest.mark.parametrize("state", [{"format": 1, "step": -5}, {"format": 1, "step": "4"}, {"format": "1", "step": 4},
                                   [1, 2], {"format": 1, "step": 4, "nonfinite_total": True}])  # fmt: skip
def test_item13_a_state_json_of_wrong_types_is_refused_before_metrics_are_touched(tmp_path: Path, state) -> None:
    _run(tmp_path, 2)
    metrics = tmp_path / "run" / "metrics.jsonl"
    before = metrics.read_text()
    (checkpoint_dir(tmp_path / "run") / "step-00000002" / "state.json").write_text(json.dumps(state))
    with pytest.raises(TrainCheckpointError, match="no readable checkpoint"):
        _run(tmp_path, 4, resume=True)
    assert metrics.read_text() == before and before.count("\n") == 2  # no data loss


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_item13_a_read_only_checkpoint_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints").chmod(0o500)
    try:
        with pytest.raises(TrainCheckpointError, match="cannot write the checkpoint .* make .* writable"):
            train(_vae_task(), ShapesDataset(4, config=SHAPES), shapes_collate,
                  TrainConfig(steps=1, batch_size=2, ema_decay=0.0), tmp_path / "run", resume=True)  # fmt: skip
    finally:
        (tmp_path / "run" / "checkpoints").chmod(0o700)
    assert not list((tmp_path / "run" / "checkpoints").iterdir())


def test_item13_a_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    from dysen.train import checkpoint

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(TrainCheckpointError, match="No space left on device; free space"):
        _run(tmp_path, 2)
    assert not list(checkpoint_dir(tmp_path / "run").iterdir())


def test_item13_metrics_are_strict_json_with_nonfinite_values_as_strings(tmp_path: Path) -> None:
    from dysen.train.metrics import MetricsLog

    log = MetricsLog(tmp_path, 0)
    log.write(1, {"loss": math.nan, "lr": math.inf, "x": -math.inf, "ok": 1.5})
    log.close()
    line = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert line == {"step": 1, "loss": "NaN", "lr": "Infinity", "x": "-Infinity", "ok": 1.5}
    assert math.isnan(float(line["loss"]))


def test_item13_atomic_writes_fsync_before_the_rename(tmp_path: Path, monkeypatch) -> None:
    from dysen import atomic

    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    with atomic.staged_dir(tmp_path / "folder") as staging:
        (staging / "a.bin").write_bytes(b"x")
    assert any(path.endswith("a.bin") for path in synced), synced
    assert (tmp_path / "folder" / "a.bin").read_bytes() == b"x"


def test_item13_sigterm_exit_code_is_143() -> None:
    from dysen.train.loop import LoopResult

    assert LoopResult(3, 0.1, 0, interrupted=True, stop_signal=15).exit_code == 143
    assert LoopResult(3, 0.1, 0, interrupted=True, stop_signal=2).exit_code == 130
    assert LoopResult(3, 0.1, 0).exit_code == 0


# -- 16: one-line errors --------------------------------------------------------------------------------------


def _one_line_error(argv: list[str], capsys, code: int | None = None) -> str:
    try:
        rc = main(argv)
    except SystemExit as exit:  # argparse: usage error, exit 2
        rc = exit.code
    err = capsys.readouterr().err
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last, err
    return last


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "hi", "--out", "{tmp}/x.mp4", "--seed", "-1"],
        ["generate", "hi", "--out", "{tmp}/x.mp4", "--seed", str(2**63)],
        ["generate", "hi", "--out", "{tmp}"],
        ["plan", "hi", "--out", "{tmp}"],
        ["plan", "hi", "--timeout", "nan"],
        ["train-vae", "--out", "{tmp}/r", "--lr", "nan"],
        ["eval", "--out", "{tmp}/e", "--device", "bogus"],
        ["data", "shapes", "--out", "{tmp}/d", "--size", "100000"],
        ["demo", "--port", "70000"],
    ],
    ids=["seed-1", "seed-2^63", "generate-out-dir", "plan-out-dir", "timeout-nan", "lr-nan", "device-bogus",
         "shapes-size", "port"],  # fmt: skip
)
def test_item16_bad_flags_stop_at_the_edge_with_a_usage_error(argv: list[str], tmp_path: Path, capsys) -> None:
    _one_line_error([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys, code=2)


def test_item16_expected_failures_are_one_line_and_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    _one_line_error(["dsg", "validate", str(deep)], capsys, code=1)
    _one_line_error(["plan", "hi", "--planner", "replay", "--replay", str(binary)], capsys, code=1)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        if os.geteuid() != 0:
            _one_line_error(["plan", "hi", "--out", str(tmp_path / "ro" / "plan.json")], capsys, code=1)
    finally:
        (tmp_path / "ro").chmod(0o700)
    with pytest.raises((ValueError, RecursionError)):
        main(["--debug", "dsg", "validate", str(deep)])


def test_item16_wrong_types_in_a_model_config_json_are_one_line(tmp_path: Path, capsys) -> None:
    from dysen.models.vae import KLVideoAutoencoder as VAE

    folder = VAE(TINY.vae.kl3d).save_pretrained(tmp_path / "vae")
    config = json.loads((folder / "config.json").read_text())
    field = next(k for k, v in config.items() if isinstance(v, int) and not isinstance(v, bool))
    config[field] = "many"
    (folder / "config.json").write_text(json.dumps(config))
    argv = ["train-vdm", "--vae", str(folder), "--out", str(tmp_path / "run"), "--steps", "1"]
    line = _one_line_error(argv, capsys, code=1)  # read the config (exit 1), not refused by argparse (exit 2)
    assert field in line and "many" in line, line


def test_item16_a_busy_demo_port_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "dysen.cli", "demo", "--port", str(port), "--workdir", str(tmp_path / "w")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith("dysen: error:")


# -- 14: hub look-ups without network ------------------------------------------------------------------------


def test_item14_a_hub_id_without_network_fails_fast_naming_the_field(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dysen.cli", "generate", "a red ball", "--config", "paper-t2v-256", "--out",
         str(tmp_path / "x.mp4"), "--steps", "1"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert seconds < 15 and "text_encoder" in last and "local" in last, (seconds, last)


def test_item14_in_process_the_check_comes_before_any_network_or_network_building(monkeypatch) -> None:
    from dysen.config import load_config
    from dysen.encoders.hub import HubUnavailableError
    from dysen.pipeline import DysenVDMPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-dysen-hf-home")
    monkeypatch.setattr("socket.create_connection", lambda *a, **k: pytest.fail("touched the network"))
    started = time.perf_counter()
    with pytest.raises(HubUnavailableError, match=r"'openai/clip-vit-large-patch14' is a model-hub id.*text_encoder"):
        DysenVDMPipeline.from_config(load_config("paper-t2v-256"))
    assert time.perf_counter() - started < 5


# -- 15: the demo's uploads ----------------------------------------------------------------------------------


def _upload(url: str, size: int) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    boundary = "dysenboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")  # fmt: skip
    body = head.encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_item15_the_demo_caps_uploads_and_keeps_its_cache_in_the_workdir(tmp_path: Path, monkeypatch) -> None:
    from dysen.web.app import keep_gradio_cache_in, launch_settings
    from dysen.web.options import UploadLimits
    from web_fixtures import served, tiny_service

    limits = UploadLimits()
    settings = launch_settings(tmp_path)
    assert settings["max_file_size"] == limits.max_file_bytes and settings["allowed_paths"] == [str(tmp_path)]
    assert 0 < limits.sweep_every_s <= limits.max_age_s
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "restored-afterwards"))
    assert keep_gradio_cache_in(tmp_path) == tmp_path / limits.folder
    with served(tiny_service(tmp_path)) as url:
        status, _ = _upload(url, limits.max_file_bytes + 1000)
        assert status == 413
        status, text = _upload(url, 1000)
        assert status == 200, text
        (saved,) = json.loads(text)
        assert Path(saved).resolve().is_relative_to((tmp_path / limits.folder).resolve()), saved


@pytest.mark.parametrize("field", ["lr", "grad_clip", "weight_decay"])
def test_item16_train_config_refuses_non_finite_numbers_from_python_too(field: str) -> None:
    from dysen.train.errors import TrainError

    with pytest.raises(TrainError, match=field):
        TrainConfig(**{field: math.nan})
