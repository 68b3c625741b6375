"""The words of the scene family (`rewardlab.scenes`): nouns, colour terms, numerals, relations, templates, styles.

A reward model that reads the answer's wording instead of the image learns the generator's vocabulary and
phrasing. Each vocabulary pool below is therefore split into options that training variants use and options
kept for held-out variants: a model that only memorised "square" or "How many ...?" shows it on "box" or
"What is the number of ...?". This module only turns a claim into text; the scenes and their truth live in
`rewardlab.scenes`.

Both answers of a pair use one claim template and differ only in the slots that carry the claim (a number, a
colour, an object, a relation, yes or no); a style marker (`STYLE_FORMS`) then wraps one of them, and
`strip_style` takes it off again, so tests can check that nothing but the claim and the marker differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from rewardlab.synthetic import QType

Numerals = Literal["words", "digits"]
Relation = Literal["left", "right", "above", "below", "near", "far"]
StyleKind = Literal["verbosity", "hedging", "politeness", "markdown"]
Role = Literal["prompt", "claim"]

RELATIONS: tuple[Relation, ...] = get_args(Relation)
# A "no" answer about a relation states the opposite one, so it is as specific as the "yes" answer.
OPPOSITE: dict[Relation, Relation] = {
    "left": "right",
    "right": "left",
    "above": "below",
    "below": "above",
    "near": "far",
    "far": "near",
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Noun:
    """A word for one kind of shape; every noun here fits a filled, an outlined and a hollow shape alike."""

    kind: str
    singular: str
    plural: str


def _nouns(*entries: tuple[str, str, str]) -> dict[str, Noun]:
    return {singular: Noun(kind, singular, plural) for kind, singular, plural in entries}


# No "disc" or "ring": a disc is filled and a ring hollow, so either would be false for one rendering.
NOUNS: dict[str, Noun] = _nouns(
    ("circle", "circle", "circles"),
    ("square", "square", "squares"),
    ("triangle", "triangle", "triangles"),
    ("diamond", "diamond", "diamonds"),
    ("cross", "cross", "crosses"),
    ("ellipse", "oval", "ovals"),
    ("square", "box", "boxes"),
    ("diamond", "rhombus", "rhombuses"),
    ("cross", "plus sign", "plus signs"),
    ("ellipse", "ellipse", "ellipses"),
    ("star", "star", "stars"),
    ("hexagon", "hexagon", "hexagons"),
    ("heart", "heart", "hearts"),
)
TRAIN_NOUNS = ("circle", "square", "triangle", "diamond", "cross", "oval")
HELD_NOUNS = ("box", "rhombus", "plus sign", "ellipse", "star", "hexagon", "heart")

# Word -> basic colour term (Berlin & Kay). The held-out words are synonyms of a basic term, never a new hue.
COLOUR_WORDS: dict[str, str] = {
    **{basic: basic for basic in ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")},
    **{basic: basic for basic in ("gray", "black", "white")},
    "scarlet": "red",
    "crimson": "red",
    "violet": "purple",
    "grey": "gray",
    "rose": "pink",
}
TRAIN_COLOUR_WORDS = tuple(word for word, basic in COLOUR_WORDS.items() if word == basic)
HELD_COLOUR_WORDS = tuple(word for word, basic in COLOUR_WORDS.items() if word != basic)

# Phrase -> relation; "A <phrase> B" must read naturally for every phrase.
RELATION_PHRASES: dict[str, Relation] = {
    "to the left of": "left",
    "to the right of": "right",
    "above": "above",
    "below": "below",
    "next to": "near",
    "far from": "far",
    "on the left side of": "left",
    "on the right side of": "right",
    "higher up than": "above",
    "beneath": "below",
    "beside": "near",
    "far away from": "far",
}
TRAIN_RELATION_PHRASES = tuple(RELATION_PHRASES)[: len(RELATIONS)]
HELD_RELATION_PHRASES = tuple(RELATION_PHRASES)[len(RELATIONS) :]


@dataclass(frozen=True)
class Template:
    """A prompt, or a claim (no final period); a yes/no claim gives its affirmative and its negative form.

    Slots: {colour} {noun} {plural} {label} {thing} {count} {be} {a} {b} {relation} {objects}.
    """

    qtype: QType
    role: Role
    text: str
    negative: str | None = None
    held_out: bool = False


def _t(qtype: QType, role: Role, text: str, negative: str | None = None, *, held: bool = False) -> Template:
    return Template(qtype, role, text, negative, held)


TEMPLATES: dict[str, Template] = {
    "counting/how-many": _t("counting", "prompt", "How many {colour} {plural} are in the image?"),
    "counting/count-the": _t("counting", "prompt", "Count the {colour} {plural} in the picture."),
    "counting/number-of": _t("counting", "prompt", "What is the number of {colour} {plural} shown?", held=True),
    "counting/there-are": _t("counting", "claim", "There {be} {count} in the image"),
    "counting/contains": _t("counting", "claim", "The image contains {count}"),
    "counting/i-count": _t("counting", "claim", "I can count {count} in the picture", held=True),
    "colour/what-colour": _t("colour", "prompt", "What colour is the {noun}?"),
    "colour/which-colour": _t("colour", "prompt", "Which colour does the {noun} have?"),
    "colour/color-of": _t("colour", "prompt", "What is the color of the {noun}?", held=True),
    "colour/is": _t("colour", "claim", "The {noun} is {colour}"),
    "colour/in-image": _t("colour", "claim", "The {noun} in the image is {colour}"),
    "colour/coloured": _t("colour", "claim", "That {noun} is coloured {colour}", held=True),
    "existence/is-there": _t("existence", "prompt", "Is there {thing} in the image?"),
    "existence/contain": _t("existence", "prompt", "Does the picture contain {thing}?"),
    "existence/can-you-see": _t("existence", "prompt", "Can you see {thing}?", held=True),
    "existence/there-is": _t(
        "existence", "claim", "Yes, there is {thing} in the image", "No, there is no {label} in the image"
    ),
    "existence/contains": _t(
        "existence", "claim", "Yes, the picture contains {thing}", "No, the picture does not contain {thing}"
    ),
    "existence/i-see": _t("existence", "claim", "Yes, I can see {thing}", "No, I cannot see {thing}", held=True),
    "spatial/is-the": _t("spatial", "prompt", "Is the {a} {relation} the {b}?"),
    "spatial/is-it-true": _t("spatial", "prompt", "Is it true that the {a} is {relation} the {b}?"),
    "spatial/would-you-say": _t("spatial", "prompt", "Would you say the {a} is {relation} the {b}?", held=True),
    "spatial/yes-the": _t(
        "spatial", "claim", "Yes, the {a} is {relation} the {b}", "No, the {a} is {relation} the {b}"
    ),
    "spatial/answer-is": _t(
        "spatial",
        "claim",
        "The answer is yes: the {a} is {relation} the {b}",
        "The answer is no: the {a} is {relation} the {b}",
    ),
    "spatial/sits": _t(
        "spatial", "claim", "Yes, the {a} sits {relation} the {b}", "No, the {a} sits {relation} the {b}", held=True
    ),
    "description/describe": _t("description", "prompt", "Describe the image."),
    "description/what-shows": _t("description", "prompt", "What does the picture show?"),
    "description/short": _t("description", "prompt", "Give a short description of the scene.", held=True),
    "description/shows": _t("description", "claim", "The image shows {objects}"),
    "description/there-are": _t("description", "claim", "In the picture there {be} {objects}"),
    "description/contains": _t("description", "claim", "This scene contains {objects}", held=True),
}
TRAIN_TEMPLATES = tuple(tid for tid, template in TEMPLATES.items() if not template.held_out)
HELD_TEMPLATES = tuple(tid for tid, template in TEMPLATES.items() if template.held_out)

# Each form wraps the bare claim ({claim}, or {lclaim} with its first letter lowered) in words that add no fact
# about the image: the shortcut a reward model must not learn (Li et al.; DT2IT-MRM on verbosity bias).
STYLE_FORMS: dict[StyleKind, tuple[str, ...]] = {
    "verbosity": (
        "I looked carefully at every part of the image before answering. {claim}.",
        "{claim}. I took my time and went over the whole picture before giving this answer.",
        "Here is my answer after a careful look at the whole picture. {claim}.",
    ),
    "hedging": ("I think {lclaim}.", "{claim}, if I am not mistaken.", "{claim}, I believe."),
    "politeness": (
        "Certainly! Happy to help. {claim}.",
        "{claim}. I hope this helps!",
        "Great question! {claim}. Let me know if you need anything else.",
    ),
    "markdown": ("- {claim}.", "**Answer:**\n\n- {claim}.", "### Answer\n\n- {claim}."),
}
PLAIN_FORM = "{claim}."


def _lower_first(claim: str) -> str:
    return claim if claim.startswith("I ") else claim[0].lower() + claim[1:]


def styled(claim: str, form: str = PLAIN_FORM) -> str:
    """Return the bare claim written in one form: PLAIN_FORM or one of STYLE_FORMS."""
    return form.format(claim=claim, lclaim=_lower_first(claim))


def _form_pattern(form: str) -> re.Pattern[str]:
    body = re.escape(form).replace(r"\{claim\}", "(?P<claim>.+)").replace(r"\{lclaim\}", "(?P<claim>.+)")
    return re.compile(body, re.DOTALL)


_PATTERNS = [(_form_pattern(f), "{lclaim}" in f) for forms in STYLE_FORMS.values() for f in forms]


def strip_style(text: str) -> str:
    """Return the bare claim of an answer, whichever style form (or none) wrote it."""
    for pattern, lowered in [*_PATTERNS, (_form_pattern(PLAIN_FORM), False)]:
        match = pattern.fullmatch(text)
        if match:
            claim = match["claim"]
            return claim[0].upper() + claim[1:] if lowered else claim
    raise ValueError(f"{text!r} is in no known style form; expected a claim ending with a period")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _capitalise(text: str) -> str:
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Wording:
    """The words one item uses: a noun per kind, a word per colour, a numeral style, a phrase per relation."""

    nouns: Mapping[str, Noun]
    colours: Mapping[str, str]
    numerals: Numerals
    relations: Mapping[Relation, str]
    prompt_id: str
    claim_id: str

    def number(self, n: int) -> str:
        return NUMBER_WORDS[n] if self.numerals == "words" else str(n)

    def noun(self, kind: str, n: int = 1) -> str:
        noun = self.nouns[kind]
        return noun.singular if n == 1 else noun.plural

    def label(self, colour: str, kind: str, n: int = 1) -> str:
        """Return e.g. "red circle" (n == 1) or "red circles"."""
        return f"{self.colours[colour]} {self.noun(kind, n)}"

    def thing(self, colour: str, kind: str) -> str:
        label = self.label(colour, kind)
        return f"{_article(label)} {label}"

    def count(self, n: int, colour: str, kind: str) -> str:
        """Return e.g. "two red circles": a counting claim always spells its number."""
        return f"{self.number(n)} {self.label(colour, kind, n)}"

    def objects(self, groups: Sequence[tuple[int, str, str]]) -> str:
        """Return "two red circles, a blue square and an orange star" for [(count, colour, kind), ...]."""
        parts = [self.thing(c, k) if n == 1 and self.numerals == "words" else self.count(n, c, k) for n, c, k in groups]
        return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"

    def caption(self, groups: Sequence[tuple[int, str, str]]) -> str:
        return f"{_capitalise(self.objects(groups))}."

    def slots(self, colour: str, kind: str) -> dict[str, str]:
        """Return the slots a template may use about one object: {colour} {noun} {plural} {label} {thing}."""
        return {
            "colour": self.colours[colour],
            "noun": self.noun(kind),
            "plural": self.noun(kind, 2),
            "label": self.label(colour, kind),
            "thing": self.thing(colour, kind),
        }

    def prompt(self, **slots: Any) -> str:
        return TEMPLATES[self.prompt_id].text.format(**slots)

    def claim(self, *, negative: bool = False, **slots: Any) -> str:
        """Return the bare claim (no period): the negative form when the template has one and it is asked."""
        template = TEMPLATES[self.claim_id]
        text = template.negative if negative and template.negative else template.text
        return text.format(**slots)
