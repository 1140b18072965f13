"""Checkpoints of a sharded run (``--sharding full_shard``/``hybrid_shard``): every process writes its own shards.

``<run>/checkpoints/step-00000010/`` of a sharded run holds the same ``state.json`` as an unsharded one and
``sharded/shard-0000<r>-model-00001-of-00001.safetensors``, one file per process r (torch.distributed.checkpoint,
DCP, through its safetensors storage: each tensor's offsets in the file's JSON metadata; no pickle anywhere), with

* ``weights.<module>.<param>`` — the trained modules' weights (their buffers once, from one process);
* ``ema.<module>.<param>`` and ``ema_updates`` — the EMA's shadow of each shard, and its update count;
* ``optimizer.trained.<module>.<param>.{step,exp_avg,exp_avg_sq}`` — AdamW's state (its settings are the run's).

Loading reads by offsets, whatever process wrote a piece. The folder is filled under a hidden name and renamed into
place by the main process once every process has written, so a crash leaves no half checkpoint under a step's
name (as ``dysen.train.checkpoint``'s). ``sharded_tensors`` reads one part whole, in one process and without a
process group: ``dysen model export`` of a sharded run, and the tests.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from dysen.atomic import move_into_place
from dysen.train.checkpoint import (
    FORMAT_VERSION,
    SHARDS_DIR,
    TrainCheckpointError,
    checkpoint_dir,
    prune_checkpoints,
    read_state,
    step_folder,
)


def save_sharded(
    run_dir: Path, step: int, tensors: dict[str, Any], counters: dict[str, int], keep: int, accelerator: Any
) -> Path:
    """Write this process's part of ``tensors`` (nested dicts of tensors and DTensors) as the checkpoint of ``step``;
    every process calls it. Keeps the ``keep`` newest checkpoints (0: all)."""
    import torch.distributed.checkpoint as dcp

    target = step_folder(run_dir, step)
    staging = checkpoint_dir(run_dir) / f".{target.name}.sharded"  # one name, known to every process
    main = accelerator.is_main_process
    try:
        if main:
            shutil.rmtree(staging, ignore_errors=True)  # a crashed save's leftovers
            (staging / SHARDS_DIR).mkdir(parents=True)
        accelerator.wait_for_everyone()
        writer = dcp.HuggingFaceStorageWriter(str(staging / SHARDS_DIR), save_distributed=True)  # one file each
        dcp.save(tensors, storage_writer=writer)
        accelerator.wait_for_everyone()
        if main:
            state = {"format": FORMAT_VERSION, "step": step, **counters}
            (staging / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            move_into_place(staging, target)
            prune_checkpoints(run_dir, keep)
    except OSError as err:
        raise TrainCheckpointError(
            f"cannot write the checkpoint {target}: {err.strerror or err}; free space or make {target.parent} "
            "writable, then --resume latest"
        ) from None
    accelerator.wait_for_everyone()
    return target


def load_sharded(folder: Path, tensors: dict[str, Any]) -> dict[str, int]:
    """Read checkpoint ``folder`` into ``tensors`` in place (every process calls it, with its own shards as the
    targets); its ``state.json``: the step and the counters."""
    import torch.distributed.checkpoint as dcp

    if not (folder / SHARDS_DIR).is_dir():
        raise TrainCheckpointError(
            f"{folder} is an unsharded checkpoint (a --sharding ddp run's): resume it with --sharding ddp"
        )
    try:
        state = read_state(folder / "state.json")
        dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(str(folder / SHARDS_DIR)))
    except TrainCheckpointError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, dcp.CheckpointException) as err:
        text = " ".join(str(err).split())[:300] or type(err).__name__
        raise TrainCheckpointError(
            f"cannot read the sharded checkpoint {folder}: {text}; delete it to resume from an older one"
        ) from None
    return state


def sharded_tensors(folder: Path, part: str) -> dict[str, torch.Tensor]:
    """The full tensors under ``part`` ("weights", "ema") of a sharded checkpoint, keyed without the prefix, read in
    this process alone."""
    import torch.distributed.checkpoint as dcp

    path = str(folder / SHARDS_DIR)
    try:
        metadata = dcp.HuggingFaceStorageReader(path).read_metadata().state_dict_metadata
        prefix = f"{part}."
        tensors = {key: torch.empty(meta.size, dtype=meta.properties.dtype)  # type: ignore[union-attr]
                   for key, meta in metadata.items() if key.startswith(prefix)}  # fmt: skip
        if tensors:
            with warnings.catch_warnings():  # "torch.distributed is disabled …": one process is what is meant
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(path), no_dist=True)
    except (OSError, ValueError, RuntimeError, dcp.CheckpointException) as err:
        raise TrainCheckpointError(f"cannot read the sharded checkpoint {folder}: {err}") from None
    return {key[len(prefix) :]: value for key, value in tensors.items()}
