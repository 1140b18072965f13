"""The data order of a training run, a pure function of (seed, step, micro-batch) for a map-style dataset.

Step s's global batch is split into ``grad_accum × processes`` micro-batches of ``batch_size`` clips;
micro-batch m = a·processes + rank (a = accumulation index) gets the same clips and the same seed however it
is scheduled, so a resumed run repeats an uninterrupted one and 2 processes × accum 1 repeat 1 process × accum 2.

Streams (an ``IterableDataset`` such as ``dysen.data.shards.ShardDataset``) have no ``StepSampler``: each
process reads its own split of the stream (the dataset splits by rank and worker) in batches of
``batch_size``, and at its end calls ``set_epoch(epoch + 1)`` (when the dataset has it) and reads it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from dysen.train.bad_items import IndexedCollate, IndexedDataset
from dysen.train.errors import TrainError
from dysen.train.signals import ignore_stop_signals

if TYPE_CHECKING:
    from dysen.train.loop import TrainConfig


def step_seed(*key: int) -> int:
    """A 63-bit seed that is a pure function of ``key`` (seed, step, micro-batch)."""
    return int(np.random.SeedSequence(list(key)).generate_state(2, np.uint64)[0] >> np.uint64(1))


class StepSampler(Sampler[int]):
    """Indices of this process's micro-batches for steps ``start`` .. ``config.steps`` − 1, in order.

    Epoch e is the permutation seeded by (seed, e); step s takes global batch s mod (steps per epoch) of
    epoch s div (steps per epoch), and micro-batch m = a·processes + rank of it (a = accumulation index).
    """

    def __init__(self, size: int, config: TrainConfig, processes: int, rank: int, start: int) -> None:
        self.size, self.config, self.processes, self.rank, self.start = size, config, processes, rank, start
        self.global_batch = config.batch_size * config.grad_accum * processes
        if size < self.global_batch:
            raise TrainError(
                f"the dataset has {size} clips, fewer than one global batch of {self.global_batch} "
                f"(batch size × grad accum × processes): use more data or a smaller --batch-size"
            )

    def __len__(self) -> int:
        return (self.config.steps - self.start) * self.config.batch_size * self.config.grad_accum

    def __iter__(self) -> Iterator[int]:
        per_epoch, micro = self.size // self.global_batch, self.config.batch_size
        order, order_epoch = None, -1
        for step in range(self.start, self.config.steps):
            epoch, slot = divmod(step, per_epoch)
            if epoch != order_epoch:
                order_epoch = epoch
                shuffle = torch.Generator().manual_seed(step_seed(self.config.seed, epoch))
                order = torch.randperm(self.size, generator=shuffle)
            chunk = order[slot * self.global_batch : (slot + 1) * self.global_batch]  # type: ignore[index]
            for a in range(self.config.grad_accum):
                m = a * self.processes + self.rank
                yield from chunk[m * micro : (m + 1) * micro].tolist()


class Stream:
    """Batches of an ``IterableDataset``, epoch after epoch (``set_epoch`` when it has one); no indices."""

    def __init__(self, dataset: IterableDataset, collate: Callable[[list[Any]], Any], config: TrainConfig) -> None:
        self.dataset, self.config, self.epoch = dataset, config, 0
        self.loader = DataLoader(
            dataset, config.batch_size, collate_fn=collate, num_workers=config.num_workers,
            worker_init_fn=ignore_stop_signals,
        )  # fmt: skip

    def __iter__(self) -> Iterator[tuple[Any, list[int]]]:
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            empty = True
            for batch in self.loader:
                empty = False
                yield batch, []
            if empty:
                raise TrainError(f"the stream {self.dataset} gave this process no batch (fewer shards than ranks?)")
            self.epoch += 1


def step_batches(
    dataset: Dataset, collate: Callable[[list[Any]], Any], config: TrainConfig, accelerator: Any, start: int
) -> Iterator[tuple[Any, list[int]]]:
    """This process's micro-batches of a map-style dataset from step ``start`` on, each with its bad indices."""
    sampler = StepSampler(len(dataset), config, accelerator.num_processes, accelerator.process_index, start)  # type: ignore[arg-type]
    loader = DataLoader(
        IndexedDataset(dataset), config.batch_size, sampler=sampler, collate_fn=IndexedCollate(collate),
        num_workers=config.num_workers, worker_init_fn=ignore_stop_signals,
    )  # fmt: skip
    return iter(loader)
