"""Write Dynamic Shapes to disk: ``videos/<id>.mp4`` plus ``manifest.jsonl``, rendered by a process pool.

Each worker draws, renders and encodes whole clips from (seed, split, index) alone, so the result does
not depend on the number of workers. Workers are started with 'spawn' (safe even when the caller has
threads, e.g. torch's). Every mp4 is written atomically by ``dysen.data.video.write_video``; the
manifest is written atomically (``dysen.dsg.io.write_jsonl_atomic``) once every clip is on disk.
"""

from __future__ import annotations

import multiprocessing
import os
from contextlib import AbstractContextManager, nullcontext
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dysen.data.shapes.render import render_clip
from dysen.dsg.io import write_jsonl_atomic
from dysen.errors import DysenError
from dysen.world.clip import sample_clip
from dysen.world.config import DEFAULT_CONFIG, ShapesConfig, require_config, require_int, require_split

MANIFEST = "manifest.jsonl"


def write_dataset(
    out_dir: str | os.PathLike,
    num: int,
    split: str = "train",
    seed: int = 0,
    config: ShapesConfig = DEFAULT_CONFIG,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write clips ``0 .. num-1`` of ``split`` under ``out_dir``; returns the manifest path.

    Manifest records (one JSON object per line, in index order): id, split, caption, dsg (the gold
    ``DynamicSceneGraph`` as JSON), path (of the mp4, relative to ``out_dir``), num_frames, fps, size,
    frame_boxes (per frame, the boxes of the visible shapes).
    """
    num = require_int("num", num, 1)
    split = require_split(split)
    seed = require_int("seed", seed, 0)
    config = require_config(config)
    workers = min(require_int("workers", (os.cpu_count() or 1) if workers is None else workers, 1), num)
    out = Path(out_dir)
    try:
        (out / "videos").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DysenError(f"cannot create the output folder {out}: {err}") from None
    jobs = [(out, index, split, seed, config) for index in range(num)]
    records = []
    with _pool(workers) as pool, tqdm(total=num, desc=f"shapes {split}", unit="clip", disable=not progress) as bar:
        chunk = max(1, num // (workers * 8))  # about 8 tasks per worker: the bar moves, the load stays even
        for record in map(_write_clip, jobs) if pool is None else pool.imap(_write_clip, jobs, chunksize=chunk):
            records.append(record)
            bar.update(1)
    manifest = out / MANIFEST
    write_jsonl_atomic(manifest, records)
    return manifest


def _pool(workers: int) -> AbstractContextManager[Pool | None]:
    """A 'spawn' process pool of ``workers`` processes, or no pool (work in this process) for one worker."""
    return nullcontext() if workers == 1 else multiprocessing.get_context("spawn").Pool(workers)


def _write_clip(job: tuple[Path, int, str, int, ShapesConfig]) -> dict[str, Any]:
    """Draw, render and encode one clip; its manifest record. Runs in a worker process."""
    from dysen.data.video import write_video  # imports torch: only in the processes that encode

    out, index, split, seed, config = job
    clip = sample_clip(index, split=split, seed=seed, config=config)
    relative = f"videos/{clip.id}.mp4"
    write_video(out / relative, render_clip(clip, config), fps=config.fps)
    return {
        "id": clip.id,
        "split": clip.split,
        "caption": clip.caption,
        "dsg": clip.dsg.to_dict(),
        "path": relative,
        "num_frames": config.num_frames,
        "fps": config.fps,
        "size": config.size,
        "frame_boxes": [[box.model_dump() for box in boxes] for boxes in clip.frame_boxes],
    }
