"""The rules planner's lexicon: word lists, phrase tables and the tokeniser and lemmatiser built on them.

Pure data plus small helpers, no parsing; the grammar that uses them is described in
``dysen.planner.rules`` (its module docstring).
"""

from __future__ import annotations

import re

from dysen.world import vocab

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
            "later, and later, eventually, subsequently, at last, and at last, lastly, and lastly, in the end, "
            "followed by, and followed by"
        ),
        SEQ,
    ),
    **dict.fromkeys(
        _phrases_of(
            "while, whilst, as, as soon as, when, meanwhile, and meanwhile, simultaneously, and simultaneously, "
            "at the same time, and at the same time"
        ),
        SIM,
    ),
    **{("before",): BEFORE, ("after",): AFTER, ("and",): PLAIN, (",",): PLAIN, (";",): PLAIN},
}
# the longest connective, in tokens
LONGEST_CONNECTIVE = max(len(c) for c in CONNECTIVES)
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
# colour adjectives (the renderer's colours plus common ones that name nothing else; dysen.planner.colours maps
# those the world lacks to its nearest colour)
COLOUR_WORDS: frozenset[str] = frozenset(vocab.COLOURS) | frozenset(
    "white black pink brown grey gray cyan magenta violet indigo turquoise teal navy crimson scarlet maroon beige "
    "lavender".split()
)
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
ADVERBS: frozenset[str] = frozenset(
    "very also just again slowly quickly together gently now suddenly steadily smoothly gradually calmly halfway "
    "partway midway".split()
)
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
    glide drift head plunge descend ascend soar tumble dip emerge materialise materialize evaporate inflate
    enlarge balloon whirl pivot flip somersault cartwheel pirouette perform execute nudge shove hoist tug yank
    haul heave hurl fling scoot sidle shuffle scurry trot zoom zip dart dash pop slip bob hurtle plop slump lurch
    wobble swoop waft hurry scurry erase delete remove add dye scale
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
# nouns of a motion that a light verb turns into a verb ("does a little jump", "takes a leap" -> "jumps", "leaps")
MOTION_NOUNS: frozenset[str] = frozenset(
    "jump hop leap bounce skip spin twirl whirl turn flip somersault cartwheel pirouette dive tumble roll "
    "spring vault bound pivot".split()
)
# light verbs of those idioms ("does", "takes", "makes", "gives", "performs", "executes")
LIGHT_VERBS: frozenset[str] = frozenset("do take make give perform execute".split())
# words between a light verb and its motion noun ("does a quick little jump")
IDIOM_FILLER: frozenset[str] = frozenset(
    "a an one another its their his her little small quick short big large tiny high great sudden brief single few "
    "couple of full complete whole".split()
)
# verbs whose passive ("is moved", "gets pushed") means the subject moves: read as the active verb
PASSIVE_MOTION: frozenset[str] = frozenset(
    "move push pull drag lift raise lower shift slide roll spin rotate turn flip throw toss carry blow knock "
    "pick drop tilt twist swing bounce launch kick shove nudge".split()
)
# verbs whose passive says that the subject comes or goes ("is added to the scene", "is erased"), and what it means
PASSIVE_RESULTS: dict[str, str] = {"add": "appears", **dict.fromkeys("erase delete remove".split(), "disappears")}
# auxiliaries of a passive ("is moved", "gets pushed", "has been lifted")
PASSIVE_AUX: frozenset[str] = frozenset("is are was were be been being get gets got getting".split())
# quantities and adverbial idioms that are no objects ("moves a bit to the left", "vanishes in a flash")
AMOUNT_PHRASES: tuple[tuple[str, ...], ...] = _phrases_of(
    "a little bit, a tiny bit, a bit, a tad, a lot, a little way, a little, a short way, a long way, somewhat, "
    "slightly, all the way, in a flash, in an instant, in a moment, at once, all of a sudden, bit by bit, "
    "little by little, step by step, in place, on the spot, once, twice, again and again, over and over, "
    "on the screen, on screen, onto the screen, in the middle, in the centre, in the center, out of nowhere, "
    "from nowhere, in the scene, on the canvas, in the frame, across the screen, across the frame"
)
# nouns after a verb that name no object of the scene but a measure, a place of the screen, a state or the motion
# itself ("grows in size", "springs into the air", "enters the scene", "blinks into existence", "spins in place",
# "moves a few inches", "makes a complete rotation"), and the place adverbs "there" and "here" ("sits there"): such a
# noun phrase stays part of the predicate
COMPLEMENT_NOUNS: frozenset[str] = frozenset(
    """
    there here
    size colour color hue shade air scene screen frame canvas picture image view sight existence being place spot
    middle centre center top bottom left right side edge corner half end border area distance way direction
    bit length width height inch inches foot feet step steps pixel pixels metre metres meter meters
    centimetre centimetres
    rotation rotations revolution revolutions turn turns spin spins loop loops
    """.split()
)
# adjectives of a state a verb reaches ("goes invisible", "becomes tiny"): a bare one after a verb names no object
STATE_ADJECTIVES: frozenset[str] = frozenset("visible invisible hidden transparent".split())
# comparatives of size read as the two the Dynamic Shapes phrases use ("gets larger" -> "gets bigger")
COMPARATIVES: dict[str, str] = {
    **dict.fromkeys("bigger larger taller wider greater huger".split(), "bigger"),
    **dict.fromkeys("smaller tinier littler narrower thinner shorter".split(), "smaller"),
}
# time phrases read through wherever they stand ("the star, after a moment, shrinks")
TIME_PHRASES: tuple[tuple[str, ...], ...] = _phrases_of(
    "after a moment, after a while, after a second, for a moment, for a while, for a second, a moment later, "
    "in a moment, in a second, soon after"
)
# a span of time ("over a few seconds", "for two seconds", "within a couple of moments"): its preposition, the
# words that may count the unit, and the unit; such a phrase is read through like ``TIME_PHRASES``
DURATION_LEADS: frozenset[str] = frozenset("over for in within during across".split())
DURATION_COUNTS: frozenset[str] = frozenset("a an the few several couple of next some many".split())
TIME_UNITS: frozenset[str] = frozenset(
    "second seconds moment moments minute minutes instant instants beat beats".split()
)
# phrases after a verb that make it an appearing or a disappearing ("pops into view", "slips out of sight")
VIEW_PHRASES: dict[tuple[str, ...], str] = {
    **dict.fromkeys(_phrases_of("into view, into sight, into existence, into being"), "appear"),
    **dict.fromkeys(_phrases_of("out of view, out of sight, out of existence, from view, from sight"), "disappear"),
}
# direction words read as the particle they mean ("upwards" -> "upward", "leftwards" -> "left")
DIRECTION_WORDS: dict[str, str] = {
    **dict.fromkeys("upwards skyward skywards".split(), "upward"),
    **dict.fromkeys("downwards".split(), "downward"),
    **dict.fromkeys("leftward leftwards".split(), "left"),
    **dict.fromkeys("rightward rightwards".split(), "right"),
}
# places of the screen a phrase may name as a direction ("to the top of the screen" -> "up")
SCREEN_PLACES: dict[str, str] = {"left": "left", "right": "right", "top": "up", "bottom": "down", "ceiling": "up",
                                 "floor": "down", "sky": "up", "ground": "down"}  # fmt: skip
# parts of a side ("the left edge") and names of the screen ("of the frame")
SCREEN_PARTS: frozenset[str] = frozenset("side edge corner part half end border area".split())
SCREEN_NAMES: frozenset[str] = frozenset("screen frame canvas picture image scene view video window".split())
# words that mark subjects acting together and name nothing ("A and B both jump", "the circles each spin")
TOGETHER_WORDS: frozenset[str] = frozenset("both each all together".split())
# Dynamic Shapes paraphrases as token tuples -> (canonical predicate, target); '{colour}' expanded
SHAPES_PHRASES: dict[tuple[str, ...], tuple[str, str | None]] = {
    tuple(phrase.format(colour=colour).split()): (action.predicate, colour if "{colour}" in phrase else None)
    for action in vocab.ACTIONS
    for template in vocab.ACTION_PHRASES[action.name]
    for phrase in {template, template.replace("colour to", "color to")}
    for colour in (sorted(COLOUR_WORDS) if "{colour}" in phrase else [""])
}
# the longest Dynamic Shapes paraphrase, in tokens
LONGEST_PHRASE = max(len(p) for p in SHAPES_PHRASES)

# tokens: words (with one inner apostrophe), numbers and the punctuation that structures clauses
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+|[.!?;:,]")
# contraction endings and what they stand for ("'s" is resolved by context)
_CONTRACTIONS = {"n't": "not", "'re": "are", "'m": "am", "'ll": "will", "'ve": "have", "'d": "would"}
# stems of negative contractions that change ("won't", "can't")
_NEGATED_STEMS = {"wo": "will", "ca": "can", "sha": "shall"}


# -- tokens and verbs -----------------------------------------------------------------------------


def tokenise(text: str) -> list[str]:
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


def lemma(token: str) -> tuple[str, str] | None:
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


def third_person(base: str) -> str:
    """The 3rd person singular present of a base form ("catch" -> "catches", "carry" -> "carries")."""
    special = {"be": "is", "have": "has", "do": "does", "go": "goes"}
    if base in special:
        return special[base]
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and len(base) > 1 and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def guess_base(token: str) -> str:
    """Base form of an unknown "-s"/"-ed" verb ("zooms" -> "zoom")."""
    return token[:-1] if token.endswith("s") else token[:-2]


def is_plural(subject: list[str]) -> bool:
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


# verbs (base forms) of a colour change ("turns blue", "is painted green"): shared by the motion reader and the
# colour mapping, which reads a target as a colour only after one of them
COLOUR_VERBS: frozenset[str] = frozenset(
    "turn become change go get switch paint colour color recolour recolor flush blush shift fade glow transform dye "
    "tint".split()
)
# direction words, and words that name a side of the screen, with the direction they give
DIRECTION_OF: dict[str, str] = {
    **dict.fromkeys("left leftward leftwards west westward westwards".split(), "left"),
    **dict.fromkeys("right rightward rightwards east eastward eastwards".split(), "right"),
    **dict.fromkeys("up upward upwards top ceiling sky skyward skywards uphill higher above overhead aloft "
                    "north heaven heavens".split(), "up"),  # fmt: skip
    **dict.fromkeys("down downward downwards bottom floor ground downhill lower below beneath south earth "
                    "underneath".split(), "down"),  # fmt: skip
}
