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
verb with no subject at all gets the agent "person".

Timing: the phases split ``num_steps`` evenly, earlier phases taking the extra steps
(``dysen.data.shapes.story.phase_spans``); events of one phase share its span; more phases than
steps get one step each. A prompt without events is one static step.

Step III, imagination: every step holds the entities present then (an entity that appears is absent
before its event, one that disappears is absent after it) with their adjectives; "turns <colour>"
switches the colour from the middle step of its event on (as Dynamic Shapes renders it), "grows" /
"shrinks" switch the size after the event. Static relations come from prepositional phrases of noun
phrases ("a red apple on a table" -> (apple, on, table)), locative phrases after an object ("a girl
reads a book in the park" -> (girl, in, park)) and possessives ("his dog" -> (man, has, dog)).
Demonstrations (given, or ``selector.select(prompt, DEMO_SHOTS)``) add their non-action facts whose
objects are all present at the same relative step, except colours and sizes (the prompt decides those)
and relations that contradict one already there (same pair, other predicate).

Known limits: no parse trees, so long-distance attachment, relative clauses, passives, questions,
conditionals and lists of more than one verb per clause are read shallowly; words the lexicons lack
are guessed by their endings; "when" is always simultaneity; events never overlap partially.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dysen.data.shapes import vocab
from dysen.data.shapes.story import phase_spans
from dysen.dsg.convert import events_to_dsg
from dysen.dsg.types import MAX_STEPS, DynamicSceneGraph, Event, SceneGraph
from dysen.errors import DysenError
from dysen.planner.types import Demonstration, DemoSelector

MAX_PROMPT_CHARS = 2000
"""Longest prompt the planner accepts."""

DEMO_SHOTS = 4
"""How many demonstrations to ask the selector for."""


class RulesPlanError(DysenError, ValueError):
    """The rules planner cannot plan this prompt (empty, too long, or without any clause)."""


# -- lexicons -------------------------------------------------------------------------------------


def _phrases_of(text: str) -> tuple[tuple[str, ...], ...]:
    """Comma-separated phrases as token tuples: "next to, on" -> (("next", "to"), ("on",))."""
    return tuple(tuple(p.split()) for p in text.split(","))


# link kinds between a clause and the one before it
START, SEQ, SIM, BEFORE, AFTER, PLAIN = "start", "seq", "sim", "before", "after", "plain"
# connective phrases (as token tuples) and the link they make; "first"/"next" have extra conditions
CONNECTIVES: dict[tuple[str, ...], str] = {
    **dict.fromkeys(
        _phrases_of(
            "then, and then, after that, after this, afterwards, afterward, next, first, finally, and finally, "
            "later, and later, eventually, subsequently"
        ),
        SEQ,
    ),
    **dict.fromkeys(
        _phrases_of(
            "while, whilst, as, when, meanwhile, and meanwhile, simultaneously, and simultaneously, "
            "at the same time, and at the same time"
        ),
        SIM,
    ),
    **{("before",): BEFORE, ("after",): AFTER, ("and",): PLAIN, (",",): PLAIN, (";",): PLAIN},
}
# the longest connective, in tokens
_LONGEST_CONNECTIVE = max(len(c) for c in CONNECTIVES)
# simultaneity markers that may close a group ("A and B at the same time")
TRAILING_SIM: frozenset[tuple[str, ...]] = frozenset(_phrases_of("at the same time, simultaneously"))
# single adverbial connectives that may sit between a subject and its verb ("the dog then catches it")
MEDIAL: frozenset[str] = frozenset("then finally later meanwhile simultaneously eventually".split())

# determiners and quantifiers dropped from names
DETERMINERS: frozenset[str] = frozenset("a an the this that these those some any each every another other".split())
# number words kept as attributes ("two people" -> (people, two))
NUMBERS: frozenset[str] = frozenset("one two three four five six seven eight nine ten several many few".split())
# possessive determiners and the pronoun that finds their owner
POSSESSIVES: dict[str, str] = {"his": "he", "her": "she", "its": "it", "their": "they"}
# pronouns: the kinds of entity they may refer to, and the name used when nothing earlier fits
PRONOUNS: dict[str, tuple[tuple[str, ...], str]] = {
    **dict.fromkeys(("he", "him"), (("male", "person"), "man")),
    **dict.fromkeys(("she", "her"), (("female", "person"), "woman")),
    **dict.fromkeys(("they", "them"), (("plural",), "people")),
    "it": (("thing",), "object"),
}
# nouns of men and boys (what "he" refers to)
MALE_NOUNS: frozenset[str] = frozenset("man boy gentleman guy father dad son husband brother king".split())
# nouns of women and girls (what "she" refers to)
FEMALE_NOUNS: frozenset[str] = frozenset("woman lady girl mother mom daughter wife sister queen".split())
# other nouns of people (what "he" or "she" may refer to)
PERSON_NOUNS: frozenset[str] = frozenset(
    "person child kid baby player chef doctor teacher student worker friend dancer singer driver rider athlete "
    "soldier officer farmer someone".split()
)
# colour adjectives (the renderer's colours plus common ones)
COLOUR_WORDS: frozenset[str] = frozenset(vocab.COLOURS) | {"white", "black", "pink", "brown", "grey", "gray"}
# size adjectives and the size name they mean
SIZE_NAMES: dict[str, str] = {
    **{word: size for size, words in vocab.SIZE_WORDS.items() for word in words},
    **{"tiny": "small", "huge": "large", "giant": "large"},
}
# common adjectives that end in none of the endings ``_is_adjective`` knows
ADJECTIVES: frozenset[str] = frozenset(
    "old young happy sad angry cute tall short long fat thin dark bright new hot cold wet dry fast slow quick "
    "quiet loud empty full round wooden golden clean open elderly".split()
)
# adverbs read through and dropped (plus any word ending in "-ly" that is not in NOT_ADVERBS)
ADVERBS: frozenset[str] = frozenset("very also just again slowly quickly together gently now".split())
# words ending in "-ly" that are not adverbs
NOT_ADVERBS: frozenset[str] = frozenset("fly family lily belly jelly bully ally rally only holy".split())
# prepositions and particles that join a verb's predicate or start a prepositional phrase, longest first
PREPOSITIONS: tuple[tuple[str, ...], ...] = _phrases_of(
    "in front of, on top of, next to, out of, away from, close to, on, in, into, onto, out, off, up, down, over, "
    "under, through, across, along, around, past, to, towards, toward, at, with, from, behind, near, by, beside, "
    "inside, outside, against, for, about, away, back, left, right, forward, upward, downward, above, below, "
    "onward, home"
)
# directions: particles of a verb ("turns left") that never start a noun's prepositional phrase
DIRECTIONS: frozenset[str] = frozenset("left right forward upward downward onward home away back".split())
# prepositions of place: such a phrase after an object says where the agent is (kept as a relation)
LOCATIVES: frozenset[str] = frozenset(
    " ".join(p)
    for p in _phrases_of(
        "in, on, at, near, by, beside, behind, under, above, below, inside, outside, next to, in front of, "
        "on top of, close to"
    )
)
# particles that may follow an object ("picks the ball up")
LATE_PARTICLES: frozenset[str] = frozenset("up down out off away back over".split())
# auxiliaries and modals, read through to the main verb
AUXILIARIES: frozenset[str] = frozenset("be do have will would can could may might shall should must".split())
# verbs that take a second verb ("starts to run", "keeps walking"): the second is the event
CATENATIVES: frozenset[str] = frozenset("start begin continue try keep".split())
# verb phrases that describe no motion (the clause is static)
STATIC_PHRASES: frozenset[tuple[str, ...]] = frozenset(
    _phrases_of("stays still, remains still, stands still, stays put, keeps still, waits")
)
# base forms of known verbs (regular inflections are derived; irregular ones are listed below)
VERBS: frozenset[str] = frozenset(
    """
    be do have will would can could may might shall should must
    move slide travel go rise float sink drop jump hop leap bounce grow get expand swell shrink contract dwindle
    rotate spin twirl appear show fade come disappear vanish turn become change stay remain
    walk run sit stand lie lay throw catch eat drink take give see look watch meet greet hold carry push pull
    pick put make open close play ride drive fly swim climb dance sing talk speak read write cook cut wash clean
    kick hit chase follow enter leave exit shake wave hug kiss smile laugh cry sleep wake fall roll bark fetch
    pour fill paint draw build break bring buy sell wear use skate ski surf paddle row sail land start
    begin continue try keep stop reach touch grab lift place set hang raise lower cross pass wait sweep
    point nod bow clap crawl lean rest relax work type drag toss shoot score serve swing bend stretch
    feed pet brush comb dress spill mix stir chop slice fry bake boil blow light shine glow burn melt flow
    drip splash dive jog sprint march hike wander stroll bite sniff lick chew fight hunt race dig plant
    water tell ask answer call listen hear smell taste feel think know want like love hate need
    """.split()
)
# irregular inflected forms and their base form, written "base=form/form"
IRREGULAR: dict[str, str] = {
    form: base
    for entry in """
    be=is/are/am/was/were/been/being have=has/had do=does/did/done go=goes/went/gone run=ran sit=sat
    throw=threw/thrown catch=caught eat=ate/eaten drink=drank/drunk take=took/taken give=gave/given see=saw/seen
    come=came get=got/gotten make=made hold=held fly=flew/flown/flies swim=swam/swum ride=rode/ridden
    drive=drove/driven write=wrote/written fall=fell/fallen stand=stood sing=sang/sung begin=began/begun
    break=broke/broken bring=brought buy=bought build=built draw=drew/drawn feed=fed grow=grew/grown hang=hung
    keep=kept leave=left lie=lay/lain/lies/lying lay=laid meet=met put=put read=read rise=rose/risen say=said
    shake=shook/shaken shoot=shot sleep=slept slide=slid speak=spoke/spoken spin=spun swing=swung tell=told
    think=thought wake=woke/woken wear=wore/worn sink=sank/sunk leap=leapt dive=dove blow=blew/blown light=lit
    shine=shone bite=bit/bitten dig=dug feel=felt hear=heard know=knew/known hit=hit cut=cut set=set
    shrink=shrank/shrunk swell=swollen win=won lose=lost
    """.split()
    for base, forms in [entry.split("=")]
    for form in forms.split("/")
}
# Dynamic Shapes paraphrases as token tuples -> (canonical predicate, target); '{colour}' expanded
_SHAPES_PHRASES: dict[tuple[str, ...], tuple[str, str | None]] = {
    tuple(phrase.format(colour=colour).split()): (action.predicate, colour if "{colour}" in phrase else None)
    for action in vocab.ACTIONS
    for template in vocab.ACTION_PHRASES[action.name]
    for phrase in {template, template.replace("colour to", "color to")}
    for colour in (sorted(COLOUR_WORDS) if "{colour}" in phrase else [""])
}
# the longest Dynamic Shapes paraphrase, in tokens
_LONGEST_PHRASE = max(len(p) for p in _SHAPES_PHRASES)

# tokens: words (with one inner apostrophe), numbers and the punctuation that structures clauses
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+|[.!?;:,]")
# contraction endings and what they stand for ("'s" is resolved by context)
_CONTRACTIONS = {"n't": "not", "'re": "are", "'m": "am", "'ll": "will", "'ve": "have", "'d": "would"}
# stems of negative contractions that change ("won't", "can't")
_NEGATED_STEMS = {"wo": "will", "ca": "can", "sha": "shall"}
# words a subject cannot end with (so the next word is its head noun, not a verb)
_NOT_SUBJECT_END = DETERMINERS | NUMBERS | COLOUR_WORDS | frozenset(SIZE_NAMES) | frozenset(POSSESSIVES) | {"and", ","}
# endings of unknown words that may be verbs ("zooms", "zoomed") but not "-ss", "-us", "-is" nouns
_VERB_ENDING = re.compile(r"^[a-z]{2,}(?:[^su'i]s|ed)$")


# -- tokens and verbs -----------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    """Lower-cased tokens with contractions expanded ("doesn't" -> "does not", "man's" -> "man 's")."""
    out: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        stem, _, tail = token.partition("'")
        tail = "'" + tail if tail else ""
        if token.endswith("n't"):
            out += [_NEGATED_STEMS.get(token[:-3], token[:-3]), "not"]
        elif tail in _CONTRACTIONS:
            out += [stem, _CONTRACTIONS[tail]]
        elif tail == "'s":
            out += [stem, "is" if stem in ("it", "he", "she", "that", "there", "what") else "'s"]
        else:
            out.append(stem if tail else token)
    return [t for t in out if t]


def _lemma(token: str) -> tuple[str, str] | None:
    """``(base, form)`` of a known verb form, form one of base/s/ing/past; None if not a known verb."""
    if token in IRREGULAR:
        base = IRREGULAR[token]
        form = "s" if token in ("is", "has", "does", "goes", "flies", "lies") else "base" if token == "are" else "past"
        return base, "ing" if token.endswith("ing") else form
    if token in VERBS:
        return token, "base"
    candidates = {
        "s": (token[:-1], token[:-2], token[:-3] + "y"),
        "ing": (token[:-3], token[:-3] + "e", token[:-4]),
        "ed": (token[:-2], token[:-1], token[:-3], token[:-3] + "y"),
    }
    for suffix, bases in candidates.items():
        if token.endswith(suffix) and len(token) > len(suffix) + 1:
            for base in bases:
                if base in VERBS:
                    return base, "past" if suffix == "ed" else suffix
    return None


def _third_person(base: str) -> str:
    """The 3rd person singular present of a base form ("catch" -> "catches", "carry" -> "carries")."""
    special = {"be": "is", "have": "has", "do": "does", "go": "goes"}
    if base in special:
        return special[base]
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and len(base) > 1 and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def _guess_base(token: str) -> str:
    """Base form of an unknown "-s"/"-ed" verb ("zooms" -> "zoom")."""
    return token[:-1] if token.endswith("s") else token[:-2]


def _is_plural(subject: list[str]) -> bool:
    """Whether a subject's words make it plural (coordination, a number, a plural pronoun or noun)."""
    if not subject:
        return False
    last = subject[-1]
    return (
        "and" in subject
        or any(w in NUMBERS - {"one"} for w in subject)
        or last in ("they", "we", "you", "i", "people", "children", "men", "women", "kids")
        or (last.endswith("s") and not last.endswith(("ss", "us", "is")))
    )


def _verb_index(tokens: list[str]) -> int | None:
    """Index of the clause's verb (see the module docstring), or None for a verbless piece."""
    if tokens[:1] == ["there"] and tokens[1:2] in (["is"], ["are"], ["was"], ["were"]):
        return 1
    if tokens:
        first = _lemma(tokens[0])
        follows = _lemma(tokens[1]) if len(tokens) > 1 else None
        if first and first[0] not in AUXILIARIES and not (first[1] == "base" and follows and follows[1] == "s"):
            return 0
    for i in range(1, len(tokens)):
        form = _lemma(tokens[i])
        subject, before = tokens[:i], tokens[i - 1]
        if form is None or all(w in DETERMINERS | NUMBERS or w in POSSESSIVES for w in subject):
            continue
        if before in DETERMINERS or before in POSSESSIVES or _lemma(before) and _lemma(before)[0] not in AUXILIARIES:
            continue
        if form[1] in ("s", "past") or form[0] in AUXILIARIES or _is_plural(subject):
            return i
    for i in range(1, len(tokens)):
        if tokens[i].endswith("ing") and _lemma(tokens[i]):
            return i
    for i in range(2, len(tokens)):
        if _VERB_ENDING.match(tokens[i]) and tokens[i - 1] not in _NOT_SUBJECT_END:
            return i
    return None


# -- Step I: sentences, pieces and clauses --------------------------------------------------------


@dataclass
class _Piece:
    """A stretch of a sentence between connectives and its link to the stretch before."""

    links: set[str]
    tokens: list[str]
    joint: list[str] = field(default_factory=list)
    """The connective words before it, put back when the piece is glued to a neighbour as text."""
    trailing: bool = False
    """Closed by "at the same time": the group it ends is simultaneous."""


@dataclass(frozen=True)
class _Mention:
    """A noun phrase: head noun, the name it gives, its adjectives and what it is attached to."""

    head: str
    name: str
    adjectives: tuple[str, ...] = ()
    determiner: str | None = None
    owner: _Mention | None = None
    places: tuple[tuple[str, _Mention], ...] = ()


@dataclass(frozen=True)
class _Clause:
    """One clause: subjects (empty: those of the previous clause), predicate (None: static), targets."""

    links: frozenset[str]
    trailing: bool
    subjects: tuple[_Mention, ...]
    predicate: str | None = None
    targets: tuple[_Mention | str, ...] = ()
    places: tuple[tuple[str, _Mention], ...] = ()
    attributes: tuple[str, ...] = ()


def _sentences(tokens: list[str]) -> list[list[str]]:
    """Split at sentence-final punctuation; empty sentences are dropped."""
    sentences: list[list[str]] = [[]]
    for token in tokens:
        if token in ".!?:":
            sentences.append([])
        else:
            sentences[-1].append(token)
    return [s for s in sentences if s]


def _connective(tokens: list[str], i: int, at_start: bool) -> tuple[str, ...] | None:
    """The longest connective phrase at ``tokens[i]`` ("first" only at a start, "next" only before a comma)."""
    for length in range(min(_LONGEST_CONNECTIVE, len(tokens) - i), 0, -1):
        phrase = tuple(tokens[i : i + length])
        if phrase not in CONNECTIVES:
            continue
        if phrase == ("first",) and not at_start or phrase == ("next",) and tokens[i + 1 : i + 2] != [","]:
            continue
        return phrase
    return None


def _pieces(sentence: list[str]) -> list[_Piece]:
    """Cut a sentence at every connective; adjacent connectives merge into one link."""
    pieces = [_Piece(set(), [])]
    i = 0
    while i < len(sentence):
        phrase = _connective(sentence, i, at_start=len(pieces) == 1 and not pieces[0].tokens)
        if phrase is None:
            pieces[-1].tokens.append(sentence[i])
            i += 1
            continue
        end = i + len(phrase)
        if phrase in TRAILING_SIM and pieces[-1].tokens and (end == len(sentence) or sentence[end] in ",;"):
            pieces[-1].trailing = True
        elif pieces[-1].tokens:
            pieces.append(_Piece({CONNECTIVES[phrase]}, [], list(phrase)))
        else:
            pieces[-1].links.add(CONNECTIVES[phrase])
            pieces[-1].joint += phrase
        i = end
    return [p for p in pieces if p.tokens]


def _glue(pieces: list[_Piece]) -> list[_Piece]:
    """Join verbless pieces to a neighbour: as subject of the next ("the dog | then catches it",
    "a man | and a woman dance") or, otherwise, as text of the previous ("… bread | and cheese")."""
    out: list[_Piece] = []
    pending: _Piece | None = None
    for index, piece in enumerate(pieces):
        if pending is not None:
            piece = _join(pending, piece)
            pending = None
        following = pieces[index + 1] if index + 1 < len(pieces) else None
        if _verb_index(piece.tokens) is not None:
            out.append(piece)
        elif following and (_subject_of(following) or not out and piece.links <= {SEQ, PLAIN}):
            pending = piece
        elif out:
            out[-1].tokens += piece.joint + piece.tokens
            out[-1].trailing |= piece.trailing
        else:
            out.append(piece)
    return out


def _subject_of(piece: _Piece) -> bool:
    """Whether ``piece`` is a verb phrase after a single medial connective, so it takes the piece before as subject."""
    return len(piece.joint) == 1 and piece.joint[0] in MEDIAL and _verb_index(piece.tokens) == 0


def _join(first: _Piece, second: _Piece) -> _Piece:
    """``first`` as the subject of ``second`` (links of both) or as text before it (links of ``first``)."""
    if _subject_of(second):
        return _Piece(first.links | second.links, first.tokens + second.tokens, first.joint, second.trailing)
    return _Piece(first.links, first.tokens + second.joint + second.tokens, first.joint, second.trailing)


def _is_adverb(token: str) -> bool:
    return token in ADVERBS or token.endswith("ly") and token not in NOT_ADVERBS


def _preposition(tokens: Sequence[str], i: int, directions: bool = False) -> tuple[str, ...] | None:
    """The longest preposition at ``tokens[i]``; directions ("left", "back") only when ``directions``."""
    for phrase in PREPOSITIONS:
        if tuple(tokens[i : i + len(phrase)]) == phrase and (directions or phrase[0] not in DIRECTIONS):
            return phrase
    return None


def _clause(piece: _Piece) -> _Clause:
    """Parse one clause (see the module docstring); verbless pieces become static clauses."""
    tokens = [t for t in piece.tokens if not _is_adverb(t) and t not in ",;"]
    link = {"links": frozenset(piece.links), "trailing": piece.trailing}
    verb = _verb_index(tokens)
    if verb is None:
        return _Clause(**link, subjects=_noun_phrases(tokens))
    if tokens[0] == "there" and verb == 1:
        return _Clause(**link, subjects=_noun_phrases(tokens[2:]))
    subjects = _noun_phrases(tokens[:verb])
    lemma = _lemma(tokens[verb])
    base, negated, rest = _main_verb(lemma[0] if lemma else _guess_base(tokens[verb]), tokens[verb + 1 :])
    if base == "be" or base == "have" and rest:
        return _static_clause(link, subjects, base, rest)
    words = (_third_person(base), *rest)
    if negated or words[:2] in STATIC_PHRASES or words[:1] in STATIC_PHRASES:
        return _Clause(**link, subjects=subjects, places=_phrases(rest))
    for length in range(min(_LONGEST_PHRASE, len(words)), 0, -1):
        if words[:length] in _SHAPES_PHRASES:
            predicate, colour = _SHAPES_PHRASES[words[:length]]
            targets = (colour,) if colour else ()
            return _Clause(
                **link, subjects=subjects, predicate=predicate, targets=targets, places=_phrases(list(words[length:]))
            )
    return _event_clause(link, subjects, words[0], list(rest))


def _main_verb(base: str, rest: list[str]) -> tuple[str, bool, list[str]]:
    """Read through auxiliaries, "not" and catenatives ("does not move", "starts to run")."""
    negated = False
    while base in AUXILIARIES or base in CATENATIVES:
        while rest and rest[0] in ("not", "never", "to"):
            negated |= rest[0] != "to"
            rest = rest[1:]
        following = _lemma(rest[0]) if rest else None
        if following is None:
            break
        base, rest = following[0], rest[1:]
    return base, negated, rest


def _static_clause(link: dict, subjects: tuple[_Mention, ...], base: str, rest: list[str]) -> _Clause:
    """ "X is on Y" -> place (on, Y); "X is red" -> attribute red; "X has Y" -> place (has, Y)."""
    if base == "have":
        return _Clause(**link, subjects=subjects, places=tuple(("has", m) for m in _noun_phrases(rest)))
    places = _phrases(rest)
    if places or _preposition(rest, 0):
        return _Clause(**link, subjects=subjects, places=places)
    if len(rest) == 1:
        return _Clause(**link, subjects=subjects, attributes=(SIZE_NAMES.get(rest[0], rest[0]),))
    return _Clause(**link, subjects=subjects + _noun_phrases(rest))


def _event_clause(link: dict, subjects: tuple[_Mention, ...], verb: str, rest: list[str]) -> _Clause:
    """``verb [particles] [object] [late particle] [phrases]`` -> predicate, targets and places."""
    predicate = [verb]
    while rest and (particle := _preposition(rest, 0, directions=True)):
        predicate += particle
        rest = rest[len(particle) :]
    late = len(rest) - 1 if rest and rest[-1] in LATE_PARTICLES | DIRECTIONS else len(rest)
    end = next((i for i in range(late) if _preposition(rest, i) and rest[i] != "of"), late)
    objects, rest = rest[:end], rest[end:]
    if objects and len(rest) == 1 and rest[0] in LATE_PARTICLES | DIRECTIONS:
        predicate, rest = predicate + rest, []
    return _Clause(
        **link, subjects=subjects, predicate=" ".join(predicate), targets=_noun_phrases(objects), places=_phrases(rest)
    )


def _phrases(tokens: list[str]) -> tuple[tuple[str, _Mention], ...]:
    """Prepositional phrases ``prep NP prep NP …`` as (preposition, mention); text before the first is skipped."""
    found: list[tuple[str, _Mention]] = []
    starts = [i for i in range(len(tokens)) if _preposition(tokens, i) and tokens[i] != "of"]
    for k, start in enumerate(starts):
        prep = _preposition(tokens, start)
        if k and start < starts[k - 1] + len(_preposition(tokens, starts[k - 1])):
            continue
        stop = next((s for s in starts[k + 1 :] if s >= start + len(prep)), len(tokens))
        found += [(" ".join(prep), m) for m in _noun_phrases(tokens[start + len(prep) : stop])]
    return tuple(found)


def _noun_phrases(tokens: list[str]) -> tuple[_Mention, ...]:
    """The mentions of a coordinated noun phrase ("a man and a woman", "a, b and c")."""
    groups: list[list[str]] = [[]]
    for token in tokens:
        if token in ("and", ",", "or"):
            groups.append([])
        else:
            groups[-1].append(token)
    return tuple(m for g in groups if (m := _mention(g)) is not None)


def _mention(tokens: list[str]) -> _Mention | None:
    """One noun phrase: [owner 's | determiner] adjectives* noun+ [of noun…] [prepositional phrases]."""
    cut = next((i for i in range(1, len(tokens)) if _preposition(tokens, i) and tokens[i] != "of"), len(tokens))
    core, places = tokens[:cut], _phrases(tokens[cut:])
    owner = None
    if "'s" in core:
        at = len(core) - 1 - core[::-1].index("'s")
        owner = _Mention(core[at - 1], core[at - 1]) if at and core[at - 1] != "'s" else None
        core = core[at + 1 :]
    determiner = core[0] if core and (core[0] in DETERMINERS or core[0] in POSSESSIVES and len(core) > 1) else None
    if determiner is not None:
        core = core[1:]
    if determiner in POSSESSIVES:
        owner = _Mention(POSSESSIVES[determiner], POSSESSIVES[determiner])
    of = core.index("of") if "of" in core else len(core)
    words = [w for w in core[:of] if _lemma(w) != ("be", "s")]
    if not words:
        return None
    modifiers = words[:-1]
    adjectives = tuple(SIZE_NAMES.get(w, w) for w in modifiers if _is_adjective(w))
    parts: list[list[str]] = [[w for w in modifiers if not _is_adjective(w)] + [words[-1]]]
    for word in core[of:]:
        if word == "of":
            parts.append([])
        elif word not in DETERMINERS and word not in POSSESSIVES and not _is_adjective(word):
            parts[-1].append(word)
    name = " of ".join(" ".join(part) for part in parts if part)
    return _Mention(words[-1], name, adjectives, determiner, owner, places)


def _is_adjective(word: str) -> bool:
    """Whether a modifier is an attribute (known adjective, number, typical ending) rather than part of the name."""
    return (
        word in COLOUR_WORDS
        or word in SIZE_NAMES
        or word in NUMBERS
        or word in ADJECTIVES
        or word.isdigit()
        or word.endswith(("y", "ful", "ous", "ish", "ive", "ed", "ing", "less", "al"))
    )


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

    def resolve(self, mention: _Mention, exclude: str | None = None) -> _Entity:
        """The entity ``mention`` refers to (see the module docstring), registering its facts."""
        if mention.head in PRONOUNS and mention.name == mention.head:
            entity = self._pronoun(mention.head, exclude)
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

    def _noun(self, mention: _Mention) -> _Entity:
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


def _kind_of(head: str) -> str:
    """male / female / person / plural / thing: what pronouns may refer to an entity with this head noun."""
    for kind, nouns in (("male", MALE_NOUNS), ("female", FEMALE_NOUNS), ("person", PERSON_NOUNS)):
        if head in nouns:
            return kind
    return "plural" if _is_plural([head]) else "thing"


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


def _read(sentences: list[list[_Clause]], discourse: _Discourse) -> list[list[_Reading]]:
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
                agents = [discourse.resolve(_Mention("person", "person")).name]
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
        Event(agent=agent, predicate=predicate, target=target, start=start, end=end)
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
    """Absent before an "appears" event and after a "disappears" event of the object; present otherwise."""
    for event in events:
        if event.agent == name and (
            (event.predicate, step < event.start) == ("appears", True)
            or (event.predicate, step >= event.end) == ("disappears", True)
        ):
            return False
    return True


def _attributes_at(entity: _Entity, events: Sequence[Event], step: int) -> list[str]:
    """The entity's attributes at ``step``: colour switched from the middle of "turns", size after grow/shrink."""
    attributes = list(entity.attributes)
    for event in events:
        if event.agent != entity.name:
            continue
        if event.predicate == "turns" and event.target in COLOUR_WORDS and step >= (event.start + event.end) // 2:
            attributes = [a for a in attributes if a not in COLOUR_WORDS] + [event.target]
        size = {"grows": "large", "shrinks": "small"}.get(event.predicate)
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

    def __init__(self, num_steps: int = 8, selector: DemoSelector | None = None) -> None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= MAX_STEPS:
            raise RulesPlanError(f"num_steps must be an integer in [1, {MAX_STEPS}], got {num_steps!r}")
        self.num_steps = num_steps
        self.selector = selector

    def plan(self, prompt: str, demonstrations: Sequence[Demonstration] | None = None) -> DynamicSceneGraph:
        """Plan ``prompt``; ``demonstrations`` (else the selector's, else none) only add imagined facts."""
        sentences = [[_clause(p) for p in _glue(_pieces(s))] for s in _sentences(_checked_tokens(prompt))]
        discourse = _Discourse()
        events = _schedule(_read(sentences, discourse), self.num_steps)
        if not discourse.entities:
            raise RulesPlanError(
                f"found no clause or noun phrase in the prompt {prompt[:80]!r}; describe who does what, "
                "e.g. 'a red circle moves right, then a blue square jumps'"
            )
        base = events_to_dsg(events) if events else DynamicSceneGraph(graphs=(SceneGraph(),))
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
    return _tokens(prompt)
