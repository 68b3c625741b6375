"""Hallucinated spans over an answer's own text: its words for marking, its marked pieces for showing.

A span is `{"response": "a", "start": 10, "end": 24, "type"?: "count"}`: character offsets in the response's
text (code points, as Python and PostgreSQL's char_length count them, not the UTF-16 units a browser's
string counts), on the canonical side, whichever side was shown on the left (API.md, "Labels"). Pages never
compute offsets from what the browser shows: the server cuts the text into words that carry their offsets,
and renders highlights from offsets over the text piece by piece, each piece escaped by the template.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

# A word, a run of letters/digits (with inner apostrophes: "isn't"), or one punctuation mark: spans snap to these.
WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


class Piece(NamedTuple):
    """A stretch of the text: a word (markable) or the gap before the next one."""

    text: str
    start: int
    end: int
    is_word: bool


class Marked(NamedTuple):
    """A stretch of the text, marked by the spans covering it (their types, "" for none), or not at all."""

    text: str
    marked: bool
    types: tuple[str, ...]


def pieces(text: str) -> list[Piece]:
    """Cut the text into words and the gaps between them, covering it end to end."""
    out: list[Piece] = []
    at = 0
    for match in WORD.finditer(text):
        if match.start() > at:
            out.append(Piece(text[at : match.start()], at, match.start(), False))
        out.append(Piece(match.group(), match.start(), match.end(), True))
        at = match.end()
    if at < len(text):
        out.append(Piece(text[at:], at, len(text), False))
    return out


def marked(text: str, spans: Iterable[dict]) -> list[Marked]:
    """Cut the text at every span boundary; each stretch says whether spans cover it, and their types.

    Overlapping spans (two annotators marking the same words) make one highlight, typed by both.
    """
    spans = [span for span in spans if 0 <= span["start"] < span["end"] <= len(text)]
    cuts = sorted({0, len(text), *(span["start"] for span in spans), *(span["end"] for span in spans)})
    out: list[Marked] = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        covering = [span for span in spans if span["start"] <= start and end <= span["end"]]
        types = tuple(sorted({span.get("type") or "" for span in covering}))
        out.append(Marked(text[start:end], bool(covering), types))
    return out


def on_side(spans: Iterable[dict], side: str) -> list[dict]:
    """Return the spans on one response (`a` or `b`), in text order."""
    return sorted((span for span in spans if span["response"] == side), key=lambda span: (span["start"], span["end"]))
