"""The CLI table: every subcommand of the seed's design is listed and in ``--help``; a user error is one line on
stderr with exit code 1, no traceback; ``dysen dsg schema`` prints the DSG's JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dysen.cli import COMMANDS, build_parser, main

DESIGNED = [
    "generate",
    "plan",
    "data shapes",
    "dsg annotate",
    "train-vae",
    "train-vdm",
    "train-dysen",
    "finetune",
    "eval",
    "demo",
]


def test_every_designed_subcommand_is_in_the_table():
    assert set(DESIGNED) <= set(COMMANDS)


def test_help_lists_every_top_level_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in {n.split()[0] for n in COMMANDS}:
        assert name in out


def test_console_script_reports_errors_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dysen.cli", "dsg", "validate", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "missing.json" in result.stderr


def test_dsg_schema_prints_a_json_schema(capsys):
    assert main(["dsg", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "DynamicSceneGraph" and "graphs" in schema["properties"]
