"""Dynamic Shapes as a torch ``Dataset`` that draws and renders every clip on the fly (nothing on disk).

Item i is clip i of the split (``sample_clip``), so a dataset is fully described by (num, split, seed,
config) and is identical in every worker of a ``DataLoader``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.data import Dataset

from dysen.data.shapes.render import render_clip
from dysen.data.video import frames_to_model
from dysen.dsg.types import DynamicSceneGraph
from dysen.world.clip import sample_clip
from dysen.world.config import DEFAULT_CONFIG, ShapesConfig, require_config, require_int, require_split


class ShapesDataset(Dataset):
    """Clips ``0 .. num-1`` of ``split``: dict(video float32 [3, T, H, W] in [-1, 1], caption, dsg, id)."""

    def __init__(self, num: int, split: str = "train", seed: int = 0, config: ShapesConfig = DEFAULT_CONFIG) -> None:
        self.config = require_config(config)
        self.num = require_int("num", num, 1)
        self.split = require_split(split)
        self.seed = require_int("seed", seed, 0)

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num:
            raise IndexError(f"index {index} is out of range for a ShapesDataset of {self.num} clips")
        clip = sample_clip(index, split=self.split, seed=self.seed, config=self.config)
        frames = torch.from_numpy(render_clip(clip, self.config))  # [T, H, W, 3] uint8
        return {"video": frames_to_model(frames), "caption": clip.caption, "dsg": clip.dsg, "id": clip.id}

    @property
    def source(self) -> dict[str, Any]:
        """What the clips are (split, seed, generator settings): a latent cache of other clips is refused. JSON-shaped
        (the palette as a list); the default world's settings as before the world options (its caches stay valid)."""
        config = dataclasses.asdict(self.config)
        for name in ("colours", "phrasing", "start_angle"):
            value, default = config.pop(name), getattr(DEFAULT_CONFIG, name)
            if value != default:
                config[name] = list(value) if isinstance(value, tuple) else value
        return {"dataset": "shapes", "split": self.split, "seed": self.seed, "config": config}

    def gold_dsg(self, index: int) -> DynamicSceneGraph:
        """Clip ``index``'s gold DSG, drawn without rendering (``dysen.data.oversample``)."""
        return sample_clip(index, split=self.split, seed=self.seed, config=self.config).dsg


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: videos stacked to ``[B, 3, T, H, W]``; captions, DSGs and ids kept as lists."""
    return {
        "video": torch.stack([item["video"] for item in items]),  # [B, 3, T, H, W]
        "caption": [item["caption"] for item in items],
        "dsg": [item["dsg"] for item in items],
        "id": [item["id"] for item in items],
    }
