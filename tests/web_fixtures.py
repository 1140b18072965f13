"""The web demo served on 127.0.0.1 over a tiny random pipeline (8×16×16 videos), for tests/test_web_*.py."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dysen.config import DysenVDMConfig
from dysen.pipeline import DysenVDMPipeline
from dysen.planner.rules import RulesPlanner
from dysen.web.options import DemoLimits
from dysen.web.service import DemoService
from pipeline_fixtures import TINY, HashTextEncoder  # the tiny model of the pipeline tests

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

LIMITS = DemoLimits(max_prompt_chars=200, max_steps=8, max_frames=16)
TINY_LAYOUT = dataclasses.replace(
    TINY, unet=dataclasses.replace(TINY.unet, layout=True), rgtrm=dataclasses.replace(TINY.rgtrm, layout=True)
)
"""The tiny model grounded in boxes (layout maps), as ``shapes-tiny`` is: the page draws the boxes it follows."""


def tiny_service(workdir: Path, config: DysenVDMConfig = TINY_LAYOUT, **kwargs: object) -> DemoService:
    """A ``DemoService`` over a random tiny pipeline (``TINY`` follows no boxes); the planners are the real ones."""
    pipe = DysenVDMPipeline.from_config(config, planner=RulesPlanner(), text_encoder=HashTextEncoder())
    return DemoService(pipe, workdir, limits=LIMITS, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(service: DemoService, **page: object) -> Iterator[str]:
    """The app of ``service`` on a free loopback port, closed afterwards; yields its URL."""
    from dysen.web.app import build_app, launch
    from dysen.web.options import PageOptions

    app = build_app(service, PageOptions(**page))  # type: ignore[arg-type]
    try:
        yield launch(app, service, host="127.0.0.1", port=free_port(), block=False)
    finally:
        app.close()
