"""The rules planner's Step I parsing: a sentence -> pieces between connectives -> clauses.

A clause is a ``Clause`` of ``Mention`` noun phrases, still unresolved (pronouns and definite noun
phrases are resolved by ``dysen.planner.rules``); the grammar is described in the module docstring of
``dysen.planner.rules``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dysen.planner.lexicon import (
    ADJECTIVES,
    ADVERBS,
    AMOUNT_PHRASES,
    AUXILIARIES,
    CATENATIVES,
    COLOUR_WORDS,
    COMPARATIVES,
    COMPLEMENT_NOUNS,
    CONNECTIVES,
    DETERMINERS,
    DIRECTION_WORDS,
    DIRECTIONS,
    DURATION_COUNTS,
    DURATION_LEADS,
    IDIOM_FILLER,
    LATE_PARTICLES,
    LIGHT_VERBS,
    LONGEST_CONNECTIVE,
    LONGEST_PHRASE,
    MEDIAL,
    MOTION_NOUNS,
    NOT_ADVERBS,
    NUMBERS,
    PASSIVE_AUX,
    PASSIVE_MOTION,
    PASSIVE_RESULTS,
    PLAIN,
    POSSESSIVES,
    PREPOSITIONS,
    SCREEN_NAMES,
    SCREEN_PARTS,
    SCREEN_PLACES,
    SEQ,
    SHAPES_PHRASES,
    SIZE_NAMES,
    STATE_ADJECTIVES,
    STATIC_PHRASES,
    TIME_PHRASES,
    TIME_UNITS,
    TOGETHER_WORDS,
    TRAILING_SIM,
    VIEW_PHRASES,
    guess_base,
    is_plural,
    lemma,
    third_person,
)

# words a subject cannot end with (so the next word is its head noun, not a verb)
_NOT_SUBJECT_END = DETERMINERS | NUMBERS | COLOUR_WORDS | frozenset(SIZE_NAMES) | frozenset(POSSESSIVES) | {"and", ","}
# endings of unknown words that may be verbs ("zooms", "zoomed") but not "-ss", "-us", "-is" nouns
_VERB_ENDING = re.compile(r"^[a-z]{2,}(?:[^su'i]s|ed)$")


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
class Mention:
    """A noun phrase: head noun, the name it gives, its adjectives and what it is attached to."""

    head: str
    name: str
    adjectives: tuple[str, ...] = ()
    determiner: str | None = None
    owner: Mention | None = None
    places: tuple[tuple[str, Mention], ...] = ()


@dataclass(frozen=True)
class Clause:
    """One clause: subjects (empty: those of the previous clause), predicate (None: static), targets."""

    links: frozenset[str]
    trailing: bool
    subjects: tuple[Mention, ...]
    predicate: str | None = None
    targets: tuple[Mention | str, ...] = ()
    places: tuple[tuple[str, Mention], ...] = ()
    attributes: tuple[str, ...] = ()


def parse(tokens: list[str]) -> list[list[Clause]]:
    """The clauses of each sentence of a tokenised prompt, in text order."""
    return [[_clause(p) for p in _glue(_pieces(s))] for s in _sentences(rewrite(tokens))]


# words after which a quantity ("a bit") is no noun phrase: punctuation, connectives and prepositions
_PREPOSITION_STARTS = frozenset(p[0] for p in PREPOSITIONS)
_AFTER_AMOUNT = frozenset(".!?:;,") | {c[0] for c in CONNECTIVES} | _PREPOSITION_STARTS | {"more", None}
# words of connectives, and the commas and adverbs between them ("…, and finally")
_CONNECTIVE_WORDS = frozenset(w for c in CONNECTIVES for w in c) | MEDIAL


def rewrite(tokens: list[str]) -> list[str]:
    """Read idioms as the plain words they mean, so no verb, adverb, quantity or place of the screen becomes an
    object: "does a little jump" / "takes a leap" -> "jumps" / "leaps"; "makes its way" -> "moves"; a passive of a
    verb of motion "is moved" -> "moves", "is made bigger" -> "gets bigger", "is nudged left" -> "moves left",
    "is gone" -> "disappears"; "gets larger" / "becomes tinier" -> "gets bigger" / "gets smaller";
    "smaller and smaller" -> "smaller"; "pops into view" / "slips out of sight" -> "appears" / "disappears";
    "to the top of the screen", "over to the left side" -> "up", "to the left"; "upwards" -> "upward";
    "changes its colour" -> "changes colour"; "from red to green" -> "green"; "both", and "each" / "all" before
    a verb, dropped ("A and B both jump"); quantities and adverbials after a verb ("a bit", "in a flash", "on
    the screen") and time phrases ("after a moment") dropped."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for rule in _RULES:
            after = rule(tokens, i, out)
            if after is not None:
                i = after
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _starting(phrases: Iterable[tuple[str, ...]], tokens: list[str], i: int) -> tuple[str, ...]:
    """The first of ``phrases`` that ``tokens`` hold at ``i`` (empty if none)."""
    return next((p for p in phrases if tuple(tokens[i : i + len(p)]) == p), ())


def _idiom_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    form = lemma(tokens[i])
    size = _idiom(tokens, i, form)
    if not size:
        return None
    noun = tokens[i + size - 1]
    verb = "move" if noun == "way" else noun
    out.append(verb if form and form[1] == "base" else third_person(verb))
    return i + size


def _place_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    place = _screen_place(tokens, i) if out else None
    if place is None:
        return None
    out += ["to", "the", place[0]] if place[0] in ("left", "right") else [place[0]]  # not "left", a verb "leave"
    return place[1]


def _time_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    """Time phrases ("after a moment") and spans of time ("over a few seconds", "for 2 seconds") are dropped."""
    timed = _starting(TIME_PHRASES, tokens, i)
    if timed:
        return i + len(timed)
    if tokens[i] not in DURATION_LEADS:
        return None
    j = i + 1
    while j < len(tokens) and (tokens[j] in DURATION_COUNTS or tokens[j] in NUMBERS or tokens[j].isdigit()):
        j += 1
    return j + 1 if j < len(tokens) and tokens[j] in TIME_UNITS else None


def _comparative_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    verb = lemma(out[-1]) if out else None
    if tokens[i] not in COMPARATIVES or not verb or verb[0] not in ("get", "become", "grow", "turn"):
        return None
    out[-1] = "get" if verb[1] == "base" else "gets"  # "becomes larger" reads as "gets bigger"
    out.append(COMPARATIVES[tokens[i]])
    return i + 1


def _view_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    view = _starting(VIEW_PHRASES, tokens, i)
    verb = lemma(out[-1]) if out else None
    if not view or not verb:
        return None
    out[-1] = VIEW_PHRASES[view] if verb[1] == "base" else third_person(VIEW_PHRASES[view])
    return i + len(view)


def _colour_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    """"from red to green" -> "green"; "changes its colour" -> "changes colour"."""
    if tokens[i] == "from" and tokens[i + 1 : i + 2] and tokens[i + 1] in COLOUR_WORDS and tokens[i + 2 : i + 3] == [
        "to"
    ]:
        return i + 3
    if tokens[i] in ("its", "their") and out and lemma(out[-1]) and tokens[i + 1 : i + 2] in (["colour"], ["color"]):
        return i + 1
    return None


def _direction_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    """A direction word as its particle: "upwards" -> "upward", "leftward" -> "to the left" (not "left": "leave")."""
    if tokens[i] not in DIRECTION_WORDS:
        return None
    direction = DIRECTION_WORDS[tokens[i]]
    out += ["to", "the", direction] if direction in ("left", "right") else [direction]
    return i + 1


def _passive_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    passive = _passive(tokens, i) if out else None
    if passive is None:
        passive = _elided_passive(tokens, i, out)
    if passive is None:
        return None
    out.append(passive[0])
    return passive[1]


def _elided_passive(tokens: list[str], i: int, out: list[str]) -> tuple[str, int] | None:
    """A participle of ``PASSIVE_RESULTS`` alone after a connective, its auxiliary said before ("is painted orange,
    then dragged right, and finally erased" -> "… disappears"), as its meaning and the index after it, or None."""
    verb = lemma(tokens[i])
    after = tokens[i + 1] if i + 1 < len(tokens) else None
    if not out or out[-1] not in _CONNECTIVE_WORDS or verb is None or verb[0] not in PASSIVE_RESULTS:
        return None
    if verb[1] != "past" or after not in (None, *".!?;,"):
        return None
    return PASSIVE_RESULTS[verb[0]], i + 1


def _amount_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    amount = _starting(AMOUNT_PHRASES, tokens, i)
    after = tokens[i + len(amount)] if i + len(amount) < len(tokens) else None
    if amount and out and (lemma(out[-1]) or out[-1] in _PREPOSITION_STARTS) and after in _AFTER_AMOUNT:
        return i + len(amount)
    return None


def _repeat_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    """"smaller and smaller" -> "smaller"."""
    if tokens[i].endswith("er") and tokens[i + 1 : i + 3] == ["and", tokens[i]]:
        out.append(tokens[i])
        return i + 3
    return None


def _together_rule(tokens: list[str], i: int, out: list[str]) -> int | None:
    following = lemma(tokens[i + 1]) if i + 1 < len(tokens) else None
    if tokens[i] in TOGETHER_WORDS and (tokens[i] == "both" or following is not None or i + 1 == len(tokens)):
        return i + 1
    return None


_RULES = (
    _idiom_rule, _place_rule, _time_rule, _comparative_rule, _view_rule, _colour_rule, _direction_rule,
    _passive_rule, _amount_rule, _repeat_rule, _together_rule,
)  # fmt: skip
"""The rules of ``rewrite``, first match wins: each reads ``tokens`` at ``i``, may extend ``out`` and returns the
index after what it read, or None."""


def _passive(tokens: list[str], i: int) -> tuple[str, int] | None:
    """A passive of a verb of motion at ``i`` ("is moved", "gets pushed", "is made bigger") as the active verb
    and the index after it, or None."""
    j = i
    while j < len(tokens) and tokens[j] in PASSIVE_AUX:
        j += 1
    if i < j < len(tokens) and tokens[j] == "gone" and lemma(tokens[i]) and lemma(tokens[i])[0] == "be":
        return "disappears", j + 1  # "is gone"
    verb = lemma(tokens[j]) if i < j < len(tokens) else None
    after = tokens[j + 1] if j + 1 < len(tokens) else None
    if verb is None and i < j < len(tokens) and _VERB_ENDING.match(tokens[j]) and tokens[j].endswith("ed") and (
        after is None or after in _PREPOSITION_STARTS or after in LATE_PARTICLES
    ):  # an unknown verb's passive before a direction: "is nudged left", "is hoisted up"
        active = "moves" if after in ("left", "right", "up", "down") else third_person(_participle_base(tokens[j]))
        return active, j + 1
    if verb is None or verb[1] != "past" or not tokens[j].endswith(("ed", "ade")):
        return None
    if verb[0] in PASSIVE_MOTION:
        return third_person(verb[0]), j + 1
    if verb[0] in PASSIVE_RESULTS:
        return PASSIVE_RESULTS[verb[0]], j + 1
    if verb[0] == "make" and tokens[j + 1 : j + 2] and tokens[j + 1].endswith("er"):
        return "gets", j + 1
    return None


def _screen_place(tokens: list[str], i: int) -> tuple[str, int] | None:
    """A place of the screen named as a direction at ``i`` ("to the top of the screen", "over to the left side",
    "toward the bottom") as its direction word and the index after it, or None."""
    leads = ("over", "to", "towards", "toward", "into", "onto", "up", "across", "off", "at", "from", "in", "on")
    if tokens[i] not in leads:
        return None
    j = i
    while j < len(tokens) and tokens[j] in leads:
        j += 1
    if tokens[j : j + 1] != ["the"] or j + 1 >= len(tokens) or tokens[j + 1] not in SCREEN_PLACES:
        return None
    direction, j = SCREEN_PLACES[tokens[j + 1]], j + 2
    named = False
    if j < len(tokens) and tokens[j] in SCREEN_PARTS:
        j, named = j + 1, True
    if tokens[j : j + 1] in (["of"], ["on"]):
        k = j + 1 + (tokens[j + 1 : j + 2] == ["the"])
        if k < len(tokens) and tokens[k] in SCREEN_NAMES:
            j, named = k + 1, True
    return (direction, j) if named or direction in ("up", "down") else None


def _participle_base(token: str) -> str:
    """A guess at the base form of an unknown "-ed" participle ("nudged" -> "nudge", "hoisted" -> "hoist")."""
    stem = token[:-2]
    if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "ls":
        return stem[:-1]  # "flipped"
    if stem.endswith(("v", "dg", "c", "z", "u")) or stem.endswith("s") and stem[-2:-1] in tuple("aeiou"):
        return stem + "e"  # "shoved", "nudged", "placed", "raised"
    return stem


def _idiom(tokens: list[str], i: int, form: tuple[str, str] | None) -> int:
    """Tokens of a light-verb idiom at ``i`` ("does a little jump", "makes its way"), 0 if there is none."""
    if form is None or form[0] not in LIGHT_VERBS:
        return 0
    j = i + 1
    while j < len(tokens) and tokens[j] in IDIOM_FILLER:
        j += 1
    if j == i + 1 or j == len(tokens):
        return 0
    if tokens[j] in MOTION_NOUNS or form[0] == "make" and tokens[j] == "way" and tokens[i + 1] != "a":
        return j - i + 1
    return 0


def _sentences(tokens: list[str]) -> list[list[str]]:
    """Split at sentence-final punctuation; empty sentences are dropped."""
    sentences: list[list[str]] = [[]]
    for token in tokens:
        if token in ".!?:":
            sentences.append([])
        else:
            sentences[-1].append(token)
    return [s for s in sentences if s]


_AFTER_NEXT = [[","], ["it"], ["he"], ["she"], ["they"], ["the"], ["a"], ["an"]]
"""What may follow "next" as a connective (a sequence word, not "next to")."""


def _connective(tokens: list[str], i: int, at_start: bool) -> tuple[str, ...] | None:
    """The longest connective phrase at ``tokens[i]`` ("first" only at a start; "next" only before a comma, a
    pronoun or an article: "next, it …", "next it …", not "next to")."""
    for length in range(min(LONGEST_CONNECTIVE, len(tokens) - i), 0, -1):
        phrase = tuple(tokens[i : i + length])
        if phrase not in CONNECTIVES:
            continue
        if phrase == ("first",) and not at_start or phrase == ("next",) and tokens[i + 1 : i + 2] not in _AFTER_NEXT:
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


def _verb_index(tokens: list[str]) -> int | None:
    """Index of the clause's verb (see ``dysen.planner.rules``), or None for a verbless piece."""
    if tokens[:1] == ["there"] and tokens[1:2] in (["is"], ["are"], ["was"], ["were"]):
        return 1
    if tokens:
        first = lemma(tokens[0])
        follows = lemma(tokens[1]) if len(tokens) > 1 else None
        if first and first[0] not in AUXILIARIES and not (first[1] == "base" and follows and follows[1] == "s"):
            return 0
    for i in range(1, len(tokens)):
        form = lemma(tokens[i])
        subject, before = tokens[:i], tokens[i - 1]
        pronominal = _pronominal(subject) and form is not None and form[0] not in AUXILIARIES  # "the other hops"
        if form is None or not pronominal and all(w in DETERMINERS | NUMBERS or w in POSSESSIVES for w in subject):
            continue
        if not pronominal and (before in DETERMINERS or before in POSSESSIVES):
            continue
        if lemma(before) and lemma(before)[0] not in AUXILIARIES:
            continue
        if form[1] in ("s", "past") or form[0] in AUXILIARIES or is_plural(subject):
            return i
    for i in range(1, len(tokens)):
        if tokens[i].endswith("ing") and lemma(tokens[i]):
            return i
    for i in range(2, len(tokens)):
        if _VERB_ENDING.match(tokens[i]) and tokens[i - 1] not in _NOT_SUBJECT_END:
            return i
    return None


def _pronominal(subject: list[str]) -> bool:
    """Whether ``subject`` is a noun phrase without a noun that names one of a group: "the other", "the other one",
    "the one" ("two squares: the first one slides, the other hops")."""
    return len(subject) >= 2 and subject[-1] in ("other", "one") and subject[-2] in ("the", "other")


def _is_adverb(token: str) -> bool:
    return token in ADVERBS or token.endswith("ly") and token not in NOT_ADVERBS


def _preposition(tokens: Sequence[str], i: int, directions: bool = False) -> tuple[str, ...] | None:
    """The longest preposition at ``tokens[i]``; directions ("left", "back") only when ``directions``."""
    for phrase in PREPOSITIONS:
        if tuple(tokens[i : i + len(phrase)]) == phrase and (directions or phrase[0] not in DIRECTIONS):
            return phrase
    return None


def _clause(piece: _Piece) -> Clause:
    """Parse one clause (see ``dysen.planner.rules``); verbless pieces become static clauses."""
    tokens = [t for t in piece.tokens if not _is_adverb(t) and t not in ",;"]
    link = {"links": frozenset(piece.links), "trailing": piece.trailing}
    verb = _verb_index(tokens)
    if verb is None:
        return Clause(**link, subjects=_noun_phrases(tokens))
    if tokens[0] == "there" and verb == 1:
        return Clause(**link, subjects=_noun_phrases(tokens[2:]))
    subjects, carried = _owners_as_subjects(_noun_phrases(_listed(piece.tokens, tokens[:verb])))
    known = lemma(tokens[verb])
    base, negated, rest = _main_verb(known[0] if known else guess_base(tokens[verb]), tokens[verb + 1 :])
    rest = [*carried, *rest]
    if base == "be" or base == "have" and rest:
        return _static_clause(link, subjects, base, rest)
    words = (third_person(base), *rest)
    if negated or words[:2] in STATIC_PHRASES or words[:1] in STATIC_PHRASES:
        return Clause(**link, subjects=subjects, places=_phrases(rest))
    for length in range(min(LONGEST_PHRASE, len(words)), 0, -1):
        if words[:length] in SHAPES_PHRASES:
            predicate, colour = SHAPES_PHRASES[words[:length]]
            targets = (colour,) if colour else ()
            places = _phrases(_without_complements(list(words[length:]))[1])  # "grows in size": no place "size"
            return Clause(**link, subjects=subjects, predicate=predicate, targets=targets, places=places)
    return _event_clause(link, subjects, words[0], list(rest))


def _listed(written: list[str], subject: list[str]) -> list[str]:
    """``subject`` with the commas it had as ``written``, when it is a list ("the star, the triangle and the square");
    else as it is (commas are no separators elsewhere: "the star, quickly, jumps")."""
    if not {"and", "or"} & set(subject):
        return subject
    out: list[str] = []
    words = iter(subject)
    want = next(words, None)
    for token in written:
        if want is None:
            break
        if token == want:
            out.append(token)
            want = next(words, None)
        elif token == "," and out:
            out.append(token)
    return out if want is None else subject


def _owners_as_subjects(subjects: tuple[Mention, ...]) -> tuple[tuple[Mention, ...], list[str]]:
    """A subject that is a measure of its owner stands for the owner: "the square's colour changes to red" ->
    the square, with "colour" to read after the verb ("changes colour to red")."""
    owned = [m for m in subjects if m.owner is not None and m.head in COMPLEMENT_NOUNS and m.name == m.head]
    if not owned or len(owned) != len(subjects):
        return subjects, []
    return tuple(m.owner for m in owned if m.owner is not None), [owned[0].head]


def _main_verb(base: str, rest: list[str]) -> tuple[str, bool, list[str]]:
    """Read through auxiliaries, "not" and catenatives ("does not move", "starts to run")."""
    negated = False
    while base in AUXILIARIES or base in CATENATIVES:
        while rest and rest[0] in ("not", "never", "to"):
            negated |= rest[0] != "to"
            rest = rest[1:]
        following = lemma(rest[0]) if rest else None
        if following is None:
            break
        base, rest = following[0], rest[1:]
    return base, negated, rest


def _static_clause(link: dict, subjects: tuple[Mention, ...], base: str, rest: list[str]) -> Clause:
    """ "X is on Y" -> place (on, Y); "X is red" -> attribute red; "X has Y" -> place (has, Y)."""
    if base == "have":
        return Clause(**link, subjects=subjects, places=tuple(("has", m) for m in _noun_phrases(rest)))
    places = _phrases(rest)
    if places or _preposition(rest, 0):
        return Clause(**link, subjects=subjects, places=places)
    if len(rest) == 1:
        return Clause(**link, subjects=subjects, attributes=(SIZE_NAMES.get(rest[0], rest[0]),))
    return Clause(**link, subjects=subjects + _noun_phrases(rest))


def _event_clause(link: dict, subjects: tuple[Mention, ...], verb: str, rest: list[str]) -> Clause:
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
    if _is_complement(objects):
        predicate, objects = predicate + objects, []
    complements, kept = _without_complements(rest)
    predicate += complements
    colour = _colour_target(predicate, kept)
    if colour and not objects:  # "takes on a blue colour" -> "takes on a colour", blue
        predicate = [w for w in predicate if w != colour]
    targets = (colour,) if colour and not objects else _noun_phrases(objects)
    return Clause(**link, subjects=subjects, predicate=" ".join(predicate), targets=targets, places=_phrases(kept))


def _is_complement(tokens: list[str]) -> bool:
    """Whether a noun phrase after a verb names no object but a measure, a place of the screen, a state or the
    motion itself ("in size", "into the air", "to twice its size", "invisible", "a full turn"; ``COMPLEMENT_NOUNS``
    and ``STATE_ADJECTIVES``): it stays part of the predicate. "the edge of the cliff" names an object."""
    mention = _mention(tokens) if tokens else None
    if mention is None:
        return False
    bare = [w for w in tokens if w not in DETERMINERS and w not in POSSESSIVES and w not in COLOUR_WORDS]
    if bare and all(w in STATE_ADJECTIVES or w in SIZE_NAMES for w in bare):
        return mention.determiner is None  # "goes invisible", "becomes tiny" (not "the big dog")
    if bare and set(bare) <= COMPLEMENT_NOUNS:
        return True  # "colour cyan" of "the star's colour shifts to cyan"
    places = [part.split()[-1] for part in mention.name.split(" of ")]  # "the top of the screen", not "… of the cliff"
    return mention.head in COMPLEMENT_NOUNS and all(p in COMPLEMENT_NOUNS or p in SCREEN_NAMES for p in places)


def _without_complements(tokens: list[str]) -> tuple[list[str], list[str]]:
    """The prepositional phrases of ``tokens`` whose noun phrase is a complement ("in size", "into the air"), and
    the other tokens."""
    complements: list[str] = []
    kept: list[str] = []
    for segment in _segments(tokens):
        prep = _preposition(segment, 0) or ()
        (complements if prep and _is_complement(segment[len(prep) :]) else kept).extend(segment)
    return complements, kept


def _segments(tokens: list[str]) -> list[list[str]]:
    """``tokens`` cut before each preposition that starts a phrase (as ``_phrases`` reads them)."""
    segments: list[list[str]] = [[]]
    for i, token in enumerate(tokens):
        if i and _preposition(tokens, i) and token != "of" and not _preposition(tokens[i - 1 : i + 1], 0):
            segments.append([])
        segments[-1].append(token)
    return [s for s in segments if s]


def _colour_target(predicate: list[str], kept: list[str]) -> str | None:
    """The colour a colour noun of the predicate goes to: "takes on a blue colour" -> "blue", "switches colour to
    white" -> "white" (``kept``: the phrases after it); None without a colour noun."""
    if not {"colour", "color", "hue", "shade"} & set(predicate):
        return None
    tail = kept[1:] if kept[:1] in (["to"], ["into"]) else []
    colours = [w for w in (*predicate, *tail) if w in COLOUR_WORDS]
    return colours[-1] if colours else None


def _phrases(tokens: list[str]) -> tuple[tuple[str, Mention], ...]:
    """Prepositional phrases ``prep NP prep NP …`` as (preposition, mention); text before the first is skipped."""
    found: list[tuple[str, Mention]] = []
    starts = [i for i in range(len(tokens)) if _preposition(tokens, i) and tokens[i] != "of"]
    for k, start in enumerate(starts):
        prep = _preposition(tokens, start)
        if k and start < starts[k - 1] + len(_preposition(tokens, starts[k - 1])):
            continue
        stop = next((s for s in starts[k + 1 :] if s >= start + len(prep)), len(tokens))
        found += [(" ".join(prep), m) for m in _noun_phrases(tokens[start + len(prep) : stop])]
    return tuple(found)


def _noun_phrases(tokens: list[str]) -> tuple[Mention, ...]:
    """The mentions of a coordinated noun phrase ("a man and a woman", "a, b and c")."""
    groups: list[list[str]] = [[]]
    for token in tokens:
        if token in ("and", ",", "or"):
            groups.append([])
        else:
            groups[-1].append(token)
    return tuple(m for g in groups if (m := _mention(g)) is not None)


def _mention(tokens: list[str]) -> Mention | None:
    """One noun phrase: [owner 's | determiner] adjectives* noun+ [of noun…] [prepositional phrases]."""
    cut = next((i for i in range(1, len(tokens)) if _preposition(tokens, i) and tokens[i] != "of"), len(tokens))
    core, places = tokens[:cut], _phrases(tokens[cut:])
    owner = None
    if "'s" in core:
        at = len(core) - 1 - core[::-1].index("'s")
        owner = _mention(core[:at]) if at and core[at - 1] != "'s" else None
        core = core[at + 1 :]
    determiner = core[0] if core and (core[0] in DETERMINERS or core[0] in POSSESSIVES and len(core) > 1) else None
    if determiner is not None:
        core = core[1:]
    if determiner in POSSESSIVES:
        owner = Mention(POSSESSIVES[determiner], POSSESSIVES[determiner])
    of = core.index("of") if "of" in core else len(core)
    words = [w for w in core[:of] if lemma(w) != ("be", "s")]
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
    return Mention(words[-1], name, adjectives, determiner, owner, places)


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
