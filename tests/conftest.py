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


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A scripted OpenAI-compatible server on 127.0.0.1 (script it with ``fake_llm.push(Reply(...))``)."""
    with FakeLLMServer() as server:
        yield server
