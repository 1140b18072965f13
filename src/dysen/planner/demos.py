"""The demonstration bank and the two baseline selectors (Dysen-VDM §3.3; dysen_spec.md §2.3–§2.4).

Dysen learns each step in context from K demonstrations: captions with their gold DSGs, drawn from a
pool (``train_candidate_{cand_number}.json`` in the released code). ``DemoBank`` is that pool, built
from any data with gold DSGs: Dynamic Shapes (drawn on the fly, no rendering), or a JSONL file whose
records carry ``caption`` (or ``prompt``) and ``dsg`` — the Dynamic Shapes manifest and future
ActivityNet / WebVid gold-DSG files alike.

Selectors implement ``DemoSelector`` and return demonstrations **most useful last**, i.e. nearest the
query in the prompt, as the paper's policy does (it reverses its sampled order):

* ``SimilaritySelector``: the k nearest captions by cosine similarity of frozen sentence embeddings;
* ``RandomSelector``: k uniformly at random without replacement, reproducible per (seed, prompt);
* the RL-trained ``PolicySelector`` lives in ``dysen.planner.rl``.

Torch is never imported here: the embedder returns tensors, and their methods suffice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dysen.dsg import DynamicSceneGraph, write_jsonl_atomic
from dysen.errors import DSGError, DysenError
from dysen.planner.types import Demonstration

if TYPE_CHECKING:
    import torch

    from dysen.planner.embed import Embedder
    from dysen.world import ShapesConfig


class DemoBank:
    """An ordered pool of demonstrations with unique ids."""

    def __init__(self, demos: Iterable[Demonstration]) -> None:
        self.demos: tuple[Demonstration, ...] = tuple(demos)
        self._by_id = {demo.id: demo for demo in self.demos}
        if len(self._by_id) != len(self.demos):
            dup = next(i for i, n in Counter(d.id for d in self.demos).items() if n > 1)
            raise DysenError(f"demonstration ids must be unique, {dup!r} occurs more than once")

    def __len__(self) -> int:
        return len(self.demos)

    def __iter__(self) -> Iterator[Demonstration]:
        return iter(self.demos)

    def __getitem__(self, index: int) -> Demonstration:
        return self.demos[index]

    @property
    def ids(self) -> list[str]:
        return [demo.id for demo in self.demos]

    @property
    def captions(self) -> list[str]:
        return [demo.caption for demo in self.demos]

    def take(self, ids: Sequence[str]) -> list[Demonstration]:
        """The demonstrations with these ids, in the order given; unknown ids are an error."""
        missing = [i for i in ids if i not in self._by_id]
        if missing:
            raise DysenError(f"{len(missing)} demonstration ids are not in this bank, e.g. {missing[0]!r}")
        return [self._by_id[i] for i in ids]

    @classmethod
    def from_shapes(
        cls, num: int, split: str = "train", seed: int = 0, config: ShapesConfig | None = None, start: int = 0
    ) -> DemoBank:
        """Clips ``start .. start+num-1`` of a Dynamic Shapes split (default config), as (id, caption, gold DSG)."""
        from dysen.world import ShapesConfig, sample_clip

        config = config or ShapesConfig()
        clips = (sample_clip(i, split=split, seed=seed, config=config) for i in range(start, start + num))
        return cls(Demonstration(id=c.id, caption=c.caption, dsg=c.dsg) for c in clips)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> DemoBank:
        """Records with ``caption`` or ``prompt`` and ``dsg`` (id: the record's ``id``, else ``<file>:<line>``)."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DysenError(f"{path}: no such demonstration file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise DysenError(f"{path}: cannot read it as UTF-8 text: {err}") from None
        demos = [_demo(f"{path}:{n}", f"{path.name}:{n}", line) for n, line in enumerate(lines, 1) if line.strip()]
        if not demos:
            raise DysenError(f"{path}: holds no demonstrations")
        return cls(demos)

    def save_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write one ``{"id", "caption", "dsg"}`` record per line, atomically."""
        write_jsonl_atomic(path, ({"id": d.id, "caption": d.caption, "dsg": d.dsg.to_dict()} for d in self.demos))


def _demo(where: str, default_id: str, line: str) -> Demonstration:
    """One JSONL record as a demonstration; problems name ``file:line``."""
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as err:
        raise DysenError(f"{where}: not valid JSON: {err.msg}") from None
    if not isinstance(record, dict) or "dsg" not in record:
        raise DysenError(f"{where}: a demonstration record is a JSON object with 'caption' (or 'prompt') and 'dsg'")
    caption = record.get("caption", record.get("prompt"))
    if not isinstance(caption, str) or not caption.strip():
        raise DysenError(f"{where}: the record needs a non-empty text 'caption' (or 'prompt')")
    try:
        dsg = DynamicSceneGraph.from_dict(record["dsg"])
    except DSGError as err:
        raise DysenError(f"{where}: {err}") from None
    return Demonstration(id=str(record.get("id", default_id)), caption=caption, dsg=dsg)


def check_k(k: int, pool: int) -> int:
    """``k`` if ``0 <= k <= pool``, else a ``DysenError``."""
    if not 0 <= k <= pool:
        raise DysenError(f"cannot pick {k} demonstrations from a pool of {pool}; ask for 0..{pool}")
    return k


class SimilaritySelector:
    """The k bank entries whose captions are nearest the prompt (cosine), most similar last."""

    def __init__(self, bank: DemoBank, embedder: Embedder) -> None:
        self.bank = bank
        self.embedder = embedder
        self._bank_emb: torch.Tensor | None = None

    def select(self, prompt: str, k: int) -> list[Demonstration]:
        check_k(k, len(self.bank))
        if self._bank_emb is None:
            self._bank_emb = self.embedder.encode(self.bank.captions)  # [K, D]
        query = self.embedder.encode([prompt])[0]  # [D]
        sims = self._bank_emb @ query  # [K]
        nearest = sims.topk(k).indices.tolist()  # most similar first
        return [self.bank[i] for i in reversed(nearest)]


class RandomSelector:
    """k bank entries uniformly at random without replacement; the same (seed, prompt) gives the same pick."""

    def __init__(self, bank: DemoBank, seed: int = 0) -> None:
        self.bank = bank
        self.seed = seed

    def select(self, prompt: str, k: int) -> list[Demonstration]:
        check_k(k, len(self.bank))
        digest = hashlib.sha256(f"{self.seed}\n{prompt}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "little"))
        return [self.bank[i] for i in rng.sample(range(len(self.bank)), k)]
