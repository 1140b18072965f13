"""Issue 22 items 1 and 4: DSGs are bounded (``DSGLimits``), their picture is bounded in pixels and memory, and
imagining a layout scales with the plan and shows progress on long ones."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from dysen.dsg import DynamicSceneGraph, Event, parse_dsg, read_dsgs, types
from dysen.dsg.types import dsg_json_schema
from dysen.errors import DSGError, DysenError
from dysen.planner.layout import imagine_layout

LIMITS = getattr(types, "LIMITS", None) or types.DSGLimits()
_RENDER = """
import json, resource, sys, time
from PIL import Image
from dysen.dsg import DynamicSceneGraph
from dysen.dsg.render import save_timeline
dsg = DynamicSceneGraph.from_json(open(sys.argv[1]).read())
started = time.process_time()
save_timeline(dsg, sys.argv[2], title="x" * 5000)
seconds = time.process_time() - started
width, height = Image.open(sys.argv[2]).size
# VmHWM: this process's own peak (ru_maxrss also counts the parent's peak, carried over by fork and exec on Linux)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rss_mb = int(status["VmHWM"].split()[0]) / 1024 if "VmHWM" in status else rss_mb
print(json.dumps({"rss_mb": rss_mb, "size": [width, height], "cpu_s": seconds}))
"""


def _plan(num_events: int, steps: int = 64) -> dict:
    """A plan of ``num_events`` events by up to 200 agents with long names, spread over ``steps`` steps."""
    events = [
        {"agent": f"{'very ' * 16}large circle {i % 200}", "predicate": "moves right", "start": i % steps,
         "end": i % steps + 1}  # fmt: skip
        for i in range(num_events)
    ]
    return {"events": events, "graphs": [{"objects": []} for _ in range(steps)]}


def test_item1_plans_are_bounded_everywhere(tmp_path):
    with pytest.raises(DSGError, match=r"events list has 300; the limit is 256 \(DSGLimits.max_events\)"):
        DynamicSceneGraph.from_dict(_plan(300))
    name = "a" * 1_000_000
    started = time.perf_counter()
    with pytest.raises(DSGError, match="1000000 characters; the limit is 100"):
        DynamicSceneGraph.from_dict({"events": [{"agent": name, "predicate": "runs", "start": 0, "end": 1}],
                                     "graphs": [{"objects": [name]}]})  # fmt: skip
    with pytest.raises(DSGError, match="1000018 characters; the limit is 1000000"):
        parse_dsg(f"({name}, runs, (0v, 1v))")
    with pytest.raises(DSGError, match="max_label_chars"):
        parse_dsg(f"({name[:101]}, runs, (0v, 1v))")
    with pytest.raises(DSGError, match="objects list has 65"):
        DynamicSceneGraph.from_dict({"graphs": [{"objects": [f"o{i}" for i in range(65)]}]})
    assert time.perf_counter() - started < 2.0
    lines = "\n".join(f"(man {i}, walks, (0v, 1v))" for i in range(300))
    with pytest.raises(DSGError, match="300 events"):
        parse_dsg(lines)
    with pytest.raises(DSGError, match="objects list has 200; the limit is 64"):
        parse_dsg("0 SG: " + ", ".join(f"(thing {i}, left of, other {i})" for i in range(100)))
    with pytest.raises(DSGError, match="max_label_chars"):
        parse_dsg(f"0 SG: ({name[:101]}, red)")
    with pytest.raises(DSGError, match="at most 256"):
        parse_dsg("\n".join(f"{m} SG: none" for m in range(300)))
    with pytest.raises(DSGError, match="lines"):
        parse_dsg("\n" * 1_000_000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(_plan(300)))
    with pytest.raises(DSGError, match="max_events"):
        list(read_dsgs(path))
    schema = dsg_json_schema()
    assert schema["properties"]["events"]["maxItems"] == LIMITS.max_events
    assert schema["$defs"]["Event"]["properties"]["agent"]["maxLength"] == LIMITS.max_label_chars


def test_item1_the_demo_plan_check_uses_the_bounds():
    from dysen.web.checks import DemoInputError, read_plan
    from dysen.web.options import DemoLimits

    text = "\n".join(f"(c{i}, moves right, (0v, 1v))" for i in range(300))
    assert len(text) < DemoLimits().max_plan_chars
    with pytest.raises(DemoInputError, match="256"):
        read_plan(text, DemoLimits())


def test_item1_the_largest_plan_renders_in_bounded_pixels_and_memory(tmp_path):
    plan = _plan(LIMITS.max_events, steps=LIMITS.max_steps)
    plan["graphs"] = [
        {"objects": [f"object {j} of a rather long name" for j in range(40)],
         "attributes": [{"object": f"object {j} of a rather long name", "attribute": "red"} for j in range(40)]}
        for _ in range(LIMITS.max_steps)
    ]  # fmt: skip
    source = tmp_path / "plan.json"
    source.write_text(json.dumps(plan))
    done = subprocess.run(
        [sys.executable, "-c", _RENDER, str(source), str(tmp_path / "plan.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["cpu_s"] < 15, measured  # about 2 s of CPU; unbounded, 1,000 events took 108 s
    assert measured["rss_mb"] < 300, measured
    assert measured["size"][0] <= 4000 and measured["size"][1] <= 3000, measured


def test_item4_imagine_layout_scales_and_shows_progress(caplog, capsys):
    def plan(n: int) -> DynamicSceneGraph:
        events = [Event(agent=f"square {i}", predicate="jumps", start=i % 32, end=i % 32 + 1) for i in range(n)]
        return DynamicSceneGraph.from_events(events)

    timings = {}
    for size in (64, LIMITS.max_events):
        dsg = plan(size)
        started = time.process_time()
        imagine_layout(dsg, seed=0)
        timings[size] = time.process_time() - started
    assert timings[LIMITS.max_events] < 3, timings  # about 0.3 s of CPU at the bound
    assert len(max(caplog.messages, key=len)) < 1000  # the warning names a few objects, not all
    assert "imagining the layout" in capsys.readouterr().err  # a progress bar for a plan of many objects
    imagine_layout(plan(3), seed=0)
    assert "imagining the layout" not in capsys.readouterr().err  # none for a small one


def test_item4_a_rotating_object_that_is_no_polygon_is_laid_out():
    dsg = DynamicSceneGraph.from_events([Event(agent="dog", predicate="rotates", start=0, end=2)])
    try:
        out = imagine_layout(dsg, seed=0)
    except KeyError as err:  # the unfixed code: KeyError 'circle'
        raise AssertionError(f"imagine_layout crashed: {err!r}") from None
    assert out.boxes is not None and out.boxes[0][0].object == "dog"


def test_item1_the_rules_planner_refuses_a_plan_past_the_bounds():
    from dysen.planner.rules import RulesPlanner

    with pytest.raises(DysenError, match="150 characters; the limit is 100"):
        RulesPlanner().plan(f"a {'x' * 150} moves right")
