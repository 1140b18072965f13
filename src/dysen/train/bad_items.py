"""Bad items: clips that fail to load, and how the training loop counts them.

A dataset returns None for an item it cannot load; the collate (``dysen.data.datasets.collate``) drops it and
reports ``batch["skipped"]``. ``LoopResult.skipped`` is the number of *distinct* bad items of one ``train`` call
(by dataset index, over every process; for a stream, which has no index, every bad draw counts);
``LoopResult.skipped_draws`` and the ``skipped`` metric count every bad draw, so a bad file drawn in 3 epochs
counts 3 there and 1 in ``skipped``. Neither is kept in checkpoints: a resumed run counts afresh.
A micro-batch whose every item failed is not run: it adds a zero gradient (it still passes through the
model, so DDP stays in step, logging zeros under the task's last log names; in DDP the first micro-batch
of a run must not be all bad on one process only). A step whose every micro-batch (on every process) was
empty makes no optimizer update, is not counted as non-finite, and logs a NaN loss and ``empty_steps``.
When no item loads at all (a whole epoch of a map-style dataset, or ``MAX_EMPTY_STEPS`` steps in a row, without
one good item) the run stops with ``NoGoodItemsError`` instead of training on nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch.utils.data import Dataset

from dysen.train.errors import TrainError

MAX_EMPTY_STEPS = 50
"""Steps in a row without one good item after which a run stops (a stream; a map-style dataset stops sooner, at
its first whole epoch without one): every item is failing to load."""


class NoGoodItemsError(TrainError):
    """No item of the dataset loads: training would run on nothing."""


def is_empty(batch: Any) -> bool:
    """A collated batch whose every item was dropped (``skipped`` > 0 and no ``id`` left)."""
    return isinstance(batch, Mapping) and batch.get("skipped", 0) > 0 and not batch.get("id")


def dropped_items(batch: Any) -> int:
    """How many items the collate dropped from ``batch``."""
    return int(batch.get("skipped", 0)) if isinstance(batch, Mapping) else 0


class IndexedDataset(Dataset):
    """``(index, item)`` of a map-style dataset, so that the indices of bad items travel with their batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class IndexedCollate:
    """``collate`` of the items, paired with the indices of the items that came back None."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, pairs: list[tuple[int, Any]]) -> tuple[Any, list[int]]:
        return self.collate([item for _, item in pairs]), [index for index, item in pairs if item is None]


class BadItemTally:
    """The bad items of one ``train`` call: every draw (summed over processes), and this process's indices."""

    def __init__(self) -> None:
        self.draws = 0  # bad items dropped, over every process, each draw counted
        self.empty_steps = 0  # steps without a good item, so without an optimizer update
        self.empty_in_a_row = 0  # the latest run of such steps
        self.indices: set[int] = set()  # this process's bad dataset indices (none for a stream)

    def add(self, draws: int, indices: Iterable[int]) -> None:
        self.draws += draws
        self.indices.update(indices)

    def step(self, ran: bool) -> None:
        """Count a step: ``ran`` when some micro-batch (of some process) had a good item."""
        self.empty_steps += not ran
        self.empty_in_a_row = 0 if ran else self.empty_in_a_row + 1

    def nothing_loads(self, step: int, steps_per_epoch: int | None) -> bool:
        """Whether the 0-based ``step`` ended a whole epoch (``steps_per_epoch``; None: a stream) or
        ``MAX_EMPTY_STEPS`` steps in a row without a good item."""
        whole_epoch = steps_per_epoch is not None and (step + 1) % steps_per_epoch == 0
        return self.empty_in_a_row >= MAX_EMPTY_STEPS or (whole_epoch and self.empty_in_a_row >= steps_per_epoch)

    def metrics(self) -> dict[str, int]:
        """The tally as logged with every step."""
        return {"skipped": self.draws, "empty_steps": self.empty_steps}

    def distinct(self, accelerator: Any, stream: bool) -> int:
        """Distinct bad items over every process (a collective call when there are several); a stream's draws."""
        if stream:
            return self.draws
        if accelerator.num_processes == 1:
            return len(self.indices)
        from accelerate.utils import gather_object

        return len(set(gather_object(sorted(self.indices))))
