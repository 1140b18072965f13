"""The motion normaliser: an event's predicate, in any wording, -> its canonical ``Motion``.

One normaliser for every plan (issue 23): the rules planner, the LLM planner (a replay too) and a DSG given
to the pipeline (``dysen generate --plan``, the demo's edited plan) all pass ``with_motion``, which fills
``Event.motion`` where it is missing and keeps it where it is set. The layout imagination reads the motion,
never the raw predicate, so "the green square slides to the left" moves its box left.

``canonical_motion(predicate, target)`` reads the words of the predicate (and the target, where an LLM put
"red" of "turns red") with a lexicon, in this order:

1. negation or a verb of rest ("does not move", "stays still", "waits") -> ``still``;
2. appearing / disappearing ("emerges", "pops up", "comes into view", "fades away", "goes out of sight");
3. a colour word with a verb of change ("turns red", "becomes blue", "goes green") -> ``change_colour``;
4. size ("swells", "gets bigger and bigger", "is made smaller") -> ``grow`` / ``shrink``;
5. turning ("spins", "turns around", "does a twirl") -> ``rotate``;
6. jumping ("hops", "does a little jump", "takes a leap", "bounces up and down") -> ``jump``;
7. moving: a direction word or phrase ("to the left side of the screen", "upwards", "toward the top")
   with any verb, or a verb with its own direction ("rises", "sinks", "plunges"); a verb of motion with no
   direction ("moves", "slides across") is ``unknown`` at once (the fallback would guess one).

Everyday scenes (issue 24): a throw or kick ("throws", "kicks the ball to the right") is ``throw`` (its target
flies); "enters from the left" is ``appear`` with the side it comes from, "leaves", "exits", "runs out of the
frame" ``disappear`` with the side it goes to ('forward' when none is named); "toward the camera", "approaches",
"gets closer" move ``toward``, "away", "into the distance" ``away``; a verb of travel with no direction ("walks his
dog", "gallops across the field") moves ``forward``, the side the layout finds room on.

Idioms need no rules of their own: words are lemmatised and read as a bag, so "does a little jump" and
"takes a leap" hold the noun "jump" / "leap", "makes its way to the left" a direction, and a passive
("is moved to the right", "is made bigger") its participle. "a bit", "slightly" set ``amount`` 0.5.

When the lexicon finds nothing, the predicate is embedded with all-MiniLM-L6-v2 (``SentenceEmbedder``,
loaded lazily, only then) and given the action of its nearest example phrase (``EXAMPLES``) if the cosine
similarity is at least ``SIMILARITY_THRESHOLD``; below it the motion is ``unknown``: the layout keeps the
object still and ``with_motion`` logs a warning naming the event (``motion_warnings`` lists them). The
threshold was calibrated on ``CALIBRATION`` (a labelled list of wordings the lexicon does not cover, and
of non-motions), see ``tests/test_motion.py``.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from dysen.dsg.types import DynamicSceneGraph, Event, Motion
from dysen.planner.colours import with_world_colours
from dysen.planner.lexicon import COLOUR_VERBS as _COLOUR_VERBS
from dysen.planner.lexicon import COLOUR_WORDS, lemma
from dysen.planner.lexicon import DIRECTION_OF as _DIRECTIONS
from dysen.world.colours import DEFAULT_PALETTE

__all__ = ["CALIBRATION", "EXAMPLES", "SIMILARITY_THRESHOLD", "canonical_motion", "motion_warnings", "with_motion"]

log = logging.getLogger(__name__)

SIMILARITY_THRESHOLD = 0.6
"""The least cosine similarity (all-MiniLM-L6-v2) to an example phrase for the fallback to accept its action."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# -- the lexicon ----------------------------------------------------------------------------------

# verbs (base forms) of motion with no direction of their own: the direction comes from the words around
_MOVE_VERBS = _words(
    "move slide glide drift roll travel head go shift scoot wander zip dart race run walk crawl creep inch edge "
    "stroll march swim sail skate scurry dash rush hurry zoom whoosh slip skid coast cruise step proceed advance "
    "journey migrate trundle amble saunter meander roam shuffle scuttle sweep swing veer swerve push pull drag "
    "carry way path fly flutter scramble charge bolt speed drive ride jog gallop trot sprint cycle "
    "bike pedal hike paddle row trudge stride limp waddle"
)
# verbs of getting somewhere (issue 24): with no direction of their own they head "forward" (the layout picks the
# side with more room), so "a man walks his dog" moves; "moves" and "slides" alone stay unknown
_TRAVEL_VERBS = _words(
    "walk run jog drive ride swim fly stroll march hike gallop trot sprint cycle bike pedal skate sail crawl paddle "
    "row wander roam amble saunter trudge stride limp waddle hurry rush dash race travel"
)
_THROW_WORDS = _words("throw toss hurl fling lob pitch kick chuck launch")
_LEAVES = _words("leave leaves leaving exit exits exiting exited depart departs departed departing")
"""Word forms (not lemmas: the lemmatiser reads "left" as "leave") of leaving: a disappear with a side."""
_TOWARD_WORDS = _words("approach closer nearer")
_AWAY_WORDS = _words("away recede retreat distance background")
_CAMERA_WORDS = _words("camera viewer viewers us me lens audience spectator spectators foreground")
"""Names of the camera: "walks toward the camera" is a move 'toward'."""
# verbs and nouns that carry their direction
_UP_VERBS = _words("rise climb ascend soar lift raise elevate float levitate mount surface uprise")
_DOWN_VERBS = _words("fall drop sink descend plunge tumble dip lower plummet settle slump sag droop dive topple")
_JUMP_WORDS = _words("jump hop leap bounce spring skip vault bound pounce hurdle boing")
_ROTATE_WORDS = _words(
    "rotate spin twirl whirl pivot revolve twist swivel gyrate pirouette rotation spiral cartwheel somersault flip "
    "wheel circle"
)
_GROW_WORDS = _words(
    "grow swell expand inflate enlarge balloon widen increase magnify broaden lengthen puff bulge mushroom "
    "bloat dilate amplify double triple"
)
_SHRINK_WORDS = _words(
    "shrink contract dwindle deflate diminish decrease compress shrivel condense narrow reduce wither "
    "minimise minimize halve"
)
_BIGGER = _words("bigger larger taller wider huge large big giant greater fatter")
_SMALLER = _words("smaller tinier littler narrower thinner small tiny shorter")
_APPEAR_WORDS = _words("appear emerge materialise materialize arrive manifest reappear spawn enter")
_DISAPPEAR_WORDS = _words("vanish disappear evaporate dissolve dematerialise dematerialize perish")
_SCREEN_WORDS = _words("screen scene frame canvas picture")
"""Names of the screen: "onto the screen" is an appearing, "off the screen" a disappearing."""
_STILL_WORDS = _words("stay remain wait rest sit stand pause freeze idle linger hold")
_NEGATIONS = _words("not never")
_SMALL_AMOUNTS = (("a", "bit"), ("a", "little", "bit"), ("slightly",), ("a", "tad"), ("somewhat",), ("a", "touch"))
_SMALL_AMOUNT = 0.5
"""``Motion.amount`` of "a bit", "slightly"."""

# irregular or unlisted forms the planner's lemmatiser does not know
_FORMS: dict[str, str] = {
    "fell": "fall", "fallen": "fall", "rose": "rise", "risen": "rise", "sank": "sink", "sunk": "sink",
    "slid": "slide", "leapt": "leap", "leaped": "leap", "sprang": "spring", "sprung": "spring", "spun": "spin",
    "flew": "fly", "flown": "fly", "grew": "grow", "grown": "grow", "swollen": "swell", "shrank": "shrink",
    "shrunk": "shrink", "went": "go", "gone": "go", "goes": "go", "came": "come", "got": "get", "gotten": "get",
    "became": "become", "made": "make", "took": "take", "taken": "take", "did": "do", "does": "do", "done": "do",
    "dove": "dive", "bade": "bid", "swung": "swing", "strode": "stride", "wound": "wind", "drove": "drive",
    "ran": "run", "swam": "swim", "stood": "stand", "sat": "sit", "hung": "hang", "held": "hold", "lay": "lie",
    "lies": "lie", "dies": "die", "flies": "fly", "arisen": "rise", "arose": "rise",
    "skips": "skip", "skipping": "skip", "skipped": "skip",
    "threw": "throw", "thrown": "throw", "flung": "fling", "rode": "ride", "ridden": "ride", "swum": "swim",
    "approaches": "approach", "approached": "approach", "approaching": "approach", "recedes": "recede",
}  # fmt: skip
_TOKEN = re.compile(r"[a-z]+")


def _lemma(word: str) -> str:
    """A word's base form when it is a verb form the lexicons know or its ending gives away, else the word."""
    if word in _FORMS:
        return _FORMS[word]
    known = lemma(word)
    if known is not None:
        return known[0]
    for suffix, stems in (("ies", ("y",)), ("es", ("e", "")), ("s", ("",)), ("ing", ("", "e")), ("ed", ("e", ""))):
        if word.endswith(suffix) and len(word) > len(suffix) + 2 and not word.endswith(("ss", "us", "is")):
            base = word[: -len(suffix)]
            for stem in stems:
                if base + stem in _KNOWN:
                    return base + stem
            if suffix in ("ing", "ed") and len(base) > 2 and base[-1] == base[-2] and base[:-1] in _KNOWN:
                return base[:-1]  # "hopping", "skipped", "slipped"
    return word


_KNOWN = (
    _MOVE_VERBS | _UP_VERBS | _DOWN_VERBS | _JUMP_WORDS | _ROTATE_WORDS | _GROW_WORDS | _SHRINK_WORDS
    | _APPEAR_WORDS | _DISAPPEAR_WORDS | _COLOUR_VERBS | _STILL_WORDS
    | _THROW_WORDS | _words("approach recede retreat")
    | _words("come fade pop show make take do blink scale")
)  # fmt: skip

LEXICON_SIZE = len(_KNOWN) + len(_DIRECTIONS) + len(_BIGGER) + len(_SMALLER)
"""Entries of the lexicon (verbs and nouns of motion, direction and size words), for the record."""


def _has(words: list[str], *phrase: str) -> bool:
    n = len(phrase)
    return any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1))


def _direction(words: list[str]) -> str | None:
    """The first direction a word or phrase names ("to the left side", "upwards", "toward the top")."""
    for word in words:
        if word in _DIRECTIONS:
            return _DIRECTIONS[word]
    return None


def _depth(words: list[str], bag: set[str]) -> str | None:
    """'toward' or 'away' (from the camera, or from the event's target), when the words say so."""
    if bag & _AWAY_WORDS:
        return "away"
    moving = bag & (_MOVE_VERBS | _UP_VERBS | _DOWN_VERBS | _words("come toward towards"))
    if bag & _TOWARD_WORDS or moving and bag & _words("toward towards") or moving and bag & _CAMERA_WORDS:
        return "toward"
    return None


def _entry_side(words: list[str], bag: set[str]) -> str | None:
    """The side an appearing object comes in from ("enters from the left"); 'forward' for an undirected "enters"."""
    if "from" in words:
        side = _direction(words[words.index("from") + 1 :])
        if side is not None:
            return side
    return "forward" if "enter" in bag else None


def _exit_side(words: list[str], bag: set[str]) -> str | None:
    """The side a leaving object goes to ("exits to the right"); 'forward' for an undirected "leaves" or "runs out
    of the frame"; None for a plain vanishing."""
    if not (set(words) & _LEAVES or bag & _TRAVEL_VERBS):
        return None
    return _direction(words) or "forward"


def _lexical(words: list[str], lemmas: list[str]) -> Motion | None:
    """The motion the lexicon reads in ``words`` (see the module docstring), or None."""
    bag = set(lemmas)
    amount = _SMALL_AMOUNT if any(_has(words, *p) for p in _SMALL_AMOUNTS) else None
    moving = bag & (_KNOWN - _STILL_WORDS - _words("do make take"))
    resting = bag & _words("still motionless stationary immobile") or _has(words, "stays", "put") or _has(
        lemmas, "do", "nothing"
    ) or _has(words, "in", "place") or bag & _STILL_WORDS
    if bag & _NEGATIONS or resting and not moving:
        return Motion(kind="still")
    if bag & _THROW_WORDS:
        return Motion(kind="throw", direction=_direction(words) or _depth(words, bag), amount=amount)
    if "invisible" in bag:
        return Motion(kind="disappear")
    if "visible" in bag:
        return Motion(kind="appear")
    if "scale" in bag and bag & _words("up down"):
        return Motion(kind="grow" if "up" in bag else "shrink", amount=amount)
    if (
        bag & _APPEAR_WORDS
        or _has(lemmas, "come", "into") or _has(lemmas, "come", "in", "view") or _has(lemmas, "fade", "in")
        or _has(lemmas, "pop", "up") or _has(lemmas, "show", "up") or _has(lemmas, "turn", "up")
        or _has(words, "into", "view") or _has(words, "into", "sight") or _has(words, "into", "existence")
        or _has(words, "into", "being") or _has(lemmas, "pop", "in") or _has(lemmas, "pop", "into")
        or bag & _SCREEN_WORDS and bag & _words("onto into") or _has(words, "in", "from")
    ):  # fmt: skip
        return Motion(kind="appear", direction=_entry_side(words, bag))
    if (
        bag & _DISAPPEAR_WORDS or set(words) & _LEAVES
        or _has(lemmas, "fade", "away") or _has(lemmas, "fade", "out") or ("fade" in bag and not bag & COLOUR_WORDS)
        or _has(words, "out", "of", "sight") or _has(words, "out", "of", "view") or _has(words, "from", "view")
        or _has(words, "out", "of", "existence") or _has(lemmas, "go", "away") or _has(lemmas, "blink", "out")
        or _has(lemmas, "pop", "out") or _has(lemmas, "melt", "away") or _has(lemmas, "die", "out")
        or "gone" in words or _has(words, "no", "longer")
        or bag & _SCREEN_WORDS and ("off" in bag or _has(words, "out", "of"))
    ):  # fmt: skip
        return Motion(kind="disappear", direction=_exit_side(words, bag))
    if bag & COLOUR_WORDS and (bag & _COLOUR_VERBS or len(bag) == 1) or bag & _words("colour color hue shade") and (
        bag & _words("change switch shift")
    ):
        return Motion(kind="change_colour")
    if bag & _GROW_WORDS:
        return Motion(kind="grow", amount=amount)
    if bag & _SHRINK_WORDS:
        return Motion(kind="shrink", amount=amount)
    if bag & _ROTATE_WORDS or bag & _words("turn go") and bag & _words("around round about over") and not _direction(
        words
    ) or "turn" in bag and not _direction(words):
        return Motion(kind="rotate", amount=amount)
    if bag & _JUMP_WORDS or {"up", "down"} <= bag:  # "bobs up and down"
        return Motion(kind="jump", amount=amount)
    if bag & _BIGGER and bag & _words("get become make turn scale blow"):
        return Motion(kind="grow", amount=amount)
    if bag & _SMALLER and bag & _words("get become make turn scale"):
        return Motion(kind="shrink", amount=amount)
    direction = _direction(words) or _depth(words, bag)
    if direction is None and bag & _UP_VERBS:
        direction = "up"
    if direction is None and bag & _DOWN_VERBS:
        direction = "down"
    if direction is None and bag & _TRAVEL_VERBS:
        direction = "forward"
    if direction is not None:
        return Motion(kind="move", direction=direction, amount=amount)
    return None


def canonical_motion(predicate: str, target: str | None = None) -> Motion:
    """The canonical motion of an event whose predicate (and target) are these words (module docstring)."""
    words, lemmas, lexical = _read(predicate, target)
    if not words:
        return Motion(kind="unknown")
    if lexical is not None:
        return lexical
    if set(lemmas) & _MOVE_VERBS:  # a move with no direction ("moves", "slides across"): no guess at one
        return Motion(kind="unknown")
    return _nearest(" ".join(words))


def _read(predicate: str, target: str | None) -> tuple[list[str], list[str], Motion | None]:
    """The words, their lemmas and the lexicon's motion (None: the lexicon cannot read them)."""
    text = f"{predicate} {target or ''}".lower().replace("-", " ")
    words = _TOKEN.findall(text.replace("n't", " not"))
    lemmas = [_lemma(w) for w in words]
    return words, lemmas, _lexical(words, lemmas) if words else None


# -- the MiniLM fallback --------------------------------------------------------------------------

EXAMPLES: dict[str, tuple[str, ...]] = {
    # action: example phrases the fallback compares a predicate with (the lexicon reads them all already)
    "move_left": ("moves left", "slides to the left", "travels leftwards", "heads to the left side",
                  "drifts over to the left", "makes its way to the left"),
    "move_right": ("moves right", "slides to the right", "travels rightwards", "heads to the right side",
                   "drifts over to the right", "makes its way to the right"),
    "move_up": ("moves up", "rises", "floats upward", "climbs toward the top", "ascends", "soars up high"),
    "move_down": ("moves down", "falls", "sinks", "drops to the bottom", "descends", "plunges downward"),
    "jump": ("jumps", "hops", "leaps into the air", "bounces up and down", "does a little jump", "springs up"),
    "grow": ("grows", "gets bigger", "swells", "expands", "inflates", "becomes larger"),
    "shrink": ("shrinks", "gets smaller", "contracts", "dwindles", "deflates", "becomes tiny"),
    "rotate": ("rotates", "spins", "twirls around", "turns around", "whirls", "spins in a circle"),
    "appear": ("appears", "emerges", "pops up", "comes into view", "materialises", "shows up"),
    "disappear": ("disappears", "vanishes", "fades away", "evaporates", "goes out of sight", "is gone"),
    "change_colour": ("turns red", "becomes blue", "changes colour", "changes its colour to green",
                      "is painted a new colour", "switches colour"),
    "still": ("stays still", "does not move", "remains in place", "waits", "stays put", "rests"),
}  # fmt: skip

CALIBRATION: tuple[tuple[str, str], ...] = (
    # (predicate, expected action or 'unknown'): wordings the lexicon leaves to the fallback (verbs it lacks, and
    # things that are no motion of a shape). SIMILARITY_THRESHOLD is the least multiple of 0.05 at which the
    # fallback accepts no wrong action on this list (tests/test_motion.py checks the rule): a wrong motion is
    # worse than a still shape with a warning.
    ("scoots leftish", "move_left"), ("whooshes off to port", "move_left"), ("lurches skywards", "move_up"),
    ("gets tinier", "shrink"), ("gets larger", "grow"), ("puffs itself out", "grow"),
    ("goes pop", "appear"), ("is no more", "disappear"), ("winks out", "disappear"),
    ("makes a hop", "jump"), ("does a spin", "rotate"), ("is painted a new colour", "change_colour"),
    ("sings a song", "unknown"), ("is happy", "unknown"), ("reads a book", "unknown"), ("eats lunch", "unknown"),
    ("talks loudly", "unknown"), ("thinks", "unknown"), ("smiles", "unknown"), ("writes a letter", "unknown"),
    ("wobbles", "unknown"), ("vibrates", "unknown"), ("dances", "unknown"), ("explodes", "unknown"),
    ("zigzags", "unknown"), ("shimmers", "unknown"), ("pulses", "unknown"), ("glows", "unknown"),
)  # fmt: skip

_state: dict[str, Any] = {}
_lock = threading.Lock()


def _nearest(text: str) -> Motion:
    """The fallback: the action of the example nearest ``text`` if close enough, else ``unknown``."""
    action, similarity = nearest_example(text)
    if similarity < SIMILARITY_THRESHOLD:
        return Motion(kind="unknown")
    return _motion_of(action)


def _motion_of(action: str) -> Motion:
    if action.startswith("move_"):
        return Motion(kind="move", direction=action.removeprefix("move_"))
    return Motion(kind=action)


def nearest_example(text: str) -> tuple[str, float]:
    """(action, cosine similarity) of the example phrase nearest ``text`` under all-MiniLM-L6-v2; ``("unknown",
    0.0)`` when the encoder cannot be loaded (a warning says why)."""
    with _lock:
        if "examples" not in _state:
            try:
                from dysen.planner.embed import SentenceEmbedder

                embedder = SentenceEmbedder(use_cache=False)
                phrases = [(action, p) for action, ps in EXAMPLES.items() for p in ps]
                _state["embedder"] = embedder
                _state["examples"] = (phrases, embedder.encode([p for _, p in phrases]))  # [E, D]
            except Exception as err:  # noqa: BLE001 - no encoder: the lexicon alone decides
                log.warning("the motion normaliser's MiniLM fallback is unavailable (%s); motions it "
                            "cannot read are 'unknown'", err)  # fmt: skip
                _state["examples"] = None
        examples = _state["examples"]
        if examples is None:
            return "unknown", 0.0
        phrases, table = examples
        query = _state["embedder"].encode([text])  # [1, D]
    scores = (table @ query[0]).tolist()  # [E]: cosine similarities (unit rows)
    best = max(range(len(scores)), key=scores.__getitem__)
    return phrases[best][0], float(scores[best])


# -- the seam every plan passes -------------------------------------------------------------------


def with_motion(dsg: DynamicSceneGraph, palette: tuple[str, ...] | None = DEFAULT_PALETTE) -> DynamicSceneGraph:
    """``dsg`` with every event's ``motion`` set (events that carry one keep it). Logged once, on the pass that
    sees them first: a warning per motion filled in as unknown, and per given motion that clashes with its words.

    Colours ``palette`` (the model's world colours) lacks are first replaced by the nearest of them, with a warning
    (``dysen.planner.colours.with_world_colours``), so that "turns navy" reads as a colour change to blue; None (a
    pretrained backbone, which draws any colour) keeps them."""
    dsg = with_world_colours(dsg, palette)
    given = [event.motion is not None for event in dsg.events]
    if not all(given):
        dsg = dsg.model_copy(update={"events": tuple(with_event_motion(event) for event in dsg.events)})
    for event, was_given in zip(dsg.events, given, strict=True):
        line = _clash(event) if was_given else _unknown(event)
        if line:
            log.warning(line)
    return dsg


def with_event_motion(event: Event) -> Event:
    """``event`` with its motion set (kept if it has one)."""
    if event.motion is not None:
        return event
    return event.model_copy(update={"motion": canonical_motion(event.predicate, event.target)})


def motion_warnings(dsg: DynamicSceneGraph) -> list[str]:
    """The plan's warnings about its motions: one line per event whose motion is unknown (nobody will draw it),
    and one per event whose motion says another action than its words (an edited predicate, say, whose old motion
    was left in place: the motion is what is drawn)."""
    return [line for e in dsg.events if e.motion is not None for line in (_unknown(e) or _clash(e),) if line]


def _said(e: Event) -> str:
    return f"({e.agent}, {e.predicate}{', ' + e.target if e.target else ''})"


def _unknown(e: Event) -> str | None:
    if e.motion is None or e.motion.kind != "unknown":
        return None
    return (f"the motion of {_said(e)} is unknown; the {e.agent} stays still "
            "(say e.g. 'moves left', 'jumps', 'grows', 'spins', 'disappears')")  # fmt: skip


def _clash(e: Event) -> str | None:
    """A given motion that the lexicon reads otherwise from the words (never the MiniLM fallback: a warning must
    not load a network)."""
    if e.motion is None or e.motion.kind == "unknown":
        return _unknown(e)
    words = _read(e.predicate, e.target)[2]
    if words is None or words.kind == "unknown" or words.action == e.motion.action:
        return None
    return (f"the motion of {_said(e)} is {e.motion.action} but its words say {words.action}; {e.motion.action} "
            "is drawn (change or delete the event's motion to follow the words)")  # fmt: skip
