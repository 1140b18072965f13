"""The GPU benchmarks of issues 24 and 25 (``benchmarks/backbone_speed.py``, ``adapter_speed.py``) run end to end at
a tiny size on the CPU, so they work when a GPU is lent (nothing here is timed: numbers come from the scripts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--config", "tiny", "--frames", "9", "--height", "64", "--width", "64", "--dtype", "fp32", "--device", "cpu"]


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, script, *args], cwd=BENCHMARKS, capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("self_strength", ["0", "4"])
def test_backbone_speed_times_control_off_and_on(self_strength: str) -> None:
    report = _run("backbone_speed.py", *TINY, "--repeats", "1", "--warmup", "1", "--self-strength", self_strength)
    names = [row["name"] for row in report["rows"]]
    assert names[:2] == ["control off", "control s=2"] and len(names) == (3 if self_strength != "0" else 2)
    assert all(row["step_s_median"] > 0 for row in report["rows"]) and report["rows"][0]["ratio_to_off"] == 1.0


def test_adapter_speed_trains_a_step_with_checkpointing() -> None:
    args = ["--steps", "1", "--every", "1", "--rgtrm-dim", "32", "--gradient-checkpointing"]
    report = _run("adapter_speed.py", *TINY, *args)
    assert report["flops_per_step"] > 0 and report["adapter_params"] > 0 and report["step_s_median"] > 0
