"""Packaging promises: a light import, and a README whose commands are the ones CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_import_dysen_and_building_the_cli_leave_torch_out():
    loaded = _modules_after("import dysen, dysen.cli, dysen.dsg; dysen.cli.build_parser()")
    assert "torch" not in loaded


def test_readme_marks_the_setup_and_test_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = dict(re.findall(r"<!-- ci: (\w+) -->\n```bash\n(.*?)\n```", readme, flags=re.S))
    assert set(blocks) == {"setup", "test"}
    assert "pip install -e" in blocks["setup"] and "dysen generate " in blocks["setup"]  # the main job
    assert "pytest" in blocks["test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_block setup" in ci and "readme_block test" in ci
