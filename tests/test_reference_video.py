"""The README's main job at seed 0 still makes the video it made before the one-sampler refactor (issue 21).

``data/reference_main_job_seed0.npz`` holds the frames that ``dysen generate "a red circle moves right, then a
blue square jumps" --out video.mp4`` sampled (the shipped ``shapes-tiny``, its defaults: 25 DDIM steps,
guidance 4.0, seed 0) before the refactor, taken in-process before the mp4 encoder. A change that alters only
the rounding (another batching order of the guidance passes) may move a pixel by one grey level, no more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dysen.pipeline import load_pipeline

REFERENCE = Path(__file__).parent / "data" / "reference_main_job_seed0.npz"
PROMPT = "a red circle moves right, then a blue square jumps"


def test_the_main_job_at_seed_0_matches_the_stored_frames_within_one_grey_level() -> None:
    expected = np.load(REFERENCE)["frames"]  # uint8 [T, H, W, 3]
    frames = load_pipeline()(PROMPT, seed=0, progress=False).frames  # uint8 [T, H, W, 3]
    assert frames.dtype == np.uint8 and frames.shape == expected.shape
    diff = np.abs(frames.astype(np.int16) - expected.astype(np.int16))
    differing = int((diff > 0).sum())
    assert diff.max() <= 1, f"max |diff| {diff.max()} grey levels; {differing} of {diff.size} values differ"
