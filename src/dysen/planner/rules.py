"""The rules planner: Dysen's three steps without an LLM (offline default and LLM fallback).

Dysen-VDM §3.2 (dysen_spec.md §2). Deterministic, pure Python (no torch, no NLP library).

Step I, action planning. The prompt is lower-cased, tokenised and cut into sentences at ``. ! ?``.
A sentence is cut into pieces at connectives, commas, semicolons and "and"; a piece that is not a
clause (no verb) is glued back as text, so "a man and a woman dance", "bread and cheese" and
"next to a square and a star" stay one clause. Each connective links a clause to the one before:

* sequence (a new phase): "then", "and then", "after that", "afterwards", "next,", "first" (at the
  start of a sentence), "finally", "later", "eventually", a new sentence, and "A before B";
* reversed sequence: "Before B, A" and "B after A" put A's phase before B's; "After A, B" is in order;
* simultaneity (the same phase): "while", "as", "when", "meanwhile", "simultaneously" and a leading
  "at the same time", also sentence-initially ("While A, B"); a trailing "… at the same time" makes
  every clause since the last sequence connective of the sentence simultaneous;
* a plain "and", comma or semicolon is sequential by default, but continues a simultaneous group
  opened earlier in the sentence: "A while B and C" is one phase. So "a man walks his dog, then
  throws a ball and the dog catches it" gives three phases.

A clause is ``[subject] verb [particles] [object] [prepositional phrases]``. The verb is the first
word after the subject's head that the verb lexicon (with regular and irregular inflections)
recognises as finite, else an "-ing" form, else an unknown word ending in "-s"/"-ed". A clause
starting with a verb inherits the subjects of the previous clause ("… then throws a ball").
Auxiliaries and "not" are read through ("is walking", "does not move"); negated clauses, "stays
still", "there is …", "X is on Y" and clauses without a verb are static: their objects and relations
enter the graphs but they have no event. Predicates are canonical third person singular ("sitting on"
-> "sits on") plus particles ("looks out", "picks up"); every Dynamic Shapes paraphrase
(``vocab.ACTION_PHRASES``) maps to its canonical predicate ("spins around" -> "rotates"; "changes
colour to red" -> "turns" with target "red").

Entities are named by their head noun ("a small red circle" -> "circle", "a bottle of water" ->
"bottle of water"); determiners are dropped, adjectives become attributes (size words normalised to
"small"/"large"). A definite or possessive noun phrase ("the dog", "his dog") names the latest entity
with that head; an indefinite one with new adjectives or "another" makes a new entity named
"<adjective> <noun>". "he/him" refer to the latest male or unspecified person, "she/her" to the latest
female or unspecified person, "it" to the latest non-person other than the clause's agent, "they/them"
to the latest plural entity; with no antecedent they name "man", "woman", "object", "people", and a
verb with no subject at all gets the agent "person". "the blue one" / "a red one" name an object of the latest
noun, a new one where the adjectives differ ("two squares: the blue one jumps and the red one spins" -> "square"
and "red square"); ordinals name members of the group named last ("two cyan squares: the first one slides
left while the other hops" -> "first square" and "other square", each cyan; the same member each time it is
named); a group named one by one that way is dropped when nothing else is said of it.

Timing: the phases split ``num_steps`` evenly, earlier phases taking the extra steps
(``dysen.world.story.phase_spans``); events of one phase share its span; more phases than
steps get one step each. A prompt without events is one static step.

Step III, imagination: every step holds the entities present then (an entity that appears is absent
before its event, one that disappears is absent after it) with their adjectives; "turns <colour>"
switches the colour from the middle step of its event on (as Dynamic Shapes renders it), "grows" /
"shrinks" switch the size after the event. Static relations come from prepositional phrases of noun
phrases ("a red apple on a table" -> (apple, on, table)), locative phrases after an object ("a girl
reads a book in the park" -> (girl, in, park)) and possessives ("his dog" -> (man, has, dog)).
Demonstrations (given, or ``selector.select(prompt, DEMO_SHOTS)``) add their non-action facts whose
objects are all present at the same relative step, except colours and sizes (the prompt decides those)
and relations that contradict one already there (same pair, other predicate). ``imagination=False`` skips
this step (the 'no imagination' ablation): the plan is Step II's raw graphs, the events alone.

Idioms are read as the verb they mean before clauses are cut (``clauses.rewrite``), so no verb, adverb or
quantity becomes an object: "does a little jump" / "takes a leap" -> "jumps" / "leaps", "makes its way" ->
"moves", a passive of a verb of motion ("is moved to the right", "is made bigger", "is nudged left") -> the
active verb, "is gone" -> "disappears", "smaller and smaller" -> "smaller", "both" (and "each" / "all" before
a verb) dropped, so "A and B both jump" is two simultaneous events, and quantities or adverbial idioms after a
verb ("a bit", "in a flash") dropped. A noun phrase after a verb that names a measure, a place of the screen, a
state or the motion itself ("grows in size", "springs into the air", "enters the scene", "goes invisible", "makes a
complete rotation"; ``lexicon.COMPLEMENT_NOUNS``) stays in the predicate and is no object; "the square's colour
changes" is the square's event. Every event's canonical motion is set by ``dysen.planner.motion``.

Known limits: no parse trees, so long-distance attachment, relative clauses, other passives, questions,
conditionals and lists of more than one verb per clause are read shallowly; words the lexicons lack
are guessed by their endings; "when" is always simultaneity; events never overlap partially.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from dysen.dsg.convert import events_to_dsg
from dysen.dsg.types import MAX_STEPS, DynamicSceneGraph, Event, SceneGraph, describe_error
from dysen.errors import DysenError
from dysen.planner.clauses import Clause, Mention, parse
from dysen.planner.lexicon import (
    AFTER,
    BEFORE,
    COLOUR_WORDS,
    CONNECTIVES,
    FEMALE_NOUNS,
    LOCATIVES,
    MALE_NOUNS,
    NUMBERS,
    PERSON_NOUNS,
    PLAIN,
    PREPOSITIONS,
    PRONOUNS,
    SEQ,
    SIM,
    SIZE_NAMES,
    START,
    is_plural,
    tokenise,
)
from dysen.planner.motion import canonical_motion, with_motion
from dysen.planner.types import Demonstration, DemoSelector
from dysen.world.colours import DEFAULT_PALETTE
from dysen.world.story import phase_spans

__all__ = ["CONNECTIVES", "DEMO_SHOTS", "MAX_PROMPT_CHARS", "PREPOSITIONS", "RulesPlanError", "RulesPlanner"]

MAX_PROMPT_CHARS = 2000
"""Longest prompt the planner accepts."""

DEMO_SHOTS = 4
"""How many demonstrations to ask the selector for."""


class RulesPlanError(DysenError, ValueError):
    """The rules planner cannot plan this prompt (empty, too long, or without any clause)."""


# -- Step I: who is who ---------------------------------------------------------------------------


@dataclass
class _Entity:
    """An object of the scene: its unique name, head noun, kind (person/thing/plural) and attributes."""

    name: str
    head: str
    kind: str
    attributes: list[str]


@dataclass
class _Discourse:
    """The entities mentioned so far (most recent last) and the static relations between them."""

    entities: list[_Entity] = field(default_factory=list)
    recent: list[_Entity] = field(default_factory=list)
    relations: list[tuple[str, str, str]] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)
    """Plural entities whose members were named one by one ("two squares: the blue one …, the red one …")."""

    def resolve(self, mention: Mention, exclude: str | None = None) -> _Entity:
        """The entity ``mention`` refers to (see the module docstring), registering its facts."""
        if mention.head in PRONOUNS and mention.name == mention.head:
            entity = self._pronoun(mention.head, exclude)
        elif mention.name == "one":  # "the blue one": an object of the noun named last
            entity = self._one(mention, exclude)
        elif (ordinal := _ordinal(mention)) is not None:  # "the first one", "the other": one of the group named last
            entity = self._member(ordinal, exclude)
        elif mention.name.split()[0] == "same" and self.recent:  # "the same shape": one named before
            entity = self._same(mention.head, exclude)
        else:
            entity = self._noun(mention)
        self.recent = [e for e in self.recent if e is not entity] + [entity]
        if mention.owner is not None:
            self.relations.append((self.resolve(mention.owner, exclude=entity.name).name, "has", entity.name))
        for prep, place in mention.places:
            self.relations.append((entity.name, prep, self.resolve(place, exclude=entity.name).name))
        return entity

    def _pronoun(self, pronoun: str, exclude: str | None) -> _Entity:
        kinds, default = PRONOUNS[pronoun]
        for entity in reversed(self.recent):
            if entity.kind in kinds and entity.name != exclude:
                return entity
        if kinds == ("plural",):
            for entity in reversed(self.recent):
                if entity.name != exclude:
                    return entity
        return self._new(default, default, kinds[0], [])

    def _one(self, mention: Mention, exclude: str | None) -> _Entity:
        """What "the blue one" / "a red one" names: an object of the latest noun (singular), a new one where its
        adjectives differ from the last one's ("a red circle and a blue one" are two circles); "object" when no noun
        came before."""
        earlier = next((e for e in reversed(self.recent) if e.name != exclude and e.head not in PRONOUNS), None)
        if earlier is None:
            return self._noun(Mention("object", "object", mention.adjectives, mention.determiner))
        if earlier.kind == "plural":
            self.groups.add(earlier.name)
        head = _singular(earlier.head)
        determiner = "a" if mention.adjectives else mention.determiner
        return self._noun(Mention(head, head, mention.adjectives, determiner))

    def _member(self, ordinal: str, exclude: str | None) -> _Entity:
        """What "the first one" / "the other" names: the ``ordinal`` member of the group named last ("two cyan
        squares": "first square", cyan), the same member each time it is named; of the latest noun when no group came
        before ("a circle …, then the other one")."""
        earlier = [e for e in reversed(self.recent) if e.name != exclude and e.head not in PRONOUNS]
        group = next((e for e in earlier if e.kind == "plural"), earlier[0] if earlier else None)
        if group is None:
            return self._noun(Mention("object", f"{ordinal} object", (), "the"))
        if group.kind == "plural":
            self.groups.add(group.name)
        head = _singular(group.head)
        name = f"{ordinal} {head}"
        known = next((e for e in self.entities if e.name == name), None)
        if known is not None:
            return known
        attributes = [a for a in group.attributes if a not in NUMBERS] if group.kind == "plural" else []
        return self._new(name, head, _kind_of(head), attributes)

    def without_unused_groups(self, events: Sequence[Event]) -> None:
        """Drop the groups whose members were named one by one when nothing else is said of the group itself."""
        used = {e.agent for e in events} | {e.target for e in events} | {n for r in self.relations for n in r[::2]}
        self.entities = [e for e in self.entities if e.name not in self.groups - used]

    def _same(self, head: str, exclude: str | None) -> _Entity:
        """The latest entity with this head noun ("the same square"), else the latest one ("the same shape")."""
        earlier = [e for e in reversed(self.recent) if e.name != exclude] or list(reversed(self.recent))
        return next((e for e in earlier if e.head == head), earlier[0])

    def _noun(self, mention: Mention) -> _Entity:
        same = [e for e in reversed(self.recent) if e.head == mention.head and e.name.endswith(mention.name)]
        fitting = [e for e in same if set(mention.adjectives) <= set(e.attributes)]
        indefinite = mention.determiner in ("a", "an", "another", "other")
        conflict = bool(same) and not fitting and _conflicts(mention.adjectives, same[0].attributes)
        distinct = mention.determiner in ("another", "other") or indefinite and conflict
        if same and not distinct:
            entity = (fitting or same)[0]
            entity.attributes += [a for a in mention.adjectives if not _conflicts((a,), entity.attributes)]
            return entity
        new = sorted((a for a in mention.adjectives if not same or a not in same[0].attributes), key=_not_colour)
        name = mention.name if not same else f"{(new or ['other'])[0]} {mention.name}"
        return self._new(name, mention.head, _kind_of(mention.head), list(mention.adjectives))

    def _new(self, name: str, head: str, kind: str, attributes: list[str]) -> _Entity:
        taken = {e.name for e in self.entities}
        unique = next(n for n in (name, *(f"{name} {k}" for k in range(2, len(taken) + 3))) if n not in taken)
        entity = _Entity(unique, head, kind, attributes)
        self.entities.append(entity)
        return entity


ORDINALS = frozenset("first second third fourth fifth last other former latter".split())
"""Words that pick one member of a group without a noun: "the first one", "the other"."""


def _ordinal(mention: Mention) -> str | None:
    """The ordinal of a mention that names a group member by it alone ("the first one", "the other", "the second"),
    else None."""
    words = mention.name.split()
    words = words[:-1] if words[-1:] == ["one"] else words
    return words[0] if len(words) == 1 and words[0] in ORDINALS and mention.head in (*ORDINALS, "one") else None


def _kind_of(head: str) -> str:
    """male / female / person / plural / thing: what pronouns may refer to an entity with this head noun."""
    for kind, nouns in (("male", MALE_NOUNS), ("female", FEMALE_NOUNS), ("person", PERSON_NOUNS)):
        if head in nouns:
            return kind
    return "plural" if is_plural([head]) else "thing"


def _singular(noun: str) -> str:
    """The singular of a plural noun ("squares" -> "square", "boxes" -> "box", "berries" -> "berry"); else the noun."""
    if not is_plural([noun]):
        return noun
    if noun.endswith("ies"):
        return noun[:-3] + "y"
    if noun.endswith(("ches", "shes", "xes", "sses", "zes")):
        return noun[:-2]
    return noun[:-1]


def _not_colour(adjective: str) -> bool:
    """Sort key putting colours first (the most telling adjective to name a second object by)."""
    return adjective not in COLOUR_WORDS


def _conflicts(new: Sequence[str], old: Sequence[str]) -> bool:
    """Whether ``new`` sets a colour or size that ``old`` already has with another value (or repeats one)."""
    for group in (COLOUR_WORDS, set(SIZE_NAMES.values())):
        if any(a in group for a in new) and any(a in group for a in old) and not set(new) & set(old) & group:
            return True
    return False


@dataclass(frozen=True)
class _Reading:
    """A clause after reference resolution: its link, and the (agent, predicate, target) triplets of its events."""

    links: frozenset[str]
    trailing: bool
    triplets: tuple[tuple[str, str, str | None], ...]


def _read(sentences: list[list[Clause]], discourse: _Discourse) -> list[list[_Reading]]:
    """Resolve every clause in text order; static facts go into ``discourse``."""
    agents: list[str] = []
    readings = []
    for sentence in sentences:
        readings.append([])
        for clause in sentence:
            if clause.subjects:
                agents = [discourse.resolve(m).name for m in clause.subjects]
            elif clause.predicate is None:
                for _, place in clause.places:
                    discourse.resolve(place)
                readings[-1].append(_Reading(clause.links, clause.trailing, ()))
                continue
            elif not agents:
                agents = [discourse.resolve(Mention("person", "person")).name]
            for agent in agents:
                entity = next(e for e in discourse.entities if e.name == agent)
                entity.attributes += [a for a in clause.attributes if a not in entity.attributes]
                for prep, place in clause.places:
                    if clause.predicate is not None and prep not in LOCATIVES:
                        continue  # "throws a ball to the dog": only where the agent is becomes a fact
                    discourse.relations.append((agent, prep, discourse.resolve(place, exclude=agent).name))
            targets = [t if isinstance(t, str) else discourse.resolve(t, agents[0]).name for t in clause.targets]
            triplets = (
                ()
                if clause.predicate is None
                else tuple((agent, clause.predicate, target) for agent in agents for target in targets or [None])
            )
            readings[-1].append(_Reading(clause.links, clause.trailing, triplets))
    return readings


# -- Step I: timing -------------------------------------------------------------------------------


def _kind(links: frozenset[str]) -> str:
    """The link a set of connectives makes: before/after, then simultaneity, then sequence, then plain."""
    return next((k for k in (BEFORE, AFTER, SIM, SEQ, PLAIN) if k in links), START)


def _sentence_kinds(sentence: list[_Reading]) -> list[str]:
    """Each clause's link kind; "… at the same time" turns its group's plain links into simultaneity."""
    kinds = [_kind(r.links) for r in sentence]
    if kinds[:2] in ([BEFORE, PLAIN], [AFTER, PLAIN]):
        kinds[1] = SEQ  # the main clause after "Before B," / "After A," starts its own group
    for end, reading in enumerate(sentence):
        if reading.trailing:
            for i in range(end, 0, -1):
                if kinds[i] not in (PLAIN, SIM):
                    break
                kinds[i] = SIM
    return kinds


def _phases(readings: list[list[_Reading]]) -> list[list[_Reading]]:
    """Order the event clauses into phases of simultaneous clauses (rules in the module docstring)."""
    phases: list[list[_Reading]] = []
    for sentence in readings:
        clauses = [(k, r) for k, r in zip(_sentence_kinds(sentence), sentence, strict=True) if r.triplets]
        group: list[_Reading] | None = None
        deferred: _Reading | None = None
        in_sim = False
        for position, (kind, reading) in enumerate(clauses):
            joinable = group if group is not None else phases[-1] if phases and position == 0 else None
            if position == 0 and kind == BEFORE:
                deferred = reading
            elif kind == AFTER and group is not None:
                phases.insert(next(i for i, p in enumerate(phases) if p is group), [reading])
            elif joinable is not None and (kind == SIM or kind == PLAIN and in_sim):
                joinable.append(reading)
                in_sim = True
            else:
                if deferred is not None and group is not None:
                    phases.append([deferred])
                    deferred = None
                group, in_sim = [reading], kind == SIM  # a leading "While A, B" opens a simultaneous group
                phases.append(group)
        if deferred is not None:
            phases.append([deferred])
    return phases


def _schedule(readings: list[list[_Reading]], num_steps: int) -> list[Event]:
    """Events with spans: the phases split the steps evenly (``phase_spans``), one step each if they outnumber them."""
    phases = _phases(readings)
    if len(phases) > MAX_STEPS:
        raise RulesPlanError(
            f"the prompt has {len(phases)} sequential actions but a plan holds at most {MAX_STEPS}; shorten it"
        )
    spans = phase_spans(len(phases), max(num_steps, len(phases))) if phases else []
    return [
        Event(agent=agent, predicate=predicate, target=target, start=start, end=end,
              motion=canonical_motion(predicate, target))  # fmt: skip
        for (start, end), phase in zip(spans, phases, strict=True)
        for reading in phase
        for agent, predicate, target in reading.triplets
    ]


# -- Step III: imagination ------------------------------------------------------------------------


def _imagine(base: DynamicSceneGraph, discourse: _Discourse, demos: Sequence[Demonstration]) -> DynamicSceneGraph:
    """Add to each step the entities present, their attributes as of then, static relations and demo facts."""
    steps = base.num_steps
    graphs = []
    for step, graph in enumerate(base.graphs):
        present = [e for e in discourse.entities if _present(e.name, base.events, step, steps)]
        names = {e.name for e in present}
        scene = SceneGraph.from_facts(
            relations=[r for r in dict.fromkeys(discourse.relations) if r[0] in names and r[2] in names],
            attributes=[(e.name, a) for e in present for a in _attributes_at(e, base.events, step)],
            objects=[e.name for e in present],
        )
        graph = graph.merged(scene)
        graphs.append(graph.merged(_demo_facts(graph, demos, step, steps)))
    return DynamicSceneGraph(events=base.events, graphs=tuple(graphs))


def _present(name: str, events: Sequence[Event], step: int, steps: int) -> bool:
    """Absent before an appearing event and after a disappearing one of the object (by their canonical motion:
    "emerges", "vanishes" too); present otherwise."""
    for event in events:
        kind = event.motion.kind if event.motion is not None else None
        if event.agent == name and (
            (kind, step < event.start) == ("appear", True) or (kind, step >= event.end) == ("disappear", True)
        ):
            return False
    return True


def _attributes_at(entity: _Entity, events: Sequence[Event], step: int) -> list[str]:
    """The entity's attributes at ``step``: colour switched from the middle of "turns", size after grow/shrink."""
    attributes = list(entity.attributes)
    for event in events:
        if event.agent != entity.name:
            continue
        kind = event.motion.kind if event.motion is not None else None
        if kind == "change_colour" and event.target in COLOUR_WORDS and step >= (event.start + event.end) // 2:
            attributes = [a for a in attributes if a not in COLOUR_WORDS] + [event.target]
        size = {"grow": "large", "shrink": "small"}.get(kind or "")
        if size and step >= event.end:
            attributes = [a for a in attributes if a not in SIZE_NAMES] + [size]
    return attributes


def _demo_facts(graph: SceneGraph, demos: Sequence[Demonstration], step: int, steps: int) -> SceneGraph:
    """Non-action facts of the demos' step at the same relative time whose objects are all in ``graph``,
    skipping colours, sizes and relations that contradict one already there; most useful demo first."""
    present = set(graph.objects)
    pairs = {(r.subject, r.object) for r in graph.relations}
    relations: list[tuple[str, str, str]] = []
    attributes: list[tuple[str, str]] = []
    for demo in reversed(demos):
        actions = {e.predicate for e in demo.dsg.events}
        source = demo.dsg.graphs[step * demo.dsg.num_steps // steps]
        for rel in source.relations:
            if (
                {rel.subject, rel.object} <= present
                and rel.predicate not in actions
                and ((rel.subject, rel.object) not in pairs)
            ):
                relations.append(rel.as_tuple())
                pairs.add((rel.subject, rel.object))
        attributes += [
            a.as_tuple()
            for a in source.attributes
            if a.object in present and a.attribute not in actions | COLOUR_WORDS and a.attribute not in SIZE_NAMES
        ]
    return SceneGraph.from_facts(relations=relations, attributes=attributes)


# -- the planner ----------------------------------------------------------------------------------


class RulesPlanner:
    """Dysen's three steps by rules (module docstring): any prompt -> a ``DynamicSceneGraph`` or ``RulesPlanError``."""

    def __init__(
        self, num_steps: int = 8, selector: DemoSelector | None = None, *, imagination: bool = True,
        palette: tuple[str, ...] | None = DEFAULT_PALETTE,
    ) -> None:  # fmt: skip
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= MAX_STEPS:
            raise RulesPlanError(f"num_steps must be an integer in [1, {MAX_STEPS}], got {num_steps!r}")
        self.num_steps = num_steps
        self.selector = selector
        self.imagination = imagination
        """False: stop after Step II (the raw per-step graphs of the events; the 'no imagination' ablation)."""
        self.palette = None if palette is None else tuple(palette)
        """The colours the model draws; other colour words are planned as the nearest (``with_motion``); None: any."""

    def __repr__(self) -> str:
        return (f"RulesPlanner(num_steps={self.num_steps}, selector={self.selector!r}, imagination={self.imagination}"
                + ("" if self.palette == DEFAULT_PALETTE else f", palette={self.palette!r}") + ")")  # fmt: skip

    def plan(self, prompt: str, demonstrations: Sequence[Demonstration] | None = None) -> DynamicSceneGraph:
        """Plan ``prompt``; ``demonstrations`` (else the selector's, else none) only add imagined facts."""
        try:
            return with_motion(self._plan(prompt, demonstrations), self.palette)
        except ValidationError as err:  # a name or a count of the prompt over dysen.dsg.DSGLimits
            raise RulesPlanError(f"the prompt's plan is too large: {describe_error(err)}") from None

    def _plan(self, prompt: str, demonstrations: Sequence[Demonstration] | None) -> DynamicSceneGraph:
        sentences = parse(_checked_tokens(prompt))
        discourse = _Discourse()
        events = _schedule(_read(sentences, discourse), self.num_steps)
        discourse.without_unused_groups(events)
        if not discourse.entities:
            raise RulesPlanError(
                f"found no clause or noun phrase in the prompt {prompt[:80]!r}; describe who does what, "
                "e.g. 'a red circle moves right, then a blue square jumps'"
            )
        base = events_to_dsg(events) if events else DynamicSceneGraph(graphs=(SceneGraph(),))
        if not self.imagination:
            return base
        if demonstrations is None:
            demonstrations = self.selector.select(prompt, DEMO_SHOTS) if self.selector is not None else ()
        return _imagine(base, discourse, demonstrations)


def _checked_tokens(prompt: str) -> list[str]:
    """The prompt's tokens, or ``RulesPlanError`` for a non-string, empty or over-long prompt."""
    if not isinstance(prompt, str):
        raise RulesPlanError(f"the prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise RulesPlanError("the prompt is empty; describe a scene, e.g. 'a red circle moves right'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RulesPlanError(
            f"the prompt has {len(prompt)} characters; the rules planner reads at most "
            f"{MAX_PROMPT_CHARS}, so shorten it"
        )
    return tokenise(prompt)
