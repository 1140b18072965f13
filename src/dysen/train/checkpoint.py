"""Atomic training checkpoints: one folder per step, staged in a hidden temp folder and renamed into place.

Files of ``<run>/checkpoints/step-00000010/`` (no pickled objects anywhere):

* ``weights.safetensors`` — the trainable weights, keyed ``<module>.<param>`` (``unet.conv_in.weight``);
* ``ema.safetensors`` — their exponential moving average, same keys (absent when EMA is off);
* ``optimizer.pt`` — ``optimizer.state_dict()``: tensors, numbers and lists only, read back with
  ``torch.load(weights_only=True)``; ``aux_optimizer.pt`` the same for a second module group (a GAN
  discriminator, whose weights sit in ``weights.safetensors`` under its own module name), when there is one;
* ``state.json`` — the step reached and the non-finite-loss counters.

A sharded run (``--sharding full_shard``/``hybrid_shard``) writes ``state.json`` and, in place of the other files,
``sharded/``: every process's shards (``dysen.train.sharded_checkpoint``).

The learning rate, the data order and every random draw are pure functions of (seed, step), so the
step number *is* the scheduler, sampler and RNG state: resuming needs nothing else to continue exactly.
A crash mid-write leaves only a ``.step-…`` temp folder, which ``latest_checkpoint`` ignores; a checkpoint that
cannot be read (a damaged file, a ``state.json`` of wrong types) is passed over for the next older one by
``newest_readable``, which says which one it used.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dysen.atomic import staged_dir
from dysen.errors import DysenError

FORMAT_VERSION = 1
SHARDS_DIR = "sharded"  # a sharded run's checkpoint: its processes' shards (``dysen.train.sharded_checkpoint``)
AUX_OPTIMIZER = "aux_optimizer.pt"
_NAME = re.compile(r"^step-(\d{8})$")


class TrainCheckpointError(DysenError):
    """A training checkpoint is missing, unreadable or does not fit the run being resumed."""


@dataclass
class Checkpoint:
    """What a checkpoint folder holds, as loaded tensors and plain data."""

    step: int  # optimizer steps done (skipped non-finite steps included)
    weights: dict[str, torch.Tensor]  # trainable weights, "<module>.<param>"
    optimizer: dict[str, Any]  # optimizer.state_dict()
    ema: dict[str, torch.Tensor] | None = None  # EMA shadow, same keys as weights
    counters: dict[str, int] = field(default_factory=dict)  # "nonfinite_total", "nonfinite_run"
    aux_optimizer: dict[str, Any] | None = None  # the second module group's optimizer.state_dict()


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def step_folder(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` is (or would be)."""
    return checkpoint_dir(run_dir) / f"step-{step:08d}"


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint, keep: int = 2) -> Path:
    """Write ``checkpoint`` as ``<run>/checkpoints/step-<n>`` atomically; keep only the ``keep`` newest."""
    parent = checkpoint_dir(run_dir)
    target = step_folder(run_dir, checkpoint.step)
    try:
        _write(parent, target, checkpoint)
    except OSError as err:  # a read-only or full disk: nothing partial is left (staged_dir)
        raise TrainCheckpointError(
            f"cannot write the checkpoint {target}: {err.strerror or err}; free space or make {parent} writable, "
            "then --resume latest"
        ) from None
    prune_checkpoints(run_dir, keep)
    return target


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Remove all but the ``keep`` newest checkpoints (0: keep every one)."""
    for old in _checkpoints(checkpoint_dir(run_dir))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _write(parent: Path, target: Path, checkpoint: Checkpoint) -> None:
    parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(target) as staging:
        weights = {k: v.detach().contiguous().cpu() for k, v in checkpoint.weights.items()}
        save_file(weights, staging / "weights.safetensors")
        if checkpoint.ema is not None:
            save_file({k: v.contiguous().cpu() for k, v in checkpoint.ema.items()}, staging / "ema.safetensors")
        torch.save(checkpoint.optimizer, staging / "optimizer.pt")
        if checkpoint.aux_optimizer is not None:
            torch.save(checkpoint.aux_optimizer, staging / AUX_OPTIMIZER)
        state = {"format": FORMAT_VERSION, "step": checkpoint.step, **checkpoint.counters}
        (staging / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of ``run_dir``, or None."""
    found = _checkpoints(checkpoint_dir(run_dir))
    return found[-1] if found else None


def newest_readable(run_dir: Path) -> tuple[Path, Checkpoint] | None:
    """The newest checkpoint of ``run_dir`` that reads back whole, and its contents; None when there is none.
    Unreadable newer ones are passed over with a line that names them and the one used; when none is readable
    the error lists why each failed."""
    found, failures = _checkpoints(checkpoint_dir(run_dir)), []
    for folder in reversed(found):
        try:
            checkpoint = load_checkpoint(folder)
        except TrainCheckpointError as err:
            failures.append(str(err))
            continue
        if failures:
            print(f"passed over {len(failures)} unreadable checkpoint(s) ({'; '.join(failures)}); resuming from "
                  f"{folder.name}")  # fmt: skip
        return folder, checkpoint
    if failures:
        raise TrainCheckpointError(f"no readable checkpoint in {checkpoint_dir(run_dir)}: {'; '.join(failures)}")
    return None


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read a folder written by ``save_checkpoint`` (safetensors, JSON and a weights-only torch file)."""
    if (folder / SHARDS_DIR).is_dir():
        raise TrainCheckpointError(
            f"{folder} holds a sharded checkpoint (--sharding full_shard or hybrid_shard): resume it with the same "
            "--sharding, or export it with dysen model export"
        )
    try:
        state = read_state(folder / "state.json")
        weights = load_file(folder / "weights.safetensors")
        ema = load_file(folder / "ema.safetensors") if (folder / "ema.safetensors").is_file() else None
        optimizer = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        aux = folder / AUX_OPTIMIZER
        aux_optimizer = torch.load(aux, map_location="cpu", weights_only=True) if aux.is_file() else None
    except TrainCheckpointError:
        raise
    except (OSError, ValueError, EOFError, SafetensorError, RuntimeError, pickle.UnpicklingError) as err:
        text = " ".join(str(err).split())[:200] or type(err).__name__
        raise TrainCheckpointError(f"cannot read {folder}: {text}; delete it to resume from an older one") from None
    counters = {k: v for k, v in state.items() if k not in ("format", "step")}
    return Checkpoint(state["step"], weights, optimizer, ema, counters, aux_optimizer)


def read_state(path: Path) -> dict[str, int]:
    """``state.json``, checked: the format, a step >= 0 and counters >= 0, all plain integers."""
    state = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise TrainCheckpointError(f"{path} has checkpoint format {found!r}, expected {FORMAT_VERSION}")
    bad = [k for k, v in state.items() if type(v) is not int or v < 0]  # bool is not a step
    if bad or "step" not in state:
        raise TrainCheckpointError(
            f"{path} is damaged: {', '.join(f'{k}={state[k]!r}' for k in bad) or 'no step'} (expected integers >= 0)"
        )
    return state


def _checkpoints(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and _NAME.match(p.name))
