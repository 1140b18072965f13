"""Dysen, the LLM dynamic scene manager: prompt -> dynamic scene graph in three steps.

Dysen-VDM §3.1 (dysen_spec.md §2.1–§2.3):

* Step I, action planning (§2.1): one call turns the caption into timed events;
* Step II (§2.2): ``events_to_dsg`` makes one raw scene graph per time step, no LLM;
* Step III round 1 (§2.3): one call per step m, in order, sees the sentence, the previous *enriched*
  graph, the current and the next raw graphs; the facts it answers are merged into the current graph;
* Step III round 2 (§2.3): one call polishes all enriched graphs at once. The answer must have one graph
  per step; the Step II action facts of each step are merged back into it, so polishing may rephrase
  or drop imagined details but never loses a planned action.

So a plan costs 1 + M + 1 calls (``stats`` counts them), and one more with the optional layout step
(``layout=True``, issue 24 §2): each object's box at every keyframe, as JSON held to a JSON Schema (LVD's
layouts), checked by ``dysen.planner.llm_layout`` and repaired like the other answers; when it stays unusable,
the boxes are imagined (``dysen.planner.layout``) with a warning, and the plan goes on.
Every answer is parsed and validated by the
chosen answer format (``dysen.planner.prompts.formats``). An unusable answer is sent back with the
reader's error as a follow-up turn, at most ``max_repairs`` times per call; an answer that is not even a
chat completion (``UnusableAnswerError``: HTML, broken JSON) is asked again within the same bound, and a
reader that fails in any expected way (huge integers, deep nesting) counts as an unusable answer too. With a
``CachedBackend`` only answers the reader accepted are stored. A plan may take at most ``budget_s`` seconds:
no call starts after that. When a step still fails, the budget is spent, or the backend raises ``LLMError``,
the plan goes to ``fallback.plan(prompt)`` if a fallback planner is set (with a warning naming the step),
else ``PlanningError`` names the step, the attempts and the last error. Demonstrations come from the
``plan`` argument, else from the selector, else none (zero-shot); the same ones serve all three steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from dysen.dsg import DynamicSceneGraph, Event, SceneGraph, events_to_dsg
from dysen.dsg.types import LIMITS
from dysen.errors import DSGError, DysenError
from dysen.planner import prompts
from dysen.planner.backends.base import (
    PAPER_SAMPLING,
    PLAN_DEADLINE,
    ChatBackend,
    ChatMessage,
    LLMError,
    LLMSampling,
    UnusableAnswerError,
)
from dysen.planner.backends.redact import redact
from dysen.planner.cache import CachedBackend
from dysen.planner.motion import with_motion
from dysen.planner.prompts.formats import FORMATS, AnswerFormat, Schema
from dysen.planner.types import Demonstration, DemoSelector, Planner
from dysen.world.colours import DEFAULT_PALETTE

log = logging.getLogger(__name__)

OutputMode = Literal["text", "json"]
_T = TypeVar("_T")
PLAN_BUDGET_S = 600.0
"""Default seconds one plan may spend on LLM calls (``DysenSettings.budget_s``, ``PlannerOptions.plan_budget_s``)."""
_READ_ERRORS = (DSGError, ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError)
"""What a reader may raise on a hostile answer (e.g. ``ValueError: Exceeds the limit (4300 digits)``): the
answer is unusable, repaired, then the fallback; anything else is a bug and propagates."""


class PlanningError(DysenError):
    """A Dysen step got no usable answer from the LLM; ``step`` and ``attempts`` say where and how often."""

    def __init__(self, step: str, attempts: int, reason: str) -> None:
        self.step = step
        self.attempts = attempts
        self.reason = redact(reason)  # it may quote a server's words
        super().__init__(
            f"Dysen {step} failed after {attempts} LLM call(s): {self.reason}. Check the LLM endpoint and model, "
            "raise max_repairs, or give DysenPlanner a fallback planner."
        )


@dataclass(frozen=True)
class DysenSettings:
    """How ``DysenPlanner`` asks: demonstrations, answer format, repairs, sampling and which steps run."""

    shots: int = 8
    """Demonstrations asked of the selector (the paper's K = 8)."""
    output: OutputMode = "text"
    """Answer format: the paper's tuple text, or JSON held to a JSON Schema (structured output)."""
    max_repairs: int = 2
    """Follow-up turns quoting the error after an unusable answer, per call."""
    sampling: LLMSampling = PAPER_SAMPLING
    """Decoding settings of every call (the paper's: temperature 0, 512 tokens)."""
    imagination: bool = True
    """Run Step III round 1 (per-step enrichment)."""
    polish: bool = True
    """Run Step III round 2 (global polish)."""
    max_steps: int = 32
    """The most time steps a plan may span: each costs one imagination call."""
    budget_s: float = PLAN_BUDGET_S
    """Seconds one plan may spend on LLM calls; no call starts after that (then the fallback)."""
    layout: bool = False
    """Run the layout step after Step III: each object's box at every step, as JSON (issue 24 §2); off by default."""

    def __post_init__(self) -> None:
        if self.output not in FORMATS:
            raise DysenError(f"output must be one of {sorted(FORMATS)}, got {self.output!r}")
        if self.shots < 0 or self.max_repairs < 0 or self.max_steps < 1:
            raise DysenError("shots and max_repairs must be >= 0 and max_steps >= 1")
        if not self.budget_s > 0:  # also refuses NaN
            raise DysenError(f"budget_s must be a positive number of seconds, got {self.budget_s}")


@dataclass(frozen=True)
class PlannerStats:
    """Totals of one planner: plans asked, LLM calls (repairs included), repairs, fallbacks, failures raised."""

    plans: int = 0
    calls: int = 0
    repairs: int = 0
    fallbacks: int = 0
    failures: int = 0


class DysenPlanner:
    """The LLM planner of Dysen-VDM (module docstring); safe to call from several threads."""

    def __init__(
        self,
        backend: ChatBackend,
        *,
        selector: DemoSelector | None = None,
        shots: int = 8,
        output: OutputMode = "text",
        max_repairs: int = 2,
        fallback: Planner | None = None,
        sampling: LLMSampling = PAPER_SAMPLING,
        imagination: bool = True,
        polish: bool = True,
        max_steps: int = 32,
        budget_s: float = PLAN_BUDGET_S,
        palette: tuple[str, ...] | None = DEFAULT_PALETTE,
        layout: bool = False,
    ) -> None:
        if not isinstance(backend, ChatBackend):
            raise DysenError(f"backend must be a ChatBackend (name, model, complete()), got {type(backend).__name__}")
        self.backend = backend
        self.selector = selector
        self.fallback = fallback
        self.settings = DysenSettings(
            shots=shots,
            output=output,
            max_repairs=max_repairs,
            sampling=sampling,
            imagination=imagination,
            polish=polish,
            max_steps=max_steps,
            budget_s=budget_s,
            layout=layout,
        )
        self.palette = None if palette is None else tuple(palette)
        """The colours the model draws; other colour words are planned as the nearest (``with_motion``); None: any."""
        self._format: AnswerFormat = FORMATS[output]
        self._lock = threading.Lock()
        self._stats = PlannerStats()

    def __repr__(self) -> str:
        return f"DysenPlanner({self.backend!r}, settings={self.settings!r}, fallback={self.fallback!r})"

    @property
    def stats(self) -> PlannerStats:
        """Totals since this planner was made."""
        return self._stats

    def plan(self, prompt: str, demonstrations: Sequence[Demonstration] | None = None) -> DynamicSceneGraph:
        """The DSG of ``prompt``; ``demonstrations`` overrides the selector (an empty list means zero-shot)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise DysenError(f"a prompt must be non-empty text, got {prompt!r}")
        self._count(plans=1)
        demos = self._demonstrations(prompt, demonstrations)
        token = PLAN_DEADLINE.set(time.monotonic() + self.settings.budget_s)
        try:
            return self._run(prompt, demos)
        except PlanningError as err:
            if self.fallback is None:
                self._count(failures=1)
                raise
            self._count(fallbacks=1)
            log.warning("Dysen %s failed (%s); planning %r with the fallback planner", err.step, err.reason, prompt)
            return self.fallback.plan(prompt)
        finally:
            PLAN_DEADLINE.reset(token)

    def _demonstrations(self, prompt: str, given: Sequence[Demonstration] | None) -> list[Demonstration]:
        if given is not None:
            return list(given)
        if self.selector is None or self.settings.shots == 0:
            return []
        return list(self.selector.select(prompt, self.settings.shots))

    def _run(self, caption: str, demos: list[Demonstration]) -> DynamicSceneGraph:
        """Steps I, II and III in order."""
        raw = events_to_dsg(self._plan_actions(caption, demos))
        graphs = raw.graphs
        if self.settings.imagination:
            graphs = self._imagine(caption, raw.graphs, demos)
        if self.settings.polish:
            graphs = self._polish(caption, raw.graphs, graphs, demos)
        dsg = DynamicSceneGraph.from_dict({"events": raw.events, "graphs": graphs})  # DSGError past DSGLimits
        dsg = with_motion(dsg, self.palette)  # every event's canonical motion (dysen.planner.motion)
        return self._layout(caption, dsg) if self.settings.layout else dsg

    def _layout(self, caption: str, dsg: DynamicSceneGraph) -> DynamicSceneGraph:
        """The layout step: the LLM's boxes at every keyframe, validated and repaired; when they stay unusable,
        the imagined layout (``dysen.planner.layout``), with a warning."""
        from dysen.planner.layout import imagine_layout
        from dysen.planner.llm_layout import LAYOUT_SCHEMA, read_layout

        messages = prompts.layout_messages(caption, dsg)
        try:
            boxes = self._ask("layout", messages, lambda text: read_layout(text, dsg), LAYOUT_SCHEMA)
        except PlanningError as err:
            log.warning("Dysen layout failed (%s); the boxes of %r are imagined instead", err.reason, caption)
            return imagine_layout(dsg, seed=0)
        return dsg.model_copy(update={"boxes": boxes, "layout_source": "llm"})

    def _plan_actions(self, caption: str, demos: list[Demonstration]) -> tuple[Event, ...]:
        """Step I: the events of ``caption``."""
        messages = prompts.action_planning_messages(caption, demos, self._format)
        return self._ask("action planning", messages, self._read_events, self._format.events_schema)

    def _read_events(self, text: str) -> tuple[Event, ...]:
        events = self._format.read_events(text)
        if len(events) > LIMITS.max_events:
            raise DSGError(f"the plan has {len(events)} events; use at most {LIMITS.max_events}")
        steps = max(e.end for e in events)
        if steps > self.settings.max_steps:
            limit = self.settings.max_steps
            raise DSGError(f"the plan spans {steps} time steps; use at most {limit} (every end <= {limit}v)")
        return events

    def _imagine(
        self, caption: str, raw: tuple[SceneGraph, ...], demos: list[Demonstration]
    ) -> tuple[SceneGraph, ...]:
        """Step III round 1: enrich each raw graph in time order, seeing the previous enriched one."""
        enriched: list[SceneGraph] = []
        for step, current in enumerate(raw):
            window = (enriched[-1] if enriched else None, current, raw[step + 1] if step + 1 < len(raw) else None)
            messages = prompts.imagination_messages(caption, window, demos, self._format)
            step_name = f"imagination of step {step} of {len(raw)}"
            answer = self._ask(step_name, messages, self._format.read_graph, self._format.graph_schema)
            enriched.append(current.merged(answer))
        return tuple(enriched)

    def _polish(
        self,
        caption: str,
        raw: tuple[SceneGraph, ...],
        enriched: tuple[SceneGraph, ...],
        demos: list[Demonstration],
    ) -> tuple[SceneGraph, ...]:
        """Step III round 2: one consistent sequence, with each step's Step II action facts merged back in."""

        def read(text: str) -> tuple[SceneGraph, ...]:
            graphs = self._format.read_graphs(text)
            if len(graphs) != len(raw):
                raise DSGError(f"the answer has {len(graphs)} scene graphs; give exactly {len(raw)}, one per step")
            return graphs

        messages = prompts.polish_messages(caption, enriched, demos, self._format)
        polished = self._ask("global polish", messages, read, self._format.graphs_schema)
        return tuple(action.merged(graph) for action, graph in zip(raw, polished, strict=True))

    def _ask(self, step: str, messages: list[ChatMessage], read: Callable[[str], _T], schema: Schema | None) -> _T:
        """One call plus at most ``max_repairs`` repairs; ``PlanningError`` when no answer can be read."""
        conversation = list(messages)
        for attempt in range(1, self.settings.max_repairs + 2):
            if time.monotonic() > (PLAN_DEADLINE.get() or float("inf")):
                raise PlanningError(step, attempt - 1, f"the plan's budget of {self.settings.budget_s:g} s is spent")
            self._count(calls=1, repairs=int(attempt > 1))
            try:
                text = self._complete(conversation, schema, read)
            except UnusableAnswerError as err:
                error = str(err)
                log.info("Dysen %s: unusable answer (%s)", step, error)
                continue  # nothing to quote back: ask again
            except LLMError as err:
                raise PlanningError(step, attempt, str(err)) from err
            try:
                return read(text)
            except _READ_ERRORS as err:
                error = redact(str(err))[:500] or type(err).__name__
            log.info("Dysen %s: answer rejected (%s)", step, error)
            conversation += [ChatMessage("assistant", text), prompts.repair_message(error)]
        raise PlanningError(step, self.settings.max_repairs + 1, f"the last answer was unusable: {error}")

    def _complete(self, conversation: list[ChatMessage], schema: Schema | None, read: Callable[[str], object]) -> str:
        """The backend's answer; a response cache stores it only when ``read`` accepts it (issue 22)."""
        sampling = self.settings.sampling
        if isinstance(self.backend, CachedBackend):

            def usable(text: str) -> bool:
                try:
                    read(text)
                except _READ_ERRORS:
                    return False
                return True

            return self.backend.complete(conversation, sampling=sampling, json_schema=schema, validate=usable).text
        return self.backend.complete(conversation, sampling=sampling, json_schema=schema).text

    def _count(self, **deltas: int) -> None:
        with self._lock:
            self._stats = replace(self._stats, **{k: getattr(self._stats, k) + v for k, v in deltas.items()})
