"""A frozen BERT encoder (all-MiniLM-L6-v2) without importing transformers.

``dysen generate`` encodes one prompt with the bundled MiniLM. Through ``transformers.AutoModel`` that costs
2–4 s of imports on 2 CPU cores (``transformers.modeling_utils`` pulls in ``torch._dynamo`` and
``torch.distributed.tensor``), more than the whole 20-step denoising loop of ``shapes-tiny``. This module runs
the same network from the same files — ``config.json``, ``model.safetensors`` and the fast tokenizer's
``tokenizer.json`` (Hugging Face ``tokenizers``) — for the one architecture it covers: a post-LN BERT with
absolute positions and exact GELU (Devlin et al. 2019). Anything else loads through transformers as before
(``load_bert`` returns None). ``tests/test_text_encoders.py`` holds it to ``transformers.BertModel`` on the
real MiniLM: same token ids, hidden states within 1e-5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT ``config.json`` that the forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_folder(cls, folder: Path) -> BertConfig | None:
        """The folder's config, or None when it is not a plain BERT this module runs."""
        try:
            data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        plain = (
            data.get("model_type") == "bert"
            and data.get("hidden_act") == "gelu"
            and data.get("position_embedding_type", "absolute") == "absolute"
        )
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__}) if plain else None
        except KeyError:
            return None


class BertOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # [B, L, D]


class BertLayer(nn.Module):
    """Self-attention then feed-forward, each followed by residual + LayerNorm (post-LN)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.query, self.key, self.value, self.attn_out = (nn.Linear(d, d) for _ in range(4))
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.ff_in, self.ff_out = nn.Linear(d, config.intermediate_size), nn.Linear(config.intermediate_size, d)
        self.ff_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape  # keep: [B, 1, 1, L] bool, True on real tokens
        q, k, v = (
            proj(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # [B, heads, L, d/heads]
        x = self.attn_norm(x + self.attn_out(context.transpose(1, 2).reshape(b, n, d)))
        return self.ff_norm(x + self.ff_out(F.gelu(self.ff_in(x))))  # [B, L, D]


class BertEncoder(nn.Module):
    """Token, position and segment embeddings, LayerNorm, then the layers: ``last_hidden_state`` [B, L, D]."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, d)
        self.position = nn.Embedding(config.max_position_embeddings, d)
        self.token_type = nn.Embedding(config.type_vocab_size, d)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> BertOutput:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # [L]
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.norm(self.word(input_ids) + self.position(positions) + self.token_type(types))  # [B, L, D]
        keep = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L]
        for layer in self.layers:
            x = layer(x, keep)
        return BertOutput(x)

    def load_hf_state_dict(self, weights: dict[str, torch.Tensor]) -> None:
        """Load a ``BertModel`` state dict (optionally prefixed ``bert.``; the pooler is not used)."""
        renamed = {}
        for key, value in weights.items():
            key = key.removeprefix("bert.")
            if key.startswith("pooler.") or key.endswith("position_ids"):
                continue
            renamed[_our_name(key)] = value
        self.load_state_dict(renamed)


_EMBEDDINGS = {"word_embeddings": "word", "position_embeddings": "position", "token_type_embeddings": "token_type",
               "LayerNorm": "norm"}  # fmt: skip
_LAYER = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
          "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
          "intermediate.dense": "ff_in", "output.dense": "ff_out", "output.LayerNorm": "ff_norm"}  # fmt: skip


def _our_name(key: str) -> str:
    """``embeddings.word_embeddings.weight`` -> ``word.weight``; ``encoder.layer.3.output.dense.bias`` ->
    ``layers.3.ff_out.bias``."""
    module, _, param = key.rpartition(".")
    if module.startswith("embeddings."):
        return f"{_EMBEDDINGS[module.removeprefix('embeddings.')]}.{param}"
    _, _, index, inner = module.split(".", 3)  # encoder, layer, i, rest
    return f"layers.{index}.{_LAYER[inner]}.{param}"


class BertTokenizer:
    """The folder's ``tokenizer.json`` behind the call transformers' tokenizers answer: padded to the longest
    text, truncated to ``max_length`` tokens ([CLS] and [SEP] included)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    def __call__(
        self, texts: list[str], padding: bool = True, truncation: bool = True, max_length: int = 512, **_: Any
    ) -> dict[str, torch.Tensor]:
        if truncation:
            self.tokenizer.enable_truncation(max_length)
        else:
            self.tokenizer.no_truncation()
        self.tokenizer.enable_padding(pad_id=self.pad_id, pad_token="[PAD]")  # to the longest text of the call
        encodings = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),  # [B, L]
            "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.long),  # [B, L]
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),  # [B, L]
        }


def load_bert(folder: str | Path) -> tuple[BertTokenizer, BertEncoder] | None:
    """The tokenizer and encoder of a local BERT folder, or None when this module does not cover it."""
    folder = Path(folder)
    config = BertConfig.from_folder(folder)
    weights, vocabulary = folder / "model.safetensors", folder / "tokenizer.json"
    if config is None or not weights.is_file() or not vocabulary.is_file():
        return None
    from safetensors.torch import load_file

    network = BertEncoder(config)
    try:
        network.load_hf_state_dict(load_file(weights))
    except (KeyError, ValueError, RuntimeError):  # other parameter names or shapes: leave it to transformers
        return None
    return BertTokenizer(vocabulary), network.float().eval()
