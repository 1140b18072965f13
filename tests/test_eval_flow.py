"""dysen.eval.flow: the VBench-style dynamic degree on OpenCV Farneback flow (eval_data.md §7)."""

from __future__ import annotations

import numpy as np
import pytest

from dysen.eval.flow import DynamicDegree, dynamic_degree, dynamic_share


def _clip(speed: int, frames: int = 16, size: int = 128) -> np.ndarray:
    """A red square (a quarter of the side) moving ``speed`` px/frame to the right over a smooth static background."""
    ramp = np.linspace(60, 140, size)
    background = np.stack(
        [ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 90)], -1
    )
    video = np.repeat(background.astype(np.uint8)[None], frames, axis=0)  # [T, H, W, 3]
    side = size // 4
    for t in range(frames):
        x = size // 8 + speed * t
        video[t, size // 3 : size // 3 + side, x : x + side] = (255, 0, 0)
    return video


def test_a_static_video_has_no_flow_and_is_not_dynamic():
    degree = dynamic_degree(_clip(speed=0))
    assert len(degree.pair_scores) == 15 and max(degree.pair_scores) < 0.05
    assert degree.flow < 0.05 and not degree.dynamic


def test_a_square_moving_four_pixels_a_frame_reads_about_four_and_is_dynamic():
    degree = dynamic_degree(_clip(speed=4))
    assert np.median(degree.pair_scores) == pytest.approx(4.0, abs=0.5)
    assert degree.threshold == pytest.approx(3.0)  # 6 * 128 / 256 at 8 fps
    assert degree.needed == 4 and degree.dynamic


def test_frames_are_sampled_at_about_eight_fps_and_the_threshold_follows_the_size():
    fast = dynamic_degree(_clip(speed=2), fps=16)  # every 2nd frame: 8 frames, 7 pairs of 4 px
    assert len(fast.pair_scores) == 7 and fast.needed == 2
    assert np.median(fast.pair_scores) == pytest.approx(4.0, abs=0.5) and fast.dynamic
    slow = dynamic_degree(_clip(speed=2, size=64), fps=4)  # threshold 6 * 64/256 * 8/4 = 3.0 px
    assert slow.threshold == pytest.approx(3.0) and not slow.dynamic


def test_dynamic_share_is_the_share_of_dynamic_videos_and_bad_input_is_refused():
    degrees = [dynamic_degree(_clip(speed=s, frames=8, size=64)) for s in (0, 4, 5)]
    assert [d.dynamic for d in degrees] == [False, True, True]
    assert dynamic_share(degrees) == pytest.approx(2 / 3) and dynamic_share([]) is None
    assert DynamicDegree((), 1.0, 1, False).flow == 0.0
    with pytest.raises(ValueError, match="uint8 frames"):
        dynamic_degree(np.zeros((4, 16, 16, 3), dtype=np.float32))
