"""What the benchmark scripts share: the machine a result came from, and printing (``--out``: writing) the JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine(**extra: Any) -> dict[str, Any]:
    """Cores, processor, Python and the 1-minute load average (a busy machine skews CPU timings), plus ``extra``."""
    return {
        "cpu_cores": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        **extra,
    }


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print ``report`` as JSON and, with ``out``, write it there too."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
