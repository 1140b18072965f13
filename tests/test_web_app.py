"""The web demo over HTTP on 127.0.0.1: plan, check, generate, limits, 10 concurrent generates, the API key's path."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e '.[dev]')")

from gradio_client import Client  # noqa: E402

from dysen.data.video import probe  # noqa: E402
from dysen.dsg.types import DynamicSceneGraph  # noqa: E402
from dysen.web.service import DemoService  # noqa: E402
from web_fixtures import served, tiny_service  # noqa: E402

PROMPT = "a red circle moves right, then a blue square jumps"
PLANNER = ("rules", "", "")  # backend, endpoint URL, model


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> DemoService:
    return tiny_service(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def client(service: DemoService) -> Iterator[Client]:
    with served(service, steps=2, concurrency=2, queue_size=16) as url:
        yield Client(url, verbose=False, download_files=False)


def _generate(client: Client, plan: str, seed: int, steps: int = 2, frames: int = 8) -> tuple:
    return client.predict(PROMPT, plan, steps, 3.0, 3.0, frames, seed, *PLANNER, api_name="/generate")


def _path(value: object) -> Path:
    """A file output of the API: a path, a FileData dict, or a component update / video dict holding one."""
    while isinstance(value, dict):
        value = next(value[key] for key in ("path", "value", "video") if key in value)
    return Path(value)  # type: ignore[arg-type]


def test_plan_then_check_an_edit(client: Client) -> None:
    plan, timeline, boxes, status = client.predict(PROMPT, *PLANNER, 0, api_name="/plan")
    dsg = DynamicSceneGraph.from_json(plan)
    assert [e.predicate for e in dsg.events] == ["moves right", "jumps"]
    assert status.startswith("**OK**: planned with rules: 2 events") and _path(timeline).suffix == ".png"
    assert _path(boxes).name == "plan.boxes.png"
    edited = plan.replace("moves right", "moves left").replace('"direction": "right"', '"direction": "left"')
    _, edited_boxes, status = client.predict(edited, PROMPT, 0, api_name="/check")
    assert status.startswith("**OK**: the plan is valid")
    assert _path(edited_boxes).read_bytes() != _path(boxes).read_bytes()  # the circle now moves the other way
    _, _, status = client.predict(plan.replace('"end": 4', '"end": 99'), PROMPT, 0, api_name="/check")
    assert status.startswith("**Error**: the plan cannot be used") and "ends at 99v" in status


def test_generate_follows_the_edited_plan_and_offers_three_downloads(client: Client) -> None:
    plan = client.predict(PROMPT, *PLANNER, 0, api_name="/plan")[0].replace("moves right", "moves left")
    video, used, mp4, gif, dsg_json, status, boxes = _generate(client, plan, seed=1)
    followed, edited = DynamicSceneGraph.from_json(used), DynamicSceneGraph.from_json(plan)
    assert followed.events == edited.events  # the edit, as written
    assert followed.boxes is not None  # the layout model followed boxes imagined for it (with their sizes)
    for imagined, given in zip(followed.graphs, edited.graphs, strict=True):
        assert set(given.attributes) <= set(imagined.attributes) and set(given.relations) <= set(imagined.relations)
    for path in (_path(video), _path(mp4), _path(gif), _path(dsg_json)):
        assert path.is_file(), path
    assert probe(_path(mp4)).num_frames == 8 and probe(_path(gif)).num_frames == 8
    assert DynamicSceneGraph.from_json(_path(dsg_json).read_text()) == followed
    assert "8 frames, 16x16" in status and "seed 1" in status
    assert _path(boxes).name == "video.boxes.png"


def test_generate_with_an_empty_plan_plans_the_prompt(client: Client) -> None:
    used = _generate(client, "", seed=0)[1]
    assert [e.predicate for e in DynamicSceneGraph.from_json(used).events] == ["moves right", "jumps"]


@pytest.mark.parametrize(
    "steps,frames,plan,message",
    [
        (9, 8, "", "Value 9 is greater than maximum value 8"),  # Gradio's own slider bounds
        (2, 7, "", "frames must be a multiple of 2"),
        (2, 32, "", "Value 32 is greater than maximum value 16"),
        (2, 8, "{oops", "the plan cannot be used: dynamic scene graph is not valid JSON"),
    ],
)
def test_requests_beyond_the_limits_fail_with_the_reason(client: Client, steps, frames, plan, message) -> None:
    with pytest.raises(Exception, match=message):
        _generate(client, plan, seed=0, steps=steps, frames=frames)


@pytest.mark.slow
def test_ten_concurrent_generates_all_complete(client: Client) -> None:
    plan = client.predict(PROMPT, *PLANNER, 0, api_name="/plan")[0]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda seed: _generate(client, plan, seed), range(10)))
    assert len(results) == 10
    mp4s = [_path(r[2]) for r in results]
    assert len(set(mp4s)) == 10 and all(probe(p).num_frames == 8 for p in mp4s)
    assert [f"seed {seed}" in r[5] for seed, r in enumerate(results)] == [True] * 10
    assert len({p.read_bytes() for p in mp4s}) > 1  # seeds differ, so do the videos


def test_server_key_is_sent_only_to_the_trusted_endpoint(fake_llm, tmp_path: Path, monkeypatch) -> None:
    """The fake LLM answers nothing (HTTP 418): the planner falls back to rules, but every request is recorded."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-secret")
    trusting = tiny_service(tmp_path / "a", trusted_url=fake_llm.base_url, demos="none")
    assert trusting.plan(PROMPT, "openai", fake_llm.base_url, "model-a").dsg.events
    assert fake_llm.requests[-1].headers["authorization"] == "Bearer sk-server-secret"
    wary = tiny_service(
        tmp_path / "b", trusted_url="http://127.0.0.1:9/v1", allowed_endpoints=[fake_llm.base_url], demos="none"
    )
    seen = len(fake_llm.requests)
    assert wary.plan(PROMPT, "openai", fake_llm.base_url, "model-b").dsg.events
    assert len(fake_llm.requests) > seen
    assert all("sk-server-secret" not in json.dumps(r.headers) for r in fake_llm.requests[seen:])


def test_demo_command_serves_on_loopback_by_default(monkeypatch, tmp_path: Path) -> None:
    """`dysen demo` wiring: the flags reach the service, the page and the launch (which is replaced here)."""
    import dysen.pipeline
    import dysen.web.app
    from dysen.cli import main

    pipe = tiny_service(tmp_path / "unused").pipe
    diffusion = dataclasses.replace(pipe.config.diffusion, steps=5, guidance=2.5, dsg_guidance=None)
    pipe.config = dataclasses.replace(pipe.config, diffusion=diffusion)
    monkeypatch.setattr(dysen.pipeline, "load_pipeline", lambda model, config, planner=None: pipe)
    launched: dict = {}

    def fake_launch(app, service, **kwargs):
        launched.update(kwargs, service=service, app=app)
        return "http://127.0.0.1:1/"

    pages = []
    build_app = dysen.web.app.build_app

    def recording_build_app(service, page):
        pages.append(page)
        return build_app(service, page)

    monkeypatch.setattr(dysen.web.app, "launch", fake_launch)
    monkeypatch.setattr(dysen.web.app, "build_app", recording_build_app)
    assert (
        main(
            ["demo", "--max-steps", "7", "--base-url", "http://127.0.0.1:8000/v1", "--workdir", str(tmp_path)]
            + ["--policy", str(tmp_path / "policy"), "--allow-endpoint", "http://LOCALHOST:8001/v1/"]
        )
        == 0
    )
    page = pages[0]  # the page starts from the model's sampling settings (an unset DSG scale = the text one)
    assert (page.steps, page.guidance, page.dsg_guidance) == (5, 2.5, 2.5)
    assert (launched["host"], launched["port"], launched["share"]) == ("127.0.0.1", None, False)
    service = launched["service"]
    assert service.limits.max_steps == 7 and service.trusted_url == "http://127.0.0.1:8000/v1"
    assert service.allowed_endpoints == ("http://127.0.0.1:8000/v1", "http://localhost:8001/v1")
    assert service.policy == tmp_path / "policy"
    assert service.workdir == tmp_path and service.frame_multiple == 2

    planner = dataclasses.replace(pipe.config.planner, policy=tmp_path / "model-policy")
    pipe.config = dataclasses.replace(pipe.config, planner=planner)
    assert main(["demo", "--workdir", str(tmp_path)]) == 0
    assert launched["service"].policy == tmp_path / "model-policy"  # the model's own RL selector by default
    assert main(["demo", "--workdir", str(tmp_path), "--demos", "shapes"]) == 0  # similarity instead
    assert (launched["service"].demos, launched["service"].policy) == ("shapes", None)


def test_a_plan_with_its_own_boxes_shows_them_not_imagined_ones(service: DemoService) -> None:
    from dysen.web.checks import show_plan

    planned = service.plan(PROMPT)
    dsg = DynamicSceneGraph.from_json(show_plan(planned.dsg))
    corner = {"x0": 0.05, "y0": 0.05, "x1": 0.25, "y1": 0.25, "angle": 0.5}
    given = [{"object": name, **corner} for name in ("circle", "square")]
    plan = json.loads(show_plan(dsg))
    plan["boxes"] = [given] * dsg.num_steps
    checked = service.check(json.dumps(plan), PROMPT, seed=0)
    assert checked.boxes is not None and checked.boxes.read_bytes() != planned.boxes.read_bytes()
    assert service.check(json.dumps(plan), PROMPT, seed=7).boxes.read_bytes() == checked.boxes.read_bytes()  # given
    assert service.plan(PROMPT, seed=7).boxes.read_bytes() != planned.boxes.read_bytes()  # imagined with the seed


def test_a_model_that_follows_no_boxes_shows_none(tmp_path: Path) -> None:
    """A text-only model (no layout maps) ignores boxes, so the page draws none and says why."""
    from dysen.web.checks import Settings
    from pipeline_fixtures import TINY

    service = tiny_service(tmp_path, config=TINY)
    planned = service.plan(PROMPT)
    assert planned.boxes is None and "follows no boxes" in planned.summary
    assert not list(tmp_path.rglob("*.boxes.png"))
    settings = Settings(steps=1, frames=8, seed=0, guidance=3.0, plan_scale=3.0)
    generated = service.generate(PROMPT, None, settings, progress=False)
    assert generated.boxes is None and generated.mp4.exists()
