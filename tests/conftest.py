"""Shared pytest fixtures, and one intra-op thread per test process.

The suite runs as ``pytest -n 2`` on 2 cores: two worker processes, each with one torch/BLAS thread,
instead of four threads fighting over two cores (set before any test module imports torch).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from fake_llm_server import FakeLLMServer

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """LLM answers and sentence embeddings are cached under a temporary folder, never the user's ~/.cache."""
    previous = os.environ.get("DYSEN_CACHE_DIR")
    os.environ["DYSEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("dysen-cache"))
    yield
    if previous is None:
        os.environ.pop("DYSEN_CACHE_DIR", None)
    else:
        os.environ["DYSEN_CACHE_DIR"] = previous


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A scripted OpenAI-compatible server on 127.0.0.1 (script it with ``fake_llm.push(Reply(...))``)."""
    with FakeLLMServer() as server:
        yield server
