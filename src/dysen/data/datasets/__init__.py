"""Real text-video corpora (WebVid, UCF-101, MSR-VTT, ActivityNet Captions), Dynamic Shapes from disk and
plain folders, behind one map-style ``VideoTextDataset``; ``base`` holds the dataset, ``formats`` the
readers of each layout on disk (eval_data.md §5).

Importing this package is light (the CLI reads ``DATASETS`` to build its parser): the torch side loads
when one of its names is first used.
"""

from __future__ import annotations

from typing import Any

DATASETS: tuple[str, ...] = ("webvid", "ucf101", "msrvtt", "activitynet", "shapes", "folder")
"""The dataset formats ``open_dataset`` and ``load_records`` read."""

_BASE = ("ClipSampling", "DatasetError", "Segment", "SkipTally", "TarMember", "VideoRecord", "VideoTextDataset",
         "bytes_file", "clip_window", "collate", "read_clip", "read_gold", "video_file")  # fmt: skip
_FORMATS = ("activitynet_records", "class_prompt", "folder_records", "load_records", "msrvtt_records",
            "open_dataset", "shapes_records", "ucf101_records", "webvid_records")  # fmt: skip
__all__ = ["DATASETS", *_BASE, *_FORMATS]


def __getattr__(name: str) -> Any:
    if name in _BASE:
        from dysen.data.datasets import base

        return getattr(base, name)
    if name in _FORMATS:
        from dysen.data.datasets import formats

        return getattr(formats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
