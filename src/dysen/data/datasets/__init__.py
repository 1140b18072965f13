"""Real text-video corpora (WebVid, UCF-101, MSR-VTT, ActivityNet Captions), Dynamic Shapes from disk and
plain folders, behind one map-style ``VideoTextDataset``; ``base`` holds the dataset, ``formats`` the
readers of each layout on disk (eval_data.md §5).
"""

from dysen.data.datasets.base import (
    ClipSampling,
    DatasetError,
    Segment,
    SkipTally,
    VideoRecord,
    VideoTextDataset,
    clip_window,
    collate,
    read_gold,
)
from dysen.data.datasets.formats import (
    DATASETS,
    activitynet_records,
    class_prompt,
    folder_records,
    load_records,
    msrvtt_records,
    open_dataset,
    shapes_records,
    ucf101_records,
    webvid_records,
)

__all__ = [
    "DATASETS",
    "ClipSampling",
    "DatasetError",
    "Segment",
    "SkipTally",
    "VideoRecord",
    "VideoTextDataset",
    "activitynet_records",
    "class_prompt",
    "clip_window",
    "collate",
    "folder_records",
    "load_records",
    "msrvtt_records",
    "open_dataset",
    "read_gold",
    "shapes_records",
    "ucf101_records",
    "webvid_records",
]
