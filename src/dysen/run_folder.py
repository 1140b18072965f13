"""A run folder's resolved settings: saved as JSON when a run starts, compared when it resumes.

One rule for every resumable job: a resumed run must not change its course silently, so the settings it was
started with are saved beside its checkpoints and a resume with other values is refused (except the few a
resume may change, such as the number of steps). Used by the training loop (``train_config.json``),
``dysen train-vae`` (``vae_loss.json``), the RL demonstration selector (the config in each epoch checkpoint)
and the latent cache (``source.json``). This module reads, compares and writes; each caller raises its own
error, which says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from dysen.atomic import write_text_atomic


def as_saved(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from JSON: tuples as lists, paths as strings."""
    return json.loads(json.dumps(settings, default=str))


def changed_settings(
    saved: Mapping[str, Any], settings: Mapping[str, Any], resumable: Collection[str] = ()
) -> list[str]:
    """The names of ``settings`` whose ``saved`` value differs (missing counts as different), sorted;
    ``resumable`` names aside."""
    return sorted(name for name in settings if name not in resumable and saved.get(name) != settings[name])


def read_settings(path: Path) -> dict[str, Any] | None:
    """The settings saved at ``path``; None when there is no such file."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_settings(path: Path, settings: Mapping[str, Any]) -> None:
    """Save ``settings`` at ``path`` atomically (indented JSON), creating the run folder."""
    write_text_atomic(path, json.dumps(settings, indent=2) + "\n")


def resume_changes(
    path: Path, settings: Mapping[str, Any], resume: bool, resumable: Collection[str] = ()
) -> tuple[list[str], dict[str, Any]]:
    """(the changed names, the saved settings) when ``resume`` continues a run that saved settings at ``path``;
    nothing changed for a fresh run or when none were saved."""
    saved = read_settings(path) if resume else None
    if saved is None:
        return [], {}
    return changed_settings(saved, settings, resumable), saved
