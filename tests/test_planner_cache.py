"""The persistent LLM response cache: hits skip the server, keys cover every input, files stay sound."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysen.errors import DysenError
from dysen.planner.backends import LLMError, LLMSampling, OpenAIBackend
from dysen.planner.cache import (
    CachedAnswer,
    CachedBackend,
    CacheError,
    ModelPrice,
    ResponseCache,
    default_cache_path,
)
from fake_llm_server import FakeLLMServer, Reply

MESSAGES = [{"role": "user", "content": "input: a dog runs, then jumps"}]


def backend(server: FakeLLMServer, model: str = "fake-model") -> OpenAIBackend:
    return OpenAIBackend(model, base_url=server.base_url, max_retries=0, sleep=lambda _: None)


@pytest.fixture
def cache(tmp_path) -> Iterator[ResponseCache]:
    with ResponseCache(tmp_path / "llm.sqlite") as opened:
        yield opened


def test_second_identical_call_makes_no_request_even_from_a_new_process_view(fake_llm, cache):
    fake_llm.push(Reply("(dog, runs, -, (0v, 1v))", prompt_tokens=30, completion_tokens=12))
    cached = CachedBackend(backend(fake_llm), cache)
    first = cached.complete(MESSAGES)
    second = cached.complete(MESSAGES)
    assert len(fake_llm.requests) == 1
    assert not first.cached and second.cached and second.attempts == 0
    assert (second.text, second.prompt_tokens, second.completion_tokens, second.model) == (
        first.text,
        30,
        12,
        "fake-model",
    )
    assert (cached.stats.hits, cached.stats.misses, cached.stats.tokens_saved) == (1, 1, 42)

    with ResponseCache(cache.path) as reopened:
        assert CachedBackend(backend(fake_llm), reopened).complete(MESSAGES).cached
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"sampling": LLMSampling(temperature=0.2)},
        {"sampling": LLMSampling(seed=1)},
        {"model": "other-model"},
        {"namespace": "v2"},
        {"json_schema": {"type": "object"}},
        {"messages": [{"role": "user", "content": "input: a dog runs, then sits"}]},
    ],
)
def test_any_changed_input_is_a_miss(fake_llm, cache, change):
    fake_llm.push(Reply("first"), Reply("second"))
    CachedBackend(backend(fake_llm), cache).complete(MESSAGES)
    again = CachedBackend(
        backend(fake_llm, change.get("model", "fake-model")), cache, namespace=change.get("namespace", "v1")
    )
    completion = again.complete(
        change.get("messages", MESSAGES),
        sampling=change.get("sampling", LLMSampling()),
        json_schema=change.get("json_schema"),
    )
    assert completion.text == "second" and not completion.cached
    assert len(fake_llm.requests) == 2 and len(cache) == 2


def test_failures_are_not_cached(fake_llm, cache):
    fake_llm.push(Reply("bad request", status=400), Reply("good"))
    cached = CachedBackend(backend(fake_llm), cache)
    with pytest.raises(LLMError):
        cached.complete(MESSAGES)
    assert len(cache) == 0
    assert cached.complete(MESSAGES).text == "good"


def test_disabled_cache_bypasses_reads_and_writes(fake_llm, cache):
    fake_llm.push(Reply("a"), Reply("b"))
    cached = CachedBackend(backend(fake_llm), cache)
    cached.complete(MESSAGES)
    bypass = CachedBackend(backend(fake_llm), cache, enabled=False)
    assert bypass.complete(MESSAGES).text == "b"
    assert len(fake_llm.requests) == 2 and len(cache) == 1
    assert bypass.stats.hits == bypass.stats.misses == 0


def test_cost_accounting_uses_the_price_table_and_reports_unknown_models_as_none(fake_llm, cache):
    fake_llm.push(Reply("x", prompt_tokens=1000, completion_tokens=500), Reply("y"))
    priced = CachedBackend(backend(fake_llm), cache, prices={"fake-model": ModelPrice(2.0, 8.0)})
    priced.complete(MESSAGES)
    priced.complete(MESSAGES)
    assert priced.stats.cost_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    assert priced.stats.cost_saved_usd == pytest.approx(priced.stats.cost_usd)

    unpriced = CachedBackend(backend(fake_llm), cache, namespace="other")
    unpriced.complete(MESSAGES)
    assert unpriced.stats.cost_usd is None and unpriced.stats.misses == 1


def _hammer(path: str, worker: int, count: int, barrier) -> None:
    """One writer process: wait for the others, open the new file with them, write its own keys and shared ones."""
    barrier.wait(timeout=60)  # a writer that died early breaks the barrier instead of hanging the rest
    cache = ResponseCache(path)  # first opens race to switch the file to WAL
    for i in range(count):
        cache.put(f"w{worker}-{i}", CachedAnswer(f"text {worker} {i}", "m", i, worker, 0.0))
        cache.put(f"shared-{i % 5}", CachedAnswer(f"shared from {worker}", "m", 0, 0, 0.0))
        assert cache.get(f"w{worker}-{i}").text == f"text {worker} {i}"
    cache.close()


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    path, workers, count = str(tmp_path / "shared.sqlite"), 4, 60
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    processes = [context.Process(target=_hammer, args=(path, w, count, barrier)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in processes] == [0] * workers

    with ResponseCache(path) as cache:
        assert len(cache) == workers * count + 5
        for w in range(workers):
            for i in range(count):
                assert cache.get(f"w{w}-{i}") == CachedAnswer(f"text {w} {i}", "m", i, w, 0.0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_threads_can_share_one_cache(cache):
    def write(worker: int) -> None:
        for i in range(50):
            cache.put(f"{worker}-{i}", CachedAnswer("t", "m", 0, 0, 0.0))
            assert cache.get(f"{worker}-{i}") is not None

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 200


def test_non_sqlite_file_is_a_clear_cache_error(tmp_path):
    path = tmp_path / "llm.sqlite"
    path.write_bytes(b"this is not a database, just text " * 100)
    expected = f"cannot open the LLM cache {path}: file is not a database; .*delete it"
    with pytest.raises(CacheError, match=expected) as info:
        ResponseCache(path)
    assert isinstance(info.value, DysenError)


def test_directory_in_place_of_the_file_is_a_clear_cache_error(tmp_path):
    with pytest.raises(CacheError, match="cannot open the LLM cache"):
        ResponseCache(tmp_path)


def test_cache_from_a_newer_dysen_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(CacheError, match="schema 99, newer"):
        ResponseCache(path)


def test_default_path_honours_dysen_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DYSEN_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_path() == tmp_path / "c" / "llm.sqlite"
    monkeypatch.delenv("DYSEN_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_path() == Path(tmp_path) / ".cache" / "dysen" / "llm.sqlite"
    assert ResponseCache().path == default_cache_path() and default_cache_path().exists()
