"""Shared pytest fixtures, one intra-op thread per test process, and a Gradio cache of each process's own.

The suite runs as ``pytest -n 2`` on 2 cores: two worker processes, each with one torch/BLAS thread,
instead of four threads fighting over two cores (set before any test module imports torch). Gradio keeps the
files it serves in ``GRADIO_TEMP_DIR`` (default: the system's ``/tmp/gradio``) under a hash of their bytes, and
an app's cache sweep removes what it made there: two workers serving the same tiny model made the same video
file, and one worker's sweep took the other's away. Each process gets its own folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from fake_llm_server import FakeLLMServer

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="dysen-tests-gradio-")


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
