"""The training runs of tests/test_train_sharded.py, in one ``torch.distributed.run`` of 2 CPU (gloo) processes, so
that they share one start-up: ``python -m torch.distributed.run --nproc_per_node 2 tests/sharded_runs.py ROOT``.

Each is ``dysen train-backbone`` of the wan-test preset, 4 steps, into ``ROOT/<name>``:

* ``ddp`` — the unsharded reference (2 DDP processes);
* ``full`` — ``--sharding full_shard``, sampling every 2 steps (every process runs the sharded modules);
* ``resumed`` — ``--sharding full_shard`` stopped after 2 steps, then resumed to 4 from its sharded checkpoint;
* ``hybrid`` — ``--sharding hybrid_shard`` (a 1 × 2 mesh: its parameters are 2-D DTensors).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dysen.cli import main

ARGS = [
    "train-backbone", "--config", "wan-test", "--batch-size", "2", "--num-clips", "8", "--lr", "1e-3",
    "--save-every", "1", "--keep-checkpoints", "0", "--seed", "5",
]  # fmt: skip
STEPS = 4


def run(root: Path, name: str, *extra: str) -> None:
    code = main([*ARGS, "--out", str(root / name), *extra])
    if code != 0:
        raise SystemExit(f"{name} {' '.join(extra)}: exit code {code}")


if __name__ == "__main__":
    root = Path(sys.argv[1])
    run(root, "ddp", "--steps", str(STEPS))
    run(root, "full", "--steps", str(STEPS), "--sharding", "full_shard", "--sample-every", "2", "--sample-count", "1")
    run(root, "resumed", "--steps", "2", "--sharding", "full_shard")
    run(root, "resumed", "--steps", str(STEPS), "--sharding", "full_shard", "--resume", "latest")
    run(root, "hybrid", "--steps", str(STEPS), "--sharding", "hybrid_shard")
