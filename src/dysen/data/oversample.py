"""Oversampling by action: repeat the clips whose gold DSG shows a rare action (``--oversample rotates=3``).

A clip whose DSG has an event with predicate P appears ``K[P]`` times per epoch (the largest K among its
events; 1 for the others), so a model sees more of an action it gets wrong without new data. The repeats are
a fixed index map, so the loop's data order, checkpoints and ``--resume latest`` work as on the plain dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DysenError


class GoldIndexed(Protocol):
    """A map-style dataset that can tell an item's gold DSG without loading its video."""

    def __len__(self) -> int: ...

    def gold_dsg(self, index: int) -> DynamicSceneGraph | None: ...


def parse_oversample(specs: Iterable[str]) -> dict[str, int]:
    """``["rotates=3", "shrinks=2"]`` -> ``{"rotates": 3, "shrinks": 2}``; a clear error for anything else."""
    weights: dict[str, int] = {}
    for spec in specs:
        predicate, sep, count = spec.rpartition("=")
        predicate = predicate.strip()
        try:
            repeats = int(count)
        except ValueError:
            repeats = 0
        if not sep or not predicate or repeats < 1:
            raise DysenError(f"--oversample takes PREDICATE=K with a whole K >= 1 (e.g. rotates=3), got {spec!r}")
        if predicate in weights:
            raise DysenError(f"--oversample names {predicate!r} twice")
        weights[predicate] = repeats
    return weights


def repeat_counts(dsgs: Sequence[DynamicSceneGraph | None], weights: Mapping[str, int]) -> list[int]:
    """How often each clip appears: the largest weight among its events' predicates, 1 without a match."""
    return [max((weights.get(e.predicate, 1) for e in (dsg.events if dsg else ())), default=1) for dsg in dsgs]


class OversampledDataset(Dataset):
    """``dataset`` with item i repeated ``counts[i]`` times, in index order (the loop shuffles)."""

    def __init__(self, dataset: Dataset, counts: Sequence[int]) -> None:
        if len(counts) != len(dataset):  # type: ignore[arg-type]
            raise DysenError(f"{len(counts)} repeat counts for a dataset of {len(dataset)} items")  # type: ignore[arg-type]
        self.dataset = dataset
        self.sources = [index for index, count in enumerate(counts) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.sources[index]]


def oversample(dataset: Dataset, weights: Mapping[str, int], *, progress: bool = True) -> OversampledDataset:
    """``dataset`` with the clips that show ``weights``' predicates repeated (module docstring)."""
    if not callable(getattr(dataset, "gold_dsg", None)):
        raise DysenError(
            "--oversample reads each clip's gold DSG before training: it works with on-the-fly Dynamic Shapes "
            "(--data shapes) or a latent cache (--cache-latents)"
        )
    indexed: GoldIndexed = dataset  # type: ignore[assignment]
    dsgs = [indexed.gold_dsg(i) for i in tqdm(range(len(indexed)), desc="reading gold DSGs", disable=not progress)]
    known = {e.predicate for dsg in dsgs if dsg is not None for e in dsg.events}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise DysenError(f"--oversample: no clip has an event {unknown}; the clips' predicates are {sorted(known)}")
    return OversampledDataset(dataset, repeat_counts(dsgs, weights))
