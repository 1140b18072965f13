"""The controlled prompt: the user's prompt, then one phrase per planned object and event, with their token spans.

The cross-attention control (``dysen.backbones.control``) steers the text tokens of each object and event, so each
needs tokens of its own: "a red circle moves right; a red circle; the red circle moves right". The global prompt
comes first and tokenizes exactly as it does alone (its tokens are never biased); the spans are read from the
tokenizer's character offsets (``return_offsets_mapping``: fast T5/UMT5 and CLIP tokenizers), never by searching
the string. A phrase the text encoder's window (Wan 512 tokens, CLIP 77) cuts off is refused: its object or event
could not be steered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dysen.backbones.schedule import ControlError
from dysen.dsg.types import DynamicSceneGraph, Event

SEPARATORS = ("; ", " ; ")
"""Between the prompt and each phrase; the second where the first would change how the prompt's end tokenizes."""

Span = tuple[int, int]  # half-open token positions in the encoded text (special tokens counted)


@dataclass(frozen=True)
class PhrasedPrompt:
    """The text the text encoder reads and where each phrase's tokens are in it."""

    text: str
    prompt_tokens: Span  # the global prompt's own tokens (never biased)
    objects: dict[str, Span]  # object name -> its phrase's tokens
    events: dict[int, Span]  # event index (in the plan) -> its phrase's tokens
    dropped: tuple[str, ...] = ()  # phrases left out because the text encoder could not read them (``drop_cut``)


def adjectives(dsg: DynamicSceneGraph) -> dict[str, tuple[str, ...]]:
    """Each object's one-word attributes in the plan ('red', 'small'), its actions ('jumps') left out."""
    actions = {(event.agent, event.predicate) for event in dsg.events}
    found: dict[str, dict[str, None]] = {}
    for graph in dsg.graphs:
        for fact in graph.attributes:
            if " " not in fact.attribute and (fact.object, fact.attribute) not in actions:
                found.setdefault(fact.object, {})[fact.attribute] = None
    return {name: tuple(words) for name, words in found.items()}


def named(name: str, words: dict[str, tuple[str, ...]]) -> str:
    """'red circle' for 'circle' with the adjective 'red' (one the name holds already is not repeated)."""
    extra = [word for word in words.get(name, ()) if word not in name.split()]
    return " ".join([*extra, name])


def object_phrase(name: str, words: dict[str, tuple[str, ...]] | None = None) -> str:
    """'a red circle'."""
    return f"a {named(name, words or {})}"


def event_phrase(event: Event, words: dict[str, tuple[str, ...]] | None = None) -> str:
    """'the red circle moves right', 'the red circle pushes the blue square'."""
    words = words or {}
    target = f" the {named(event.target, words)}" if event.target else ""
    return f"the {named(event.agent, words)} {event.predicate}{target}"


def phrase_prompt(
    prompt: str,
    objects: Sequence[str],
    events: Sequence[tuple[int, Event]],
    tokenizer: Any,
    max_tokens: int,
    words: dict[str, tuple[str, ...]] | None = None,
    drop_cut: bool = False,
) -> PhrasedPrompt:
    """``prompt`` with the phrases of ``objects`` and of ``events`` ((index, event) pairs) appended, the objects
    described with ``words`` (``adjectives``), and their token spans under ``tokenizer`` reading at most
    ``max_tokens`` tokens; ``ControlError`` when a phrase does not fit in them, or with ``drop_cut`` those phrases
    left out (named in ``dropped``; their objects and events are then not steered)."""
    phrases = [(("object", name), object_phrase(name, words)) for name in objects]
    phrases += [(("event", index), event_phrase(event, words)) for index, event in events]
    alone = tokenizer(prompt, add_special_tokens=False).input_ids
    for separator in SEPARATORS:
        text, chars = prompt, []
        for _, phrase in phrases:
            text += separator
            chars.append((len(text), len(text) + len(phrase)))
            text += phrase
        if tokenizer(text, add_special_tokens=False).input_ids[: len(alone)] == alone:
            break
    else:
        raise ControlError(f"appending phrases changes how the prompt {prompt!r} tokenizes; end it with a word")
    encoded = tokenizer(text, truncation=True, max_length=max_tokens, return_offsets_mapping=True)
    offsets = [(s, e) for s, e in encoded.offset_mapping]
    read_up_to = max((e for s, e in offsets if e > s), default=0)  # characters the kept tokens cover
    cut = [phrase for (key, phrase), (a, b) in zip(phrases, chars, strict=True) if b > read_up_to]
    if cut and drop_cut:
        cut_keys = {key for (key, _), (a, b) in zip(phrases, chars, strict=True) if b > read_up_to}
        kept_objects = [name for name in objects if ("object", name) not in cut_keys]
        kept_events = [(index, event) for index, event in events if ("event", index) not in cut_keys]
        kept = phrase_prompt(prompt, kept_objects, kept_events, tokenizer, max_tokens, words, drop_cut=True)
        return dataclasses.replace(kept, dropped=(*cut, *kept.dropped))
    if cut:
        total = len(tokenizer(text).input_ids)
        raise ControlError(
            f"the backbone's text encoder reads {max_tokens} tokens, and the prompt with the plan's phrases takes "
            f"{total}: {', '.join(repr(p) for p in cut)} would be cut off, so the plan's objects and events would "
            "not all be in the prompt's tokens; shorten the prompt or plan fewer objects and events"
        )
    spans = [_span(offsets, a, b) for a, b in chars]
    prompt_span = _span(offsets, 0, len(prompt)) if prompt else (0, 0)
    return PhrasedPrompt(
        text=text,
        prompt_tokens=prompt_span,
        objects={key[1]: span for (key, _), span in zip(phrases, spans, strict=True) if key[0] == "object"},
        events={key[1]: span for (key, _), span in zip(phrases, spans, strict=True) if key[0] == "event"},
    )


def _span(offsets: list[tuple[int, int]], first: int, stop: int) -> Span:
    """The tokens whose characters meet [first, stop) (special tokens, of no characters, never do)."""
    inside = [i for i, (s, e) in enumerate(offsets) if e > s and s < stop and e > first]
    return (inside[0], inside[-1] + 1) if inside else (0, 0)
