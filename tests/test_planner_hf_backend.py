"""HFChatBackend against a tiny random Llama and a tokenizer trained in the test: nothing is downloaded."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from dysen.planner.backends import ChatBackend, LLMError, LLMSampling

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

MARKER = "<|assistant|>"
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}" + MARKER + "{% endif %}"
)
CORPUS = [
    "a red circle moves right",
    "a blue square jumps over the circle",
    "system user assistant : input output",
    "you are a helpful assistant that plans actions",
]
MESSAGES = [
    {"role": "system", "content": "you are a helpful assistant"},
    {"role": "user", "content": "input : a red circle moves right"},
]
SPECIALS = ["<unk>", "<pad>", "<eos>", "<|system|>", "<|user|>", MARKER]


def _save_model(directory: Path, chat_template: str | None) -> Path:
    """Train a word-level tokenizer on ``CORPUS``, build a random 2-layer Llama, save both to ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<eos>",
        additional_special_tokens=SPECIALS[3:],
    )
    tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_model(tmp_path_factory.mktemp("tiny-llama"), TEMPLATE)


@pytest.fixture(scope="module")
def backend(model_dir: Path):
    from dysen.planner.backends import HFChatBackend

    return HFChatBackend(str(model_dir))


def test_complete_returns_new_text_and_token_counts(backend, model_dir):
    assert isinstance(backend, ChatBackend) and backend.name == "hf"
    completion = backend.complete(MESSAGES, sampling=LLMSampling(max_tokens=8), json_schema={"type": "object"})
    assert isinstance(completion.text, str)
    assert 1 <= completion.completion_tokens <= 8
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert completion.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert (completion.attempts, completion.cached, completion.model) == (1, False, str(model_dir))
    assert "<|user|>" not in completion.text and MARKER not in completion.text
    assert backend.stats.completion_tokens >= completion.completion_tokens


def test_greedy_decoding_is_deterministic(backend):
    first = backend.complete(MESSAGES, sampling=LLMSampling(max_tokens=12))
    second = backend.complete(MESSAGES, sampling=LLMSampling(max_tokens=12))
    assert first == second


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(backend):
    sampling = LLMSampling(temperature=1.5, max_tokens=16, seed=7)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    runs = [backend.complete(MESSAGES, sampling=sampling).text for _ in range(2)]
    assert torch.equal(torch.rand(1), before)
    assert runs[0] == runs[1]
    seeds = [LLMSampling(temperature=1.5, max_tokens=8, seed=seed) for seed in range(4)]
    others = {backend.complete(MESSAGES, sampling=s).text for s in seeds}
    assert len(others) > 1


def test_chat_template_is_applied(backend, monkeypatch):
    seen: list[list[int]] = []
    model = backend._model
    original = model.generate

    def spy(input_ids, **kwargs):
        seen.append(input_ids[0].tolist())
        return original(input_ids, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    backend.complete(MESSAGES, sampling=LLMSampling(max_tokens=2))
    tokenizer = backend._tokenizer
    ids = seen[0]
    assert ids[-1] == tokenizer.convert_tokens_to_ids(MARKER)
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|system|>")
    assert tokenizer.convert_tokens_to_ids("<|user|>") in ids


def test_tokenizer_without_template_falls_back_to_plain_layout(tmp_path, caplog):
    from dysen.planner.backends.hf_local import HFChatBackend, plain_prompt

    backend = HFChatBackend(str(_save_model(tmp_path / "plain", None)))
    with caplog.at_level(logging.WARNING, logger="dysen.planner.backends.hf_local"):
        first = backend.complete(MESSAGES, sampling=LLMSampling(max_tokens=4))
        backend.complete(MESSAGES, sampling=LLMSampling(max_tokens=4))
    warnings = [r for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(warnings) == 1
    expected = "system: you are a helpful assistant\nuser: input : a red circle moves right\nassistant:"
    assert plain_prompt(MESSAGES) == expected
    assert first.prompt_tokens == len(backend._tokenizer(expected, add_special_tokens=False)["input_ids"])


def test_missing_path_raises_llm_error_naming_it(tmp_path):
    from dysen.planner.backends import HFChatBackend

    missing = tmp_path / "no" / "such-model"
    with pytest.raises(LLMError, match="does not exist") as info:
        HFChatBackend(str(missing)).complete(MESSAGES)
    assert str(missing) in str(info.value)


def test_uncached_hub_id_says_local_files_only_blocked_the_download(monkeypatch, tmp_path):
    from dysen.planner.backends import HFChatBackend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LLMError, match="local_files_only=True blocked a download"):
        HFChatBackend("dysen-test/not-a-model").complete(MESSAGES)


def test_bad_settings_are_rejected():
    from dysen.planner.backends import HFChatBackend

    for kwargs in ({"device": "tpu"}, {"dtype": "int8"}, {"max_new_tokens": 0}):
        with pytest.raises(LLMError):
            HFChatBackend("x", **kwargs)


def test_importing_backends_does_not_import_torch_or_transformers():
    code = (
        "import sys, dysen.planner.backends as b; b.HFChatBackend; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
