"""Chat backend that runs a Hugging Face causal LM in this process (no server, no network by default).

The model (a local directory or a hub id) is loaded with ``AutoTokenizer`` and ``AutoModelForCausalLM`` on the
first ``complete`` call, so building the backend and importing this module are cheap: torch and transformers are
imported only then. Prompts are laid out by the tokenizer's chat template
(``apply_chat_template(messages, add_generation_prompt=True)``); a tokenizer without one gets a plain
``"role: content"`` layout ending in ``"assistant:"``, and a warning is logged once.

Decoding follows ``LLMSampling``: temperature 0 (the paper's setting) is greedy; temperature > 0 samples, seeded by
``LLMSampling.seed`` when one is given (the global torch RNG is forked, so the caller's RNG state is untouched).
``frequency_penalty`` and ``presence_penalty`` have no exact Hugging Face counterpart and are ignored.

``json_schema`` is accepted and ignored: a local model is given the schema in the prompt text by the planner,
and there is no constrained decoding here.

``local_files_only=True`` (the default) keeps ``from_pretrained`` off the network: a hub id must already be in
the local Hugging Face cache. Pass ``local_files_only=False`` to allow a download from the hub.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dysen.planner.backends.base import PAPER_SAMPLING, Completion, LLMError, LLMSampling, Messages, message_dicts
from dysen.planner.backends.openai_compat import BackendStats

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda", "auto"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
_DTYPES: frozenset[str] = frozenset({"auto", "float32", "bfloat16", "float16"})
_OOM_MARKERS = ("out of memory", "can't allocate memory")


class HFChatBackend:
    """A local ``transformers`` causal LM behind the ``ChatBackend`` protocol."""

    def __init__(
        self,
        model: str,
        *,
        device: Device = "cpu",
        dtype: DType = "auto",
        max_new_tokens: int | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool = True,
        name: str = "hf",
    ) -> None:
        """``max_new_tokens`` caps ``LLMSampling.max_tokens`` when given (None: use ``LLMSampling.max_tokens``)."""
        if device not in ("cpu", "cuda", "auto"):
            raise LLMError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
        if dtype not in _DTYPES:
            raise LLMError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise LLMError(f"max_new_tokens must be >= 1 or None, got {max_new_tokens}")
        self.name = name
        self.model = model
        self.device: Device = device
        self.dtype: DType = dtype
        self.max_new_tokens = max_new_tokens
        self.trust_remote_code = trust_remote_code
        self.local_files_only = local_files_only
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._model: PreTrainedModel | None = None
        self._lock = threading.Lock()
        self._stats = BackendStats()

    def __repr__(self) -> str:
        return (
            f"HFChatBackend(model={self.model!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"local_files_only={self.local_files_only!r})"
        )

    @property
    def stats(self) -> BackendStats:
        """Totals since this backend was made (``retries`` is always 0: nothing here is retried)."""
        return self._stats

    def complete(
        self,
        messages: Messages,
        *,
        sampling: LLMSampling = PAPER_SAMPLING,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Generate an answer to ``messages``; ``json_schema`` is ignored (see the module docstring)."""
        payload = message_dicts(messages)
        with self._lock:
            tokenizer, model = self._load()
            self._stats = replace(self._stats, calls=self._stats.calls + 1)
            try:
                prompt = self._prompt_ids(tokenizer, payload, model.device)
                new_ids = self._generate(tokenizer, model, prompt, sampling)
            except Exception as err:
                self._stats = replace(self._stats, failures=self._stats.failures + 1)
                raise LLMError(f"{self._where()}: generation failed: {_describe(err)}") from err
            prompt_tokens, completion_tokens = int(prompt.shape[-1]), len(new_ids)
            self._stats = replace(
                self._stats,
                prompt_tokens=self._stats.prompt_tokens + prompt_tokens,
                completion_tokens=self._stats.completion_tokens + completion_tokens,
            )
        return Completion(
            text=tokenizer.decode(new_ids, skip_special_tokens=True),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            attempts=1,
            cached=False,
            model=self.model,
        )

    def _load(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        """Load the tokenizer and model on first use (the caller holds the lock)."""
        if self._tokenizer is not None and self._model is not None:
            return self._tokenizer, self._model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, device = self._source(), self._torch_device()
        options = {"trust_remote_code": self.trust_remote_code, "local_files_only": self.local_files_only}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=self._torch_dtype(), **options)
            model.to(device).eval()
        except Exception as err:
            raise LLMError(self._load_failure(err)) from err
        if not getattr(tokenizer, "chat_template", None):
            log.warning(
                "%s: the tokenizer has no chat template; prompts use a plain 'role: content' layout", self._where()
            )
        self._tokenizer, self._model = tokenizer, model
        return tokenizer, model

    def _source(self) -> str:
        """The model directory, or the hub id; a string that can only be a path must exist."""
        path = Path(self.model).expanduser()
        if path.exists():
            return str(path)
        looks_like_path = path.is_absolute() or self.model.startswith((".", "~")) or self.model.count("/") > 1
        if looks_like_path or "\\" in self.model:
            raise LLMError(f"Local model path {self.model!r} does not exist: pass a model directory or a hub id.")
        return self.model

    def _load_failure(self, err: Exception) -> str:
        """Why ``from_pretrained`` failed, and what to do about it."""
        what = f"Cannot load the Hugging Face model {self.model!r}: {_describe(err)}"
        if _is_oom(err):
            return f"{what}. Out of memory: try dtype='bfloat16'/'float16', a smaller model or another device."
        if self.local_files_only and not Path(self.model).expanduser().exists():
            return (
                f"{what}. local_files_only=True blocked a download from the hub: download the model first, "
                "or pass local_files_only=False to allow one."
            )
        return what

    def _prompt_ids(self, tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], device: Any) -> Any:
        """The prompt as a ``(1, L)`` tensor of token ids, laid out by the chat template or the plain fallback."""
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = plain_prompt(messages)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]  # (1, L)
        return ids.to(device)

    def _generate(
        self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: torch.Tensor, sampling: LLMSampling
    ) -> list[int]:
        """Run ``model.generate`` and return only the new token ids."""
        import torch

        limit = sampling.max_tokens if self.max_new_tokens is None else min(sampling.max_tokens, self.max_new_tokens)
        options: dict[str, Any] = {"max_new_tokens": limit, "do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p or 1.0, top_k=0)
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        attention_mask = torch.ones_like(prompt)
        devices = [prompt.device.index or 0] if prompt.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = model.generate(prompt, attention_mask=attention_mask, pad_token_id=pad_id, **options)
        return output[0, prompt.shape[-1] :].tolist()  # (T_new,)

    def _torch_dtype(self) -> Any:
        """The ``dtype`` argument of ``from_pretrained``: "auto" or a ``torch.dtype``."""
        import torch

        return "auto" if self.dtype == "auto" else getattr(torch, self.dtype)

    def _torch_device(self) -> str:
        """Resolve "auto" to cuda when a GPU is visible, else cpu."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise LLMError(f"{self._where()}: device='cuda' was asked for, but torch sees no CUDA device")
        return self.device

    def _where(self) -> str:
        return f"local model {self.model!r} ({self.name})"


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """The fallback layout for tokenizers without a chat template: one ``role: content`` line per turn."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(marker in text for marker in _OOM_MARKERS)


def _describe(err: BaseException) -> str:
    """One line naming the error; out-of-memory errors say so plainly."""
    prefix = "out of memory: " if _is_oom(err) else ""
    first_line = (str(err).strip().splitlines() or [""])[0]
    return f"{prefix}{type(err).__name__}: {first_line}"
