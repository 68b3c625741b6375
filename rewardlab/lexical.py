"""Word-level features: a hashed bag of words, and how well a response is supported by the facts.

A sentence embedding blurs the one word that makes an answer wrong ("two" against "three" red circles),
so the heads also read the words themselves, hashed into a fixed vocabulary whose embeddings they learn.
Fact-RLHF gives the reward model the image's known facts (captions, answers); `fact_support` measures, for
each response, how much of it the facts back, which is the comparison a human makes with a caption at hand.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
# Words that carry no claim; left out of the support measure so a longer sentence is not penalised for them.
STOPWORDS = frozenset(
    "a an the is are was were be been there here it its this that of in on at to and or with as by for from "
    "i you we my your me us".split()
)
FACT_FEATURES = ("has_facts", "supported", "unsupported", "answer_stated", "answer_known")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def bag_of_words(texts: Sequence[str], *, buckets: int, max_words: int) -> np.ndarray:
    """Return [n, max_words] int32 hashed word ids in 1..buckets-1, padded with 0 (CRC32: stable across runs)."""
    ids = np.zeros((len(texts), max_words), dtype=np.int32)
    for row, text in enumerate(texts):
        hashed = [1 + zlib.crc32(word.encode()) % (buckets - 1) for word in words(text)[:max_words]]
        ids[row, : len(hashed)] = hashed
    return ids


def facts_text(facts: Mapping[str, Any]) -> str:
    """Flatten an item's facts into one sentence for the text encoder: "caption: … answer: …"."""
    return " ".join(f"{key}: {value}" for key, value in sorted(facts.items()) if value not in (None, "", [], {}))


def _content(text: str) -> set[str]:
    return {word for word in words(text) if word not in STOPWORDS}


def fact_support(response: str, facts: Mapping[str, Any]) -> np.ndarray:
    """Return FACT_FEATURES for one response: share of its content words the facts contain, log count of
    the others (claims the facts do not back), and whether it states the known short answer."""
    if not facts:
        return np.zeros(len(FACT_FEATURES), dtype=np.float32)
    claimed, known = _content(response), _content(facts_text(facts))
    supported = len(claimed & known) / max(len(claimed), 1)
    unsupported = np.log1p(len(claimed - known))
    answer = set(words(str(facts.get("answer", ""))))
    stated = float(bool(answer) and answer <= set(words(response)))
    return np.array([1.0, supported, unsupported, stated, float(bool(answer))], dtype=np.float32)
