"""Issue 22, items 2, 3, 11 and 12 (eval and datasets): bounded video reading in ``dysen eval --videos``, the frame
count of ``generate``, finite sampling settings and latents, and bad files skipped and counted."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import dysen.diffusion.sampler as sampler_module
from dysen.diffusion.sampler import SamplingSettings
from dysen.diffusion.schedules import DiffusionConfig
from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.errors import DysenError
from dysen.pipeline import DysenVDMPipeline
from dysen.planner.rules import RulesPlanner
from dysen.world import vocab

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline_fixtures import TINY, HashTextEncoder  # noqa: E402

MAX_STEPS = getattr(sampler_module, "MAX_STEPS", 1000)
DSG = DynamicSceneGraph.from_events([Event(agent="circle", predicate="moves right", start=0, end=2)])


def _write_clip(path: Path, frames: int, width: int, height: int) -> None:
    """An H.264 clip of a red disc moving right on the Dynamic Shapes background, encoded one frame at a time."""
    import av

    ys, xs = np.mgrid[0:height, 0:width]
    background = np.array(vocab.BACKGROUND, dtype=np.uint8)
    red = np.array(vocab.COLOURS["red"], dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = np.broadcast_to(background, (height, width, 3)).copy()
            cx, cy, r = width * (0.2 + 0.6 * t / frames), height / 2, height / 8
            image[(xs - cx) ** 2 + (ys - cy) ** 2 < r * r] = red
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


# -- item 2: eval --videos reads a large video in bounded memory ---------------------------------------------------

_SCORE = textwrap.dedent(
    """
    import resource, sys
    limit = 3 * 1024**3  # address space: an unbounded read fails here instead of taking the machine's memory
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from dysen.eval.benchmark import score_folder
    results = score_folder(sys.argv[1], progress=False)
    print(len(results), *results[0].size, results[0].score.object_fidelity)
    # this process's own peak, in KiB: VmHWM (ru_maxrss also counts the peak of the pytest process that forked it)
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    print(int(status["VmHWM"].split()[0]) if "VmHWM" in status else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def test_item2_eval_videos_scores_a_100_frame_720p_clip_under_1_gb(tmp_path):
    _write_clip(tmp_path / "big.mp4", frames=100, width=720, height=528)  # the clip: 4.5 GB before
    assert (tmp_path / "big.mp4").stat().st_size < 2_000_000
    (tmp_path / "big.dsg.json").write_text(DSG.to_json(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", _SCORE, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    scored, peak_kib = done.stdout.split("\n")[:2]
    count, frames, height, width, fidelity = scored.split()
    assert int(count) == 1 and int(frames) >= 16 and max(int(height), int(width)) < 528
    assert float(fidelity) == 1.0  # the red circle is found
    assert int(peak_kib) < 1024 * 1024, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"


_REAL_ENV = os.environ.get("DYSEN_REAL_VIDEOS")  # as tests/test_video.py
REAL_VIDEOS = Path(_REAL_ENV) if _REAL_ENV else Path(__file__).resolve().parents[3] / "shared" / "data" / "real_videos"


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_VIDEOS / "box.mp4").is_file(), reason=f"no real test videos at {REAL_VIDEOS}")
def test_item2_eval_videos_scores_a_455_frame_real_clip_under_1_gb(tmp_path):
    (tmp_path / "box.mp4").symlink_to(REAL_VIDEOS / "box.mp4")  # 455 frames of 640x480: 1.3 GB as uint8
    (tmp_path / "box.dsg.json").write_text(DSG.to_json(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", _SCORE, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split("\n")[0].split()[0]) == 1
    assert int(done.stdout.split("\n")[1]) < 1024 * 1024


def test_item2_bounded_reading_keeps_normal_videos_identical(tmp_path):
    from dysen.data.video import read_video

    _write_clip(tmp_path / "a.mp4", frames=20, width=96, height=64)
    whole = read_video(tmp_path / "a.mp4")
    small = read_video(tmp_path / "a.mp4", size=32, crop=False)
    reference = torch.nn.functional.interpolate(
        whole.permute(0, 3, 1, 2).float(), size=(32, 48), mode="bilinear", antialias=True, align_corners=False
    )
    assert torch.equal(small, reference.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    from dysen.data.video import read_within
    from dysen.eval.benchmark import SCORE_BUDGET

    within = read_within(tmp_path / "a.mp4", SCORE_BUDGET)
    assert within.stride == 1 and torch.equal(within.frames, whole)


# -- item 3: the frame count of generate -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipe() -> DysenVDMPipeline:
    return DysenVDMPipeline.from_config(TINY, planner=RulesPlanner(), text_encoder=HashTextEncoder())


@pytest.mark.parametrize("frames", [0, -4, 3, 100_000, 2.5, True])
def test_item3_num_frames_out_of_range_is_refused_before_sampling(tiny_pipe, frames):
    with pytest.raises(DysenError, match="num_frames"):
        tiny_pipe("a circle moves right", dsg=DSG, steps=1, num_frames=frames, progress=False)


def test_item3_a_video_larger_than_free_memory_is_refused_with_the_estimate(tiny_pipe, monkeypatch):
    import dysen.pipeline as pipeline

    monkeypatch.setattr(pipeline, "available_memory", lambda device: 1000)
    with pytest.raises(DysenError, match=r"about .* GB.*--frames"):
        tiny_pipe("a circle moves right", dsg=DSG, steps=1, progress=False)


@pytest.mark.parametrize(("value", "message"), [("0", "--frames"), ("-4", "--frames"), ("100000", "num_frames")])
def test_item3_cli_frames_gives_one_line_and_writes_nothing(tmp_path, value, message):
    out = tmp_path / "v.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "dysen.cli", "generate", "a circle moves right", "--out", str(out), "--frames", value],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr and message in done.stderr
    assert list(tmp_path.iterdir()) == []


# -- item 11: finite sampling settings and latents -------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"guidance": math.nan}, {"guidance": math.inf}, {"guidance": -1.0}, {"dsg_guidance": math.nan},
        {"dsg_guidance": -math.inf}, {"eta": math.nan}, {"eta": -3.0}, {"eta": 1.5}, {"steps": MAX_STEPS + 1},
        {"steps": 0}, {"steps": 10**12},
    ],
)  # fmt: skip
def test_item11_bad_sampling_settings_are_refused(changes):
    with pytest.raises(DysenError):
        SamplingSettings.resolve(DiffusionConfig(), **changes)


def test_item11_steps_above_the_training_timesteps_are_refused():
    with pytest.raises(DysenError, match="steps"):
        SamplingSettings.resolve(DiffusionConfig(num_train_timesteps=100), steps=101)


def test_item11_nan_weights_fail_with_the_step_not_a_black_video(tiny_pipe):
    weight = next(tiny_pipe.unet.parameters())
    kept = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.fill_(math.nan)
        with pytest.raises(DysenError, match="step 1 of 2"):
            tiny_pipe("a circle moves right", dsg=DSG, steps=2, progress=False)
    finally:
        with torch.no_grad():
            weight.copy_(kept)


def test_item11_cli_non_finite_settings_give_one_line_and_write_nothing(tmp_path):
    flags = ["--guidance", "nan", "--eta", "-3"]
    out = tmp_path / "v.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "dysen.cli", "generate", "a circle moves right", "--out", str(out), *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "guidance must be a finite number" in done.stderr and "eta must be a number in [0, 1]" in done.stderr
    assert list(tmp_path.iterdir()) == []


# -- item 12: bad videos skipped and counted; captions that are not UTF-8 ----------------------------------------


def test_item12_eval_videos_skips_and_counts_bad_files(tmp_path):
    from dysen.eval.benchmark import score_folder
    from dysen.eval.variants import Variant, run_variant

    _write_clip(tmp_path / "good.mp4", frames=8, width=32, height=32)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n", encoding="utf-8")
    os.mkfifo(tmp_path / "fifo.mp4")  # opening it for reading would block forever
    for stem in ("good", "empty", "text", "fifo"):
        (tmp_path / f"{stem}.dsg.json").write_text(DSG.to_json(), encoding="utf-8")
    results = score_folder(tmp_path, progress=False)
    assert [r.id for r in results] == ["good"]
    assert sorted(Path(file).name for file, _ in results.skipped) == ["empty.mp4", "fifo.mp4", "text.mp4"]
    row = run_variant(Variant("files", source="folder", folder=tmp_path), 1, progress=False)
    assert row["num_samples"] == 1 and row["skipped_videos"]["count"] == 3
    assert json.dumps(row)  # the report can hold it


def test_item12_eval_videos_with_no_readable_video_says_so(tmp_path):
    from dysen.eval.benchmark import score_folder

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "empty.dsg.json").write_text(DSG.to_json(), encoding="utf-8")
    with pytest.raises(DysenError, match="no readable video.*empty.mp4"):
        score_folder(tmp_path, progress=False)


def test_item12_folder_dataset_reads_a_non_utf8_caption_with_a_warning(tmp_path, caplog):
    from dysen.data.datasets.formats import folder_records

    _write_clip(tmp_path / "a.mp4", frames=8, width=32, height=32)
    _write_clip(tmp_path / "b.mp4", frames=8, width=32, height=32)
    (tmp_path / "a.txt").write_bytes(b"a red circle \xff\xfe moves right\n")
    (tmp_path / "b.txt").write_text("a blue square jumps\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        records = folder_records(tmp_path)
    assert [r.captions for r in records] == [("a red circle \ufffd\ufffd moves right",), ("a blue square jumps",)]
    assert "a.txt" in caplog.text and "UTF-8" in caplog.text


def test_item12_eval_report_lists_the_skipped_videos(tmp_path):
    from dysen.eval.report import new_report, write_report
    from dysen.eval.variants import Variant, run_variant

    videos = tmp_path / "videos"
    videos.mkdir()
    _write_clip(videos / "good.mp4", frames=8, width=32, height=32)
    (videos / "bad.mp4").write_bytes(b"\x00" * 100)
    for stem in ("good", "bad"):
        (videos / f"{stem}.dsg.json").write_text(DSG.to_json(), encoding="utf-8")
    report = new_report("shapes", ["dysen", "eval"], {}, "cpu")
    report["rows"].append(run_variant(Variant("files", source="folder", folder=videos), 1, progress=False))
    write_report(tmp_path / "out", report)
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "1 video file(s) skipped" in markdown and "`bad.mp4`" in markdown


def test_item12_zero_shot_folder_skips_and_counts_bad_files(tmp_path):
    from dysen.eval.protocols import FeatureSink, MetricNetworks, folder_features

    _write_clip(tmp_path / "a.mp4", frames=8, width=32, height=32)
    (tmp_path / "b.mp4").write_bytes(b"")
    os.mkfifo(tmp_path / "c.mp4")
    lines = [json.dumps({"id": i, "prompt": "a circle"}) for i in "abc"]
    (tmp_path / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sink = FeatureSink((), MetricNetworks())
    skipped = folder_features(tmp_path, sink, progress=False)
    assert sink.count == 1 and sorted(Path(f).name for f, _ in skipped) == ["b.mp4", "c.mp4"]


@pytest.mark.parametrize("field", ["guidance", "dsg_guidance"])
def test_item11_a_model_config_with_infinite_guidance_is_refused(field):
    with pytest.raises(DysenError, match=field):
        DiffusionConfig(**{field: math.inf})


def test_item12_a_dsg_beside_a_video_that_is_not_utf8_is_a_clear_error(tmp_path):
    from dysen.eval.benchmark import score_folder

    _write_clip(tmp_path / "a.mp4", frames=8, width=32, height=32)
    (tmp_path / "a.dsg.json").write_bytes(b'{"graphs": "\xff"}')
    with pytest.raises(DysenError, match="a.dsg.json"):
        score_folder(tmp_path, progress=False)
