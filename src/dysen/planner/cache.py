"""A persistent, content-addressed cache of LLM answers, with token and cost accounting.

The original Dysen memoises answers in memory only (``lru_cache``, dysen_spec.md §2), so every run
pays again; peers key their caches by prompt text alone (peers.md §4.3). Here an answer is stored in
SQLite under the sha256 of everything that shapes it: backend name, endpoint (normalised ``base_url``, so one
server's answers never serve another's, issue 22), model, prompt-template version (``namespace``),
messages, sampling and JSON schema. Change any of them and the cache misses.

Only answers the caller accepted are stored (``validate``: the planner's reader), so a broken server
cannot leave an answer that falls back forever; a stored answer the reader now refuses is dropped and asked
again. The file is bounded by ``CacheLimits``: oversized answers are not stored, and the oldest entries
are evicted beyond a count or a total size.

The database runs in WAL mode with a busy timeout, so several processes (``plan_many`` workers, parallel
benchmark shards) can read and write one file at once. A file that is not such a database raises
``CacheError`` instead of a bare ``sqlite3`` traceback.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dysen.errors import DysenError
from dysen.planner.backends.base import (
    PAPER_SAMPLING,
    ChatBackend,
    Completion,
    LLMSampling,
    Messages,
    normalize_endpoint,
    request_key,
)

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the cache database; a file written by a newer dysen is refused. Version 2 keys on
the endpoint: opening a version-1 file empties it (its answers may come from any endpoint)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL,
    chars INTEGER NOT NULL
)
"""


_INDEX = "CREATE INDEX IF NOT EXISTS responses_created ON responses (created)"


class CacheError(DysenError):
    """The LLM response cache cannot be opened, read or written."""


@dataclass(frozen=True)
class CacheLimits:
    """How big the response cache may grow (issue 22: one prompt's 20 MB answers made an 80 MB file)."""

    max_answer_chars: int = 200_000
    """Longer answers are returned but not stored (a planner answer is a few thousand characters)."""
    max_entries: int = 100_000
    """Beyond this many answers the oldest are evicted."""
    max_total_chars: int = 256_000_000
    """Beyond this many characters of answers in all, the oldest are evicted."""

    def __post_init__(self) -> None:
        if min(self.max_answer_chars, self.max_entries, self.max_total_chars) < 1:
            raise CacheError(f"every cache limit must be >= 1, got {self}")


def default_cache_path() -> Path:
    """``$DYSEN_CACHE_DIR/llm.sqlite``, else ``~/.cache/dysen/llm.sqlite``."""
    directory = os.environ.get("DYSEN_CACHE_DIR")
    return Path(directory or Path.home() / ".cache" / "dysen") / "llm.sqlite"


@dataclass(frozen=True)
class CachedAnswer:
    """One stored answer: its text, the model that gave it, its token usage and when it was stored."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    created: float


class ResponseCache:
    """Answers stored in one SQLite file, safe for several threads and processes at once."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_s: float = 30.0,
        limits: CacheLimits = CacheLimits(),
    ) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.busy_timeout_s = busy_timeout_s
        self.limits = limits
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        with self._lock:
            self._connection()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def __len__(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM responses")[0][0])

    def get(self, key: str) -> CachedAnswer | None:
        """The answer stored under ``key``, if any."""
        rows = self._execute(
            "SELECT text, model, prompt_tokens, completion_tokens, created FROM responses WHERE key = ?", (key,)
        )
        return CachedAnswer(*rows[0]) if rows else None

    def put(self, key: str, answer: CachedAnswer) -> bool:
        """Store ``answer`` under ``key``, replacing any older one, then evict the oldest beyond the limits;
        False (nothing stored) when the answer is longer than ``limits.max_answer_chars``."""
        if len(answer.text) > self.limits.max_answer_chars:
            return False
        self._execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, answer.text, answer.model, answer.prompt_tokens, answer.completion_tokens, answer.created,
             len(answer.text)),
        )  # fmt: skip
        self._evict()
        return True

    def delete(self, key: str) -> None:
        """Forget the answer under ``key``, if any."""
        self._execute("DELETE FROM responses WHERE key = ?", (key,))

    def _evict(self) -> None:
        """Drop the oldest answers beyond ``limits.max_entries``, then beyond ``limits.max_total_chars``."""
        count, total = self._execute("SELECT COUNT(*), TOTAL(chars) FROM responses")[0]
        if count <= self.limits.max_entries and total <= self.limits.max_total_chars:
            return
        self._execute(
            "DELETE FROM responses WHERE key IN (SELECT key FROM responses ORDER BY created DESC, key LIMIT -1 "
            "OFFSET ?)",
            (self.limits.max_entries,),
        )
        self._execute(
            "DELETE FROM responses WHERE key IN (SELECT key FROM (SELECT key, SUM(chars) OVER "
            "(ORDER BY created DESC, key ROWS UNBOUNDED PRECEDING) AS running FROM responses) WHERE running > ?)",
            (self.limits.max_total_chars,),
        )

    def close(self) -> None:
        """Close this process's connection; the cache reopens it if used again."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (its own transaction) and return all its rows."""
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.Error as err:
                raise CacheError(f"LLM cache {self.path} failed: {err}; {self._advice(err)}") from err

    def _advice(self, err: Exception) -> str:
        """What to do about a failure: wait longer for a lock, or stop using a file that is not a dysen cache."""
        if "locked" in str(err):
            return f"another process held it longer than busy_timeout_s={self.busy_timeout_s:g}; raise that"
        return "it must be an SQLite file written by dysen: delete it, pass another path, or run with --no-cache"

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (a forked child opens its own), created with the schema on first use."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._set_up_retrying(conn)
        except (sqlite3.Error, OSError) as err:
            raise CacheError(f"cannot open the LLM cache {self.path}: {err}; {self._advice(err)}") from err
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _set_up_retrying(self, conn: sqlite3.Connection) -> None:
        """Set up the file, retrying while other processes set it up too.

        Switching a new file to WAL upgrades a shared lock to an exclusive one; when two processes race to
        do that, SQLite answers ``database is locked`` at once instead of calling the busy handler (it
        would deadlock otherwise), so the busy timeout alone does not cover first opens.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return self._set_up(conn)
            except sqlite3.Error as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """Check the schema version, then turn on WAL and create the table where not done yet."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise CacheError(
                f"LLM cache {self.path} has schema {version}, newer than this dysen's "
                f"{SCHEMA_VERSION}; upgrade dysen or use another cache path"
            )
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")  # one process upgrades; the others then see the new version
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 1:  # keys without the endpoint: any of them may be another server's answer
                    conn.execute("DROP TABLE IF EXISTS responses")
                if version < SCHEMA_VERSION:
                    conn.execute(_SCHEMA)
                    conn.execute(_INDEX)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million prompt and completion tokens of one model (from your provider's price page)."""

    prompt_per_mtok: float
    completion_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for this many tokens."""
        return (prompt_tokens * self.prompt_per_mtok + completion_tokens * self.completion_per_mtok) / 1e6


@dataclass(frozen=True)
class CacheStats:
    """Hits and misses of a ``CachedBackend``; costs are ``None`` when some model had no price."""

    hits: int = 0
    misses: int = 0
    tokens_saved: int = 0
    cost_usd: float | None = 0.0
    cost_saved_usd: float | None = 0.0


class CachedBackend:
    """A backend that answers repeated requests from a ``ResponseCache`` with no call to ``inner``."""

    def __init__(
        self,
        inner: ChatBackend,
        cache: ResponseCache,
        *,
        namespace: str = "v1",
        enabled: bool = True,
        prices: Mapping[str, ModelPrice] | None = None,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.namespace = namespace
        self.enabled = enabled
        self.prices = dict(prices or {})
        self.name = inner.name
        self.model = inner.model
        self.endpoint = _endpoint_of(inner)
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def __repr__(self) -> str:
        return f"CachedBackend({self.inner!r}, {self.cache!r}, namespace={self.namespace!r}, enabled={self.enabled})"

    @property
    def stats(self) -> CacheStats:
        """Totals since this wrapper was made (a disabled cache counts nothing)."""
        return self._stats

    def complete(
        self,
        messages: Messages,
        *,
        sampling: LLMSampling = PAPER_SAMPLING,
        json_schema: Mapping[str, Any] | None = None,
        validate: Callable[[str], bool] | None = None,
    ) -> Completion:
        """The stored answer when there is one, else ``inner``'s answer, which is then stored.

        With ``validate``, only an answer it accepts is stored, and a stored one it refuses is dropped and asked
        again."""
        if not self.enabled:
            return self.inner.complete(messages, sampling=sampling, json_schema=json_schema)
        key = request_key(
            messages,
            sampling,
            json_schema,
            backend=self.name,
            endpoint=self.endpoint,
            model=self.model,
            namespace=self.namespace,
        )
        stored = self.cache.get(key)
        if stored is not None and (validate is None or validate(stored.text)):
            self._count(stored.model, stored.prompt_tokens, stored.completion_tokens, hit=True)
            return Completion(stored.text, stored.prompt_tokens, stored.completion_tokens, 0, True, stored.model)
        if stored is not None:
            self.cache.delete(key)
        completion = self.inner.complete(messages, sampling=sampling, json_schema=json_schema)
        if validate is None or validate(completion.text):
            answer = CachedAnswer(
                completion.text, completion.model, completion.prompt_tokens, completion.completion_tokens, time.time()
            )
            self.cache.put(key, answer)
        self._count(completion.model, completion.prompt_tokens, completion.completion_tokens, hit=False)
        return completion

    def _count(self, model: str, prompt_tokens: int, completion_tokens: int, *, hit: bool) -> None:
        """Add one hit or miss to the stats, pricing it by the answering model, else the configured one."""
        price = self.prices.get(model) or self.prices.get(self.model)
        cost = price.cost(prompt_tokens, completion_tokens) if price is not None else None
        with self._lock:
            s = self._stats
            if hit:
                saved = None if cost is None or s.cost_saved_usd is None else s.cost_saved_usd + cost
                self._stats = replace(
                    s,
                    hits=s.hits + 1,
                    tokens_saved=s.tokens_saved + prompt_tokens + completion_tokens,
                    cost_saved_usd=saved,
                )
            else:
                spent = None if cost is None or s.cost_usd is None else s.cost_usd + cost
                self._stats = replace(s, misses=s.misses + 1, cost_usd=spent)


def _endpoint_of(backend: ChatBackend) -> str:
    """Where ``backend`` gets its answers, for the cache key: the normalised URL of an HTTP backend, else ''
    (replays and local models have no endpoint; their name and model tell them apart)."""
    if not hasattr(backend, "base_url"):
        return ""
    return normalize_endpoint(backend.base_url)
