"""Reading third-party metric-network weight files safely, with their SHA-256 recorded.

Metric weights (I3D, C3D, Inception) come as other projects' files, not dysen's safetensors folders, so
they are read with ``torch.load(weights_only=True)`` (tensors and plain containers only; no arbitrary
unpickling), ``numpy.load(allow_pickle=False)``, or ``torch.jit.load`` for TorchScript archives (DESIGN.md
§5). No hash is published for these files in eval_data.md §4, so none is pinned here: every loader
returns the file's SHA-256 for the results to print, and a caller that pins one (``expected_sha256``)
gets an error on a mismatch, since a different file means a different metric (eval_data.md §1.6).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from dysen.models.pretrained import CheckpointError, read_state_dict

_CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_file(path: str | os.PathLike, expected_sha256: str | None, what: str) -> tuple[Path, str]:
    """``path`` as a Path and its SHA-256; a missing file or a hash other than ``expected_sha256`` is an error."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{what} weights not found at {file}: pass the path of the weight file")
    digest = sha256_of(file)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise CheckpointError(
            f"{file} has SHA-256 {digest}, not the expected {expected_sha256}: it is a different {what} file, "
            "and metrics computed with it are not comparable"
        )
    return file, digest


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder) rather than a saved state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A feature network's state dict (safetensors or tensors-only ``torch.save``; pickles refused)."""
    return read_state_dict(path, "feature network")


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path, ignore: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module``; keys other than BatchNorm counters or prefixes in ``ignore`` must match."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{path} does not match {type(module).__name__}: {err}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match {type(module).__name__}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
