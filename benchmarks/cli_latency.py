"""Wall time of short CLI commands in fresh processes (interpreter start and imports included).

Prints JSON: median and min seconds over ``--repeats`` runs of each command, plus the machine. The
foundation and planner issues budget ``dysen plan "…"`` (offline rules planner) at 2 s on 2 cores; the model
issue budgets ``dysen generate "…" --steps 20`` (``shapes-tiny``, 16 frames, written as mp4 + DSG JSON + timeline
picture) at 10 s.

    python benchmarks/cli_latency.py [--repeats 5] [--out result.json]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit, machine  # benchmarks/report.py, beside this script

PROMPT = "a red circle moves right, then a blue square jumps"


def commands(workdir: Path) -> dict[str, list[str]]:
    return {
        "dysen --help": ["--help"],
        "dysen plan (rules)": ["plan", PROMPT],
        "dysen dsg schema": ["dsg", "schema"],
        "dysen generate --steps 20": ["generate", PROMPT, "--out", str(workdir / "video.mp4"), "--steps", "20"],
    }


def wall_times(args: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dysen.cli", *args], check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, command in commands(Path(workdir)).items():
            times = wall_times(command, args.repeats)
            result[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3)}
    report = {
        "benchmark": "cli_latency",
        "machine": machine(),
        "result": result,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
