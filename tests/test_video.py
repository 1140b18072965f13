"""dysen.data.video: probe, frame-exact reads (against a plain full decode), round trips, damaged files."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from dysen.data.video import frames_to_model, model_to_frames, probe, read_video, write_video
from dysen.errors import VideoError


def _real_videos() -> Path:
    env = os.environ.get("DYSEN_REAL_VIDEOS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "real_videos"


REAL = _real_videos()
needs_real = pytest.mark.skipif(
    not (REAL / "box.mp4").is_file(),
    reason=f"real clips not found in {REAL} (set DYSEN_REAL_VIDEOS to the folder holding box.mp4, cup.mp4, tree.avi)",
)

# name: (frames a full decode yields, width, height, codec, keyframe positions to read around)
REAL_CLIPS = {
    "box.mp4": (455, 640, 480, "h264", (250,)),  # B-frames whose pts equal their dts; one edit-list frame
    "cup.mp4": (217, 640, 480, "h264", (30, 180, 210)),
    "tree.avi": (68, 320, 240, "cinepak", (25, 50)),  # variable frame rate: 444 ticks, 68 real frames
}


def _reference(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` by a plain sequential PyAV decode: the ground truth for frame indices."""
    frames = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in indices:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= max(indices):
                break
    return frames


def _clip(num_frames: int = 16, height: int = 32, width: int = 32) -> np.ndarray:
    """A smooth test clip: a horizontal gradient with a green square moving right."""
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)  # [T, H, W, 3]
    frames[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, None, :]
    frames[..., 2] = 60
    for t in range(num_frames):
        frames[t, 8:16, t : t + 8] = (40, 200, 60)
    return frames


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames = _clip()
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames), frames


# -- real clips ----------------------------------------------------------------------------------


@needs_real
@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_probe_real_clips(name):
    count, width, height, codec, _ = REAL_CLIPS[name]
    info = probe(REAL / name, verify=True)
    assert (info.num_frames, info.width, info.height, info.codec) == (count, width, height, codec)
    assert info.fps == pytest.approx(info.num_frames / info.duration_s)
    assert info.duration_s > 0


@needs_real
@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_read_is_frame_exact_around_keyframes(name):
    count, _, _, _, keyframes = REAL_CLIPS[name]
    starts = sorted({0, 1, *(k - 1 for k in keyframes), *keyframes, *(k + 3 for k in keyframes)})
    starts = [s for s in starts if s + 6 < count]
    truth = _reference(REAL / name, {s + i for s in starts for i in (0, 3, 6)})
    for start in starts:
        got = read_video(REAL / name, start=start, num_frames=3, stride=3).numpy()
        expected = np.stack([truth[start + i] for i in (0, 3, 6)])
        np.testing.assert_array_equal(got, expected, err_msg=f"{name} start={start}")


@needs_real
def test_resize_and_crop_real_clip():
    square = read_video(REAL / "cup.mp4", start=5, num_frames=4, size=64)
    assert square.shape == (4, 64, 64, 3) and square.dtype == torch.uint8
    wide = read_video(REAL / "cup.mp4", start=5, num_frames=4, size=64, crop=False)
    assert wide.shape == (4, 64, 85, 3)  # 640x480 -> short side 64, long side round(640 * 64 / 480)
    np.testing.assert_array_equal(square.numpy(), wide[:, :, 10:74].numpy())  # centre crop of the same resize
    model = read_video(REAL / "cup.mp4", start=5, num_frames=4, size=64, output="float")
    assert model.shape == (3, 4, 64, 64) and model.dtype == torch.float32
    assert -1.0 <= model.min() < model.max() <= 1.0
    torch.testing.assert_close(model, frames_to_model(square))


@needs_real
@pytest.mark.parametrize("fraction", [0.3, 0.6])
@pytest.mark.parametrize("name", ["box.mp4", "cup.mp4"])
def test_truncated_real_mp4_is_refused(tmp_path, name, fraction):
    """Cut files keep a decodable prefix, but are refused whole (box at 60% ends on a packet boundary)."""
    data = (REAL / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * fraction)])
    for call in (lambda: probe(cut), lambda: read_video(cut, num_frames=2)):
        with pytest.raises(VideoError, match="truncated") as err:
            call()
        assert str(cut) in str(err.value)


# -- tiny clips written here ---------------------------------------------------------------------


def test_seeking_matches_a_full_read_on_short_gops_with_b_frames(tmp_path):
    """An mkv with a keyframe every 5 frames and B-frames: every seek lands, every selection is exact."""
    path = tmp_path / "gops.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"g": "5", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for image in _clip(num_frames=24):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        assert sum(p.is_keyframe for p in container.demux(video=0)) >= 4
    full = read_video(path).numpy()
    assert len(full) == 24
    for start in range(0, 18):
        got = read_video(path, start=start, num_frames=3, stride=3).numpy()
        np.testing.assert_array_equal(got, full[start : start + 9 : 3])


def test_mp4_round_trip(small_mp4):
    path, frames = small_mp4
    info = probe(path, verify=True)
    assert (info.num_frames, info.width, info.height, info.codec) == (16, 32, 32, "h264")
    assert info.fps == pytest.approx(8.0) and info.duration_s == pytest.approx(2.0)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == torch.uint8
    assert np.abs(back.numpy().astype(int) - frames).mean() < 5.0  # lossy: crf 18 and 4:2:0 chroma on a red ramp


def test_selection_matches_full_read(small_mp4):
    path, _ = small_mp4
    full = read_video(path).numpy()
    np.testing.assert_array_equal(read_video(path, start=3, num_frames=4, stride=3).numpy(), full[3:13:3])
    np.testing.assert_array_equal(read_video(path, start=5, stride=4).numpy(), full[5::4])
    padded = read_video(path, start=12, num_frames=4, stride=2, pad=True).numpy()
    np.testing.assert_array_equal(padded, full[[12, 14, 15, 15]])


def test_past_the_end_says_how_many_frames(small_mp4):
    path, _ = small_mp4
    with pytest.raises(VideoError, match="has 16 frames"):
        read_video(path, start=10, num_frames=4, stride=2)
    with pytest.raises(VideoError, match="has 16 frames"):
        read_video(path, start=16, num_frames=2, pad=True)


def test_bad_arguments_are_value_errors(small_mp4, tmp_path):
    path, frames = small_mp4
    for kwargs in ({"stride": 0}, {"start": -1}, {"num_frames": 0}, {"size": 0}, {"output": "uint16"}):
        with pytest.raises(ValueError):
            read_video(path, **kwargs)
    with pytest.raises(ValueError, match="model_to_frames"):
        write_video(tmp_path / "x.mp4", frames_to_model(torch.from_numpy(frames)))
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "x.avi", frames)


def test_gif_round_trip_is_exact_with_few_colours(tmp_path):
    frames = _clip()
    path = write_video(tmp_path / "clip.gif", frames, fps=10)
    info = probe(path)
    assert (info.num_frames, info.codec) == (16, "gif") and info.fps == pytest.approx(10.0, rel=0.05)
    np.testing.assert_array_equal(read_video(path).numpy(), frames)


def test_gif_with_many_colours_is_close(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 24, 24, 3), dtype=np.uint8)  # [T, H, W, 3]
    back = read_video(write_video(tmp_path / "noise.gif", frames)).numpy().astype(int)
    assert np.abs(back - frames).max() <= 26  # half a step of the 6-level channels
    assert np.abs(back - frames).mean() < 15


def test_odd_size_is_padded_to_even(tmp_path):
    frames = _clip(height=31, width=33)
    back = read_video(write_video(tmp_path / "odd.mp4", torch.from_numpy(frames))).numpy().astype(int)
    assert back.shape == (16, 32, 34, 3)
    assert np.abs(back[:, :31, :33] - frames).mean() < 5.0


def test_model_layout_round_trip():
    frames = torch.from_numpy(_clip(num_frames=3))  # [T, H, W, 3]
    model = frames_to_model(frames)  # [3, T, H, W]
    assert model.shape == (3, 3, 32, 32) and model.min() >= -1 and model.max() <= 1
    torch.testing.assert_close(model_to_frames(model), frames)


def test_write_is_atomic_and_overwrites(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    write_video(target, _clip(num_frames=4))
    assert probe(target).num_frames == 4
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left behind
    with pytest.raises(VideoError, match="could not write"):
        write_video(tmp_path / "no_such_folder" / "clip.mp4", _clip(num_frames=2))
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


# -- damaged and non-video files -----------------------------------------------------------------


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        samples.sample_rate = 8000
        container.mux(stream.encode(samples))
        container.mux(stream.encode(None))
    return path


def _bad_file(kind: str, folder: Path, source: Path) -> Path:
    """A file (or non-file) of the given ``kind`` of damage, made in ``folder`` from the good ``source``."""
    path = folder / f"{kind}.mp4"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 40)
    elif kind == "audio-only":
        path = _audio_only(folder / "sound.wav")
    elif kind == "undecodable":  # the index is intact, every frame's data (after 'mdat') is garbage
        data = source.read_bytes()
        payload = data.index(b"mdat") + 4
        path.write_bytes(data[:payload] + b"\xff" * (len(data) - payload))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("directory", "not a file"),
        ("empty", "empty"),
        ("text", "not a readable video"),
        ("audio-only", "no video stream"),
        ("undecodable", "no decodable frames"),
    ],
)
def test_unreadable_files_raise_video_error(tmp_path, small_mp4, kind, message):
    path = _bad_file(kind, tmp_path, small_mp4[0])
    with pytest.raises(VideoError, match=message) as err:
        probe(path, verify=True)  # verify: an undecodable file has an intact index
    assert str(path) in str(err.value)
    with pytest.raises(VideoError, match=message):
        read_video(path, num_frames=1)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_small_mp4_is_refused(tmp_path, small_mp4, fraction):
    data = small_mp4[0].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(VideoError, match="cut.mp4"):
        probe(cut)
    with pytest.raises(VideoError, match="cut.mp4"):
        read_video(cut)


def test_random_damage_never_crashes(tmp_path, small_mp4):
    """Overwrite random byte ranges: each read raises VideoError or agrees with probe (damage may hit the index)."""
    data = small_mp4[0].read_bytes()
    rng = np.random.default_rng(0)
    for i in range(40):
        start, length = int(rng.integers(0, len(data) - 64)), int(rng.integers(1, 64))
        damaged = bytearray(data)
        damaged[start : start + length] = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
        path = tmp_path / f"damaged{i}.mp4"
        path.write_bytes(bytes(damaged))
        try:
            frames = read_video(path)
            count = probe(path).num_frames
        except VideoError:
            continue
        assert frames.dtype == torch.uint8 and frames.shape[0] == count and frames.shape[-1] == 3
