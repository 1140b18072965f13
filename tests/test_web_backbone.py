"""``dysen demo --backbone DIR``: the page's service over a tiny random Wan (plan, boxes, generate under control),
the frame rule and the fixed strength, and the command's wiring (launch replaced)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e '.[dev]')")

from backbone_fixtures import save_wan  # noqa: E402
from dysen.backbone_pipeline import BackbonePipeline  # noqa: E402
from dysen.backbones.base import BackboneOptions  # noqa: E402
from dysen.data.video import probe  # noqa: E402
from dysen.web.checks import FrameRule, Settings, show_plan  # noqa: E402
from dysen.web.engines import BackboneEngine  # noqa: E402
from dysen.web.service import DemoService  # noqa: E402
from web_fixtures import LIMITS  # noqa: E402

PROMPT = "a red circle moves right, then a blue square jumps"


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_wan(tmp_path_factory.mktemp("demo-backbone") / "wan")


@pytest.fixture(scope="module")
def service(wan_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoService:
    pipe = BackbonePipeline.from_folder(wan_folder, BackboneOptions(device="cpu"))
    engine = BackboneEngine(pipe, LIMITS.max_frames, height=32, width=32)
    return DemoService(engine, tmp_path_factory.mktemp("demo"), limits=LIMITS)


def test_the_service_plans_and_the_backbone_follows_the_plan(service: DemoService) -> None:
    plan = service.plan(PROMPT, "rules", seed=2)
    assert plan.boxes is not None and plan.boxes.is_file() and len(plan.dsg.events) == 2
    settings = Settings(steps=2, frames=5, seed=2, guidance=4.0, plan_scale=2.0)
    video = service.generate(PROMPT, show_plan(plan.dsg), settings, progress=False)
    info = probe(video.mp4)
    assert (info.num_frames, info.height, info.width) == (5, 32, 32)
    assert video.dsg.boxes is not None and video.boxes is not None  # the boxes it followed, drawn
    assert [e.triplet for e in video.dsg.events] == [e.triplet for e in plan.dsg.events]
    assert "5 frames, 32x32 at 16 fps, seed 2" in video.summary and "not followed" not in video.summary
    alone = service.generate(PROMPT, "", Settings(2, 5, 2, 4.0, 0.0), progress=False)  # planned now, not followed
    assert "control strength 0: the backbone alone, the plan was not followed" in alone.summary


def test_the_page_takes_the_backbones_frames_and_a_fixed_strength(service: DemoService) -> None:
    engine = service.engine
    assert engine.frames == FrameRule(1, 4) and engine.default_frames == 13  # Wan's 81, within the limit of 16
    assert engine.plan_scale_label == "DSG control strength" and not engine.plan_scale_fixed
    assert engine.start(None, None, None).plan_scale == 1.0 and "wan backbone" in engine.title
    fixed = BackboneEngine(engine.pipe, 16, height=32, width=32, strength=3.0)  # type: ignore[attr-defined]
    assert fixed.plan_scale_fixed and fixed.start(None, None, 0.5).plan_scale == 3.0


def test_dysen_demo_backbone_wiring(wan_folder: Path, monkeypatch, tmp_path: Path, capsys) -> None:
    import dysen.web.app
    from dysen.cli import main

    launched: dict = {}
    monkeypatch.setattr(dysen.web.app, "launch", lambda app, service, **kw: launched.update(kw, service=service))
    base = ["demo", "--workdir", str(tmp_path), "--max-frames", "16"]
    argv = [*base, "--backbone", str(wan_folder), "--height", "32", "--width", "32", "--control-strength", "2"]
    assert main([*argv, "--device", "cpu", "--steps", "3"]) == 0
    engine = launched["service"].engine
    assert isinstance(engine, BackboneEngine) and engine.strength == 2.0 and (engine.height, engine.width) == (32, 32)
    from dysen.backbones.adapter import DSGAdapter, wan_adapter_config
    from dysen.models.rgtrm import RGTrmConfig

    rgtrm = RGTrmConfig(label_dim=384, dim=16, num_layers=1, num_heads=2, layout=True)
    config = wan_adapter_config(engine.pipe.backbone.transformer.config, every=1, rgtrm=rgtrm)
    DSGAdapter(config).save_pretrained(tmp_path / "adapter")
    assert main([*argv, "--adapter", str(tmp_path / "adapter")]) == 0
    adapted = launched["service"].engine
    assert adapted.pipe.adapter is not None and "DSG adapter" in adapted.title
    capsys.readouterr()
    assert main([*base, "--backbone", str(tmp_path)]) == 1
    assert "has no model_index.json" in capsys.readouterr().err
    assert main([*argv, "--height", "40"]) == 1
    assert "height must be a positive multiple of 16 for the wan backbone" in capsys.readouterr().err
    assert main([*base, "--control-strength", "2"]) == 1
    assert "--control-strength: only with --backbone DIR" in capsys.readouterr().err
