"""Issue 22 items 5-10: the LLM planner and its cache against a misbehaving server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

import dysen.planner.embed as embed
from dysen.dsg import Event, events_to_dsg
from dysen.planner.backends import LLMError, OpenAIBackend
from dysen.planner.cache import CachedAnswer, CachedBackend, ResponseCache
from dysen.planner.dysen import DysenPlanner, PlanningError
from fake_llm_server import FakeLLMServer, Reply

MESSAGES = [{"role": "user", "content": "input: a dog runs, then jumps"}]
PROMPT = "a dog runs, then jumps"
PLAN = "(dog, runs, -, (0v, 1v))"
FALLBACK = events_to_dsg([Event(agent="scene", predicate="stays", start=0, end=1)])


class Fallback:
    def plan(self, prompt, demonstrations=None):
        return FALLBACK


def backend(server: FakeLLMServer, **kwargs) -> OpenAIBackend:
    settings = {"max_retries": 0, "sleep": lambda _: None, **kwargs}
    return OpenAIBackend("fake-model", base_url=server.base_url, **settings)


def planner(llm, **kwargs) -> DysenPlanner:
    return DysenPlanner(llm, imagination=False, polish=False, max_repairs=1, **kwargs)


# 5. One endpoint's answers never serve another's.


def test_5_cache_key_includes_the_endpoint(tmp_path):
    with FakeLLMServer([Reply("from A")]) as a, FakeLLMServer([Reply("from B")]) as b:
        cache = ResponseCache(tmp_path / "llm.sqlite")
        assert CachedBackend(backend(a), cache).complete(MESSAGES).text == "from A"
        assert CachedBackend(backend(b), cache).complete(MESSAGES).text == "from B"
        assert len(b.requests) == 1
        slash = OpenAIBackend("fake-model", base_url=a.base_url.upper().replace("/V1", "/v1/"))
        assert CachedBackend(slash, cache).complete(MESSAGES).text == "from A"  # the same endpoint, normalised


def test_5_old_caches_keyed_without_the_endpoint_are_emptied(tmp_path):
    import sqlite3

    path = tmp_path / "llm.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, model TEXT NOT NULL, "
                     "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)")
        conn.execute("INSERT INTO responses VALUES ('k', 'poisoned', 'm', 1, 1, 0.0)")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    with ResponseCache(path) as cache:
        assert len(cache) == 0 and cache.get("k") is None
        cache.put("k", CachedAnswer("fresh", "m", 1, 1, 1.0))
        assert cache.get("k").text == "fresh"


def test_5_demo_refuses_endpoints_outside_the_whitelist(fake_llm, tmp_path):
    from dysen.web.checks import DemoInputError
    from web_fixtures import tiny_service

    with FakeLLMServer() as other:
        service = tiny_service(tmp_path / "a", trusted_url=fake_llm.base_url, demos="none")
        with pytest.raises(DemoInputError, match="--allow-endpoint"):
            service.planner("openai", other.base_url, "model-a")
        service.planner("openai", fake_llm.base_url + "/", "model-a")  # its own, normalised
        allowing = tiny_service(
            tmp_path / "b", trusted_url=fake_llm.base_url, allowed_endpoints=[other.base_url], demos="none"
        )
        allowing.planner("openai", other.base_url, "model-a")
        with pytest.raises(DemoInputError, match="not allowed"):
            tiny_service(tmp_path / "c", demos="none").planner("openai", other.base_url, "model-a")
    assert not other.requests


# 6. Only answers that parsed are stored, and the cache is bounded.


def test_6_unusable_answers_are_not_cached(fake_llm, tmp_path):
    cache = ResponseCache(tmp_path / "llm.sqlite")
    fake_llm.push(Reply("garbage"), Reply("more garbage"))
    assert planner(CachedBackend(backend(fake_llm), cache), fallback=Fallback()).plan(PROMPT) == FALLBACK
    assert len(cache) == 0
    fake_llm.push(Reply(PLAN))
    assert planner(CachedBackend(backend(fake_llm), cache)).plan(PROMPT).events[0].agent == "dog"
    assert len(fake_llm.requests) == 3 and len(cache) == 1


def test_6_cache_size_is_bounded(tmp_path):
    from dysen.planner.cache import CacheLimits

    limits = CacheLimits(max_answer_chars=1000, max_entries=3, max_total_chars=2500)
    cache = ResponseCache(tmp_path / "llm.sqlite", limits=limits)
    cache.put("huge", CachedAnswer("x" * 1001, "m", 1, 1, 0.0))
    assert cache.get("huge") is None
    for n in range(5):
        cache.put(f"k{n}", CachedAnswer(str(n) * 10, "m", 1, 1, float(n)))
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") is not None
    for n in range(3):
        cache.put(f"big{n}", CachedAnswer(str(n) * 1000, "m", 1, 1, 10.0 + n))
    assert [cache.get(f"big{n}") is not None for n in range(3)] == [False, True, True]


# 7. Malformed answers: repair, then fallback (or a clear error).


@pytest.mark.parametrize(
    "bad",
    [
        Reply(body=b"<html>502 Bad Gateway</html>"),
        Reply('{"events": [{"agent": "dog", "predicate": "runs", "start": 0, "end": 1' + "0" * 5000 + "}]}"),
        Reply(body=b'{"id": "x", "choices": [], "usage": {"prompt_tokens": 1' + b"0" * 5000 + b"}}"),
    ],
    ids=["html-200", "huge-int-in-answer", "huge-int-in-body"],
)
def test_7_malformed_answers_are_repaired_then_fall_back(fake_llm, bad):
    output = "json" if "events" in bad.text else "text"
    good = '{"events": [{"agent": "dog", "predicate": "runs", "start": 0, "end": 1}]}' if output == "json" else PLAN
    fake_llm.push(bad, Reply(good))
    assert planner(backend(fake_llm), output=output).plan(PROMPT).events[0].agent == "dog"
    fake_llm.push(bad, bad)
    assert planner(backend(fake_llm), output=output, fallback=Fallback()).plan(PROMPT) == FALLBACK
    fake_llm.push(bad, bad)
    with pytest.raises(PlanningError, match="action planning"):
        planner(backend(fake_llm), output=output).plan(PROMPT)


# 8. --timeout is a deadline per request; a plan has a total budget.


def test_8_timeout_is_a_deadline_per_request(fake_llm):
    fake_llm.push(Reply("(dog, runs, -, (0v, 1v))", drip_s=0.3))
    start = time.monotonic()
    with pytest.raises(LLMError, match="within 1 s"):
        backend(fake_llm, timeout_s=1.0).complete(MESSAGES)
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_8_timeout_must_be_a_finite_positive_number(timeout):
    with pytest.raises(LLMError, match="timeout_s"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", timeout_s=timeout)


@pytest.fixture
def warm_openai() -> None:
    """Import the SDK first: its first import (about a second) would count against the tiny budgets here."""
    import openai  # noqa: F401


def test_8_a_plan_has_a_total_budget(fake_llm, warm_openai):
    fake_llm.push(*[Reply("garbage", delay_s=0.4)] * 2, Reply(PLAN))
    start = time.monotonic()
    with pytest.raises(PlanningError, match="budget"):
        DysenPlanner(backend(fake_llm), imagination=False, polish=False, max_repairs=5, budget_s=0.6).plan(PROMPT)
    assert time.monotonic() - start < 1.5 and len(fake_llm.requests) == 2


def test_8_the_budget_also_cuts_retries_short(fake_llm, warm_openai):
    fake_llm.push(*[Reply("late", delay_s=0.6)] * 6)
    slow = backend(fake_llm, timeout_s=0.4, max_retries=5)
    start = time.monotonic()
    with pytest.raises(PlanningError, match="budget"):
        DysenPlanner(slow, imagination=False, polish=False, budget_s=1.0).plan(PROMPT)
    assert time.monotonic() - start < 1.6 and len(fake_llm.requests) <= 3


# 9. The sentence-embedding cache under threads.


class _TableEmbedder(embed.SentenceEmbedder):
    def _embed(self, texts):
        return torch.nn.functional.normalize(torch.rand(len(texts), 4), dim=-1)


def test_9_embedding_cache_is_safe_under_threads(tmp_path, monkeypatch):
    write, active, most = embed._write_safetensors_atomic, [0], [0]
    guard = threading.Lock()

    def slow_write(path, tensors, metadata):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.01)
        write(path, tensors, metadata)
        with guard:
            active[0] -= 1

    monkeypatch.setattr(embed, "_write_safetensors_atomic", slow_write)
    embedder, errors = _TableEmbedder(cache_dir=tmp_path), []

    def work(n: int) -> None:
        try:
            for k in range(5):
                embedder.encode([f"text {n} {k}", "shared"])
        except Exception as err:  # noqa: BLE001 - the test reports any failure
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and most[0] == 1
    assert len(embed._read_cache(embedder.cache_path, embedder.name)) == 41


# 10. No key in any output.


def test_10_vlm_errors_redact_the_echoed_key(fake_llm, tmp_path, monkeypatch):
    import data_fixtures as fx
    from dysen.annotate import VLMAnnotator, VLMOptions, annotate
    from dysen.data.datasets import load_records

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123456")
    fx.mp4(tmp_path / "videos" / "clip.mp4", 20)
    records = load_records("folder", tmp_path / "videos")
    fake_llm.push(Reply("invalid key", status=401, echo_auth=True))
    annotator = VLMAnnotator(VLMOptions("fake-vlm", base_url=fake_llm.base_url, steps=4, image_size=32, max_retries=0))
    annotate(records, annotator, tmp_path / "gold.jsonl", source="vlm", progress=False)
    written = (tmp_path / "gold.jsonl").read_text()
    assert "invalid key" in written and "sk-secret" not in written and "Bearer ***" in json.loads(written)["error"]


def test_10_redaction_is_one_function():
    from dysen.planner.backends.redact import redact

    text = "Authorization: Bearer sk-abc.DEF_123 and api_key=sk-proj-xyz and x-api-key: abc123"
    assert redact(text, secrets=("abc123",)) == "Authorization: Bearer *** and api_key=*** and x-api-key: ***"
    assert "hunter2" not in redact("your key hunter2 is wrong", secrets=("hunter2",))
