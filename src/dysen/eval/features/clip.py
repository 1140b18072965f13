"""CLIP frame and prompt embeddings for CLIPSIM (Radford et al. 2021; CLIPSIM from Wu et al. 2021, GODIVA).

``transformers.CLIPModel`` + ``CLIPProcessor`` from a local folder or a hub id, loaded on first use (never at
import). The processor does CLIP's own preprocessing (eval_data.md §3.1): bicubic resize of the short
side to 224, centre crop, CLIP mean/std; text is CLIP BPE, 77 tokens, truncated. Frames are handed over as
**uint8** (float [-1, 1] videos are rounded to uint8 first), since the processor rescales 0..255 itself.

The backbone is a parameter, ViT-B/32 by default (the usual CLIPSIM choice, §3.1); print
``ClipEmbedder.source`` next to every score. Golden-value tests run when ``DYSEN_CLIP_MODEL`` names a
folder (or an id already in the local cache).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from dysen.eval.features.frames import VideoInputError, video_uint8
from dysen.models.pretrained import CheckpointError

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


def _pooled(output: Any) -> torch.Tensor:
    """The projected embedding: a tensor (transformers 4.x) or ``pooler_output`` of a model output (5.x)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipEmbedder:
    """L2-normalised CLIP embeddings of frames and prompts; the model loads on the first call."""

    def __init__(self, source: str | os.PathLike = DEFAULT_CLIP_MODEL, *, device: str = "cpu", batch_size: int = 64):
        self.source, self.device, self.batch_size = os.fspath(source), torch.device(device), batch_size
        self._model: Any = None
        self._processor: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import CLIPModel, CLIPProcessor

            try:
                self._processor = CLIPProcessor.from_pretrained(self.source)
                self._model = CLIPModel.from_pretrained(self.source).eval().to(self.device)
            except (OSError, ValueError) as err:
                raise CheckpointError(
                    f"cannot load CLIP from {self.source}: {err}. Pass a folder with the CLIPModel weights and the "
                    "CLIP processor files (tokenizer and preprocessor config), or a hub id"
                ) from None
        return self._model, self._processor

    def images(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings [M, D] of uint8 RGB frames [M, H, W, 3]."""
        model, processor = self._load()
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = [np.asarray(frame) for frame in frames[start : start + self.batch_size]]
                pixels = processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                outputs.append(_pooled(model.get_image_features(pixel_values=pixels)).float().cpu())  # [b, D]
        return torch.nn.functional.normalize(torch.cat(outputs), dim=-1)

    def texts(self, prompts: list[str]) -> torch.Tensor:
        """Unit-norm embeddings [N, D] of prompts (77 CLIP tokens, truncated)."""
        model, processor = self._load()
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                tokens = processor(
                    text=list(prompts[start : start + self.batch_size]), padding=True, truncation=True,
                    max_length=77, return_tensors="pt",
                )  # fmt: skip
                inputs = {k: tokens[k].to(self.device) for k in ("input_ids", "attention_mask")}
                outputs.append(_pooled(model.get_text_features(**inputs)).float().cpu())  # [b, D]
        return torch.nn.functional.normalize(torch.cat(outputs), dim=-1)


def clip_embeddings(
    videos: np.ndarray | torch.Tensor, prompts: list[str], embedder: ClipEmbedder
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame embeddings [N, T, D] and prompt embeddings [N, D] of videos [N, T, H, W, 3] and their prompts.

    Feed both to ``dysen.eval.metrics.clipsim``.
    """
    frames = video_uint8(videos)  # [N, T, H, W, 3]
    if len(prompts) != frames.shape[0]:
        raise VideoInputError(f"need one prompt per video: {frames.shape[0]} videos, {len(prompts)} prompts")
    n, t = frames.shape[:2]
    image_embeddings = embedder.images(frames.reshape(n * t, *frames.shape[2:]).numpy())  # [N·T, D]
    return image_embeddings.reshape(n, t, -1), embedder.texts(prompts)
