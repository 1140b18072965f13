"""Build a planner from plain options: what ``dysen plan``, ``dysen generate`` and the web demo share.

``PlannerOptions`` is the one declaration of the planner's settings: the CLI's planner flags
(``dysen.cli.options.add_planner_flags``) are made from its fields and defaults, the backend choices from
``BACKENDS``, and a model folder saves it as its planner settings.

One explicit factory (no registry): ``rules`` is the offline default; ``openai``, ``hf`` and ``replay``
drive ``DysenPlanner`` through a chat backend wrapped in the persistent response cache, with
demonstrations chosen by embedding similarity (or a trained RL policy) and the rules planner as the
fallback when the LLM fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from dysen.errors import DysenError
from dysen.planner.backends.base import ChatBackend
from dysen.planner.cache import CachedBackend, ResponseCache
from dysen.planner.dysen import PLAN_BUDGET_S, DysenPlanner
from dysen.planner.types import DemoSelector, Planner
from dysen.world.colours import DEFAULT_PALETTE, colour_map

if TYPE_CHECKING:
    from dysen.planner.embed import Embedder

Backend = Literal["rules", "openai", "hf", "replay"]
BACKENDS: tuple[str, ...] = get_args(Backend)
"""The planner backends, one list: ``build_planner``, every CLI --planner flag and the checks use it."""

DEFAULT_SHAPES_DEMOS = 80
"""Size of the default demonstration bank: the paper's candidate pool, drawn from Dynamic Shapes train."""


@dataclass(frozen=True)
class PlannerOptions:
    """How to plan: the backend, where its model lives, and how demonstrations are chosen."""

    backend: Backend = "rules"
    """'rules' (offline, no LLM), 'openai' (any OpenAI-compatible server), 'hf' (local transformers), 'replay'."""
    model: str | None = None
    """The LLM: a served model name (openai) or a local path / hub id (hf)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 for vLLM; None = OpenAI."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable that holds the API key (the key itself is never logged)."""
    timeout_s: float = 60.0
    """Deadline of one LLM request in seconds (the whole answer, not each read)."""
    plan_budget_s: float = PLAN_BUDGET_S
    """Seconds one plan may spend on LLM calls; no call starts after that (then the fallback)."""
    answer_format: Literal["text", "json"] = "text"
    """Ask the LLM for the paper's tuple text, or JSON held to the DSG schema (structured output)."""
    replay: Path | None = None
    """Recorded answers (JSONL) for the 'replay' backend."""
    cache: bool = True
    """Answer repeated LLM requests from the SQLite cache."""
    cache_path: Path | None = None
    """Cache file; None = $DYSEN_CACHE_DIR or ~/.cache/dysen/llm.sqlite."""
    demos: str = "auto"
    """'shapes' (Dynamic Shapes gold DSGs), 'none', a JSONL file of gold DSGs, or 'auto': 'shapes' for LLM
    backends and for a policy, 'none' for the rules planner (its imagination then uses no demonstrations)."""
    policy: Path | None = None
    """A trained RL selector (``dysen train-dysen``) to choose demonstrations instead of similarity; in a model's
    ``model_index.json``, a path inside the model folder (``dysen train-dysen --attach``)."""
    shots: int = 8
    fallback: bool = True
    """Fall back to the rules planner when the LLM gives no usable answer."""
    llm_boxes: bool = False
    """LLM backends: ask the LLM for each object's box at every step after Step III (validated and repaired like
    the other steps; an unusable answer leaves the boxes to the layout imagination, with a warning)."""
    device: str = "cpu"
    """Device of the 'hf' backend's model."""
    colours: tuple[str, ...] | None = DEFAULT_PALETTE
    """The colours the model draws (the palette of the Dynamic Shapes world it was trained on, ``--world-colours``);
    a colour word outside it is planned as the nearest of them, with a warning. None: any colour, kept as written
    (a pretrained backbone)."""

    def __post_init__(self) -> None:
        try:
            if self.colours is not None:
                colour_map(tuple(self.colours))
        except (TypeError, ValueError) as err:
            raise DysenError(f"PlannerOptions.colours: {err}") from None


def changed_options(options: PlannerOptions, changes: Mapping[str, Any]) -> PlannerOptions:
    """``options`` with the fields ``changes`` names replaced. Naming ``demos`` but not ``policy`` also drops
    ``options``' policy: the demonstrations named are then chosen by similarity (or not at all, for 'none')."""
    if "demos" in changes and "policy" not in changes:
        changes = {**changes, "policy": None}
    return replace(options, **changes)


def build_planner(options: PlannerOptions) -> Planner:
    """The planner ``options`` describe (see ``PlannerOptions``)."""
    from dysen.planner.rules import RulesPlanner

    if options.backend not in BACKENDS:
        raise DysenError(f"unknown planner backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    if options.backend == "rules":
        return RulesPlanner(selector=build_selector(options), palette=options.colours)
    backend: ChatBackend = _chat_backend(options)
    if options.cache:
        from dysen.planner.prompts import cache_namespace

        backend = CachedBackend(backend, ResponseCache(options.cache_path), namespace=cache_namespace())
    return DysenPlanner(
        backend,
        selector=build_selector(options),
        shots=options.shots,
        output=options.answer_format,
        fallback=RulesPlanner(palette=options.colours) if options.fallback else None,
        budget_s=options.plan_budget_s,
        palette=options.colours,
        layout=options.llm_boxes,
    )


def _chat_backend(options: PlannerOptions) -> ChatBackend:
    if options.backend == "replay":
        from dysen.planner.backends.replay import ReplayBackend

        if options.replay is None:
            raise DysenError("the replay backend needs a recorded answers file (--replay FILE.jsonl)")
        return ReplayBackend(options.replay)
    if not options.model:
        raise DysenError(f"the {options.backend} planner needs a model (--planner-model NAME_OR_PATH)")
    if options.backend == "openai":
        from dysen.planner.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(
            options.model, base_url=options.base_url, api_key_env=options.api_key_env, timeout_s=options.timeout_s
        )
    from dysen.planner.backends.hf_local import HFChatBackend

    return HFChatBackend(options.model, device=options.device)


def demo_source(options: PlannerOptions) -> str:
    """Where the demonstrations come from: 'none', 'shapes' or a JSONL path ('auto' resolved: none for the rules
    planner without a policy, else the Dynamic Shapes bank)."""
    if options.demos == "auto":
        return "none" if options.backend == "rules" and options.policy is None else "shapes"
    return str(options.demos)


def build_selector(options: PlannerOptions) -> DemoSelector | None:
    """Similarity retrieval over the demonstration bank, or the RL policy when one is given; None for 'none'."""
    demos = demo_source(options)
    if demos == "none":
        if options.policy is not None:
            raise DysenError("a demonstration policy needs demonstrations; drop --demos none")
        return None
    from dysen.planner.demos import DemoBank, SimilaritySelector

    if demos == "shapes":
        bank = DemoBank.from_shapes(DEFAULT_SHAPES_DEMOS, split="train", seed=0)
    else:
        bank = DemoBank.from_jsonl(Path(demos))
    if options.policy is None:
        return SimilaritySelector(bank, _embedder(None))
    from dysen.planner.rl import DemoPolicy, PolicySelector

    policy = DemoPolicy.load(options.policy)
    return PolicySelector(policy, bank, _embedder(policy.embedder))


def _embedder(name: str | None) -> Embedder:
    """The embedder a policy was trained with (by its recorded name); all-MiniLM-L6-v2 by default."""
    from dysen.planner.embed import DEFAULT_MODEL_ID, HashingEmbedder, SentenceEmbedder

    if name and name.startswith("hashing-"):
        return HashingEmbedder(int(name.removeprefix("hashing-")))
    return SentenceEmbedder(None if name in (None, "", DEFAULT_MODEL_ID) else name)
