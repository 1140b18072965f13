"""The training runs of tests/test_train_sharded.py, in one ``torch.distributed.run`` of 2 CPU (gloo) processes, so
that they share one start-up: ``python -m torch.distributed.run --nproc_per_node 2 tests/sharded_runs.py ROOT``.

Each is ``dysen train-backbone`` of the wan-test preset, 4 steps, into ``ROOT/<name>``:

* ``ddp`` — the unsharded reference (2 DDP processes);
* ``full`` — ``--sharding full_shard``, sampling every 2 steps (every process runs the sharded modules);
* ``resumed`` — ``--sharding full_shard`` stopped after 2 steps, then resumed to 4 from its sharded checkpoint;
* ``hybrid`` — ``--sharding hybrid_shard`` (a 1 × 2 mesh: its parameters are 2-D DTensors);

and two more, 2 steps each: ``adapter``, ``dysen train-adapter`` (adapter-test) on the ddp run's backbone with
``--sharding full_shard`` (its 0-d gates stay replicated), and ``adapter-ddp`` the same under DDP, and ``vae-ddp`` /
``vae-full``, ``dysen train-vae`` of ``ROOT/tiny.yaml`` (channels-last weights) under DDP and full shard.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dysen.cli import main

COMMON = ["--batch-size", "2", "--num-clips", "8", "--lr", "1e-3", "--seed", "5"]
ARGS = ["train-backbone", "--config", "wan-test", "--save-every", "1", "--keep-checkpoints", "0", *COMMON]
STEPS = 4


def adapter_args(root: Path, name: str) -> list[str]:
    """``dysen train-adapter`` of adapter-test on the ddp run's backbone, 2 steps, into ``root/name``."""
    backbone = root / "ddp" / "model"
    return ["train-adapter", "--backbone", str(backbone), "--config", "adapter-test", "--steps", "2",
            "--out", str(root / name), *COMMON]  # fmt: skip


def vae_args(root: Path, name: str) -> list[str]:
    """``dysen train-vae`` of ``root/tiny.yaml``, 2 steps, into ``root/name``."""
    return ["train-vae", "--config", str(root / "tiny.yaml"), "--steps", "2", "--out", str(root / name), *COMMON]


def run(root: Path, name: str, *extra: str, argv: list[str] | None = None) -> None:
    code = main([*(argv or [*ARGS, "--out", str(root / name)]), *extra])
    if code != 0:
        raise SystemExit(f"{name} {' '.join(extra)}: exit code {code}")
    torch.distributed.barrier()  # the main process has written the run's model/ (the next run may read it)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    run(root, "ddp", "--steps", str(STEPS))
    run(root, "full", "--steps", str(STEPS), "--sharding", "full_shard", "--sample-every", "2", "--sample-count", "1")
    run(root, "resumed", "--steps", "2", "--sharding", "full_shard")
    run(root, "resumed", "--steps", str(STEPS), "--sharding", "full_shard", "--resume", "latest")
    run(root, "hybrid", "--steps", str(STEPS), "--sharding", "hybrid_shard")
    run(root, "adapter", "--sharding", "full_shard", argv=adapter_args(root, "adapter"))
    run(root, "adapter-ddp", argv=adapter_args(root, "adapter-ddp"))
    run(root, "vae-ddp", argv=vae_args(root, "vae-ddp"))
    run(root, "vae-full", "--sharding", "full_shard", argv=vae_args(root, "vae-full"))
