"""Training data for the reward model: items, canonical a/b pairs and their labels, as plain types.

A Dataset is what every trainer and scorer reads, whichever file or database it came from: the readers
(`rewardlab.readers`) build one from the files that leave the web app, and the workers build one from the
database. Its items, pairs and labels refer to each other by list index, in canonical a/b as API.md speaks.

Images stay where they are: a Dataset holds keys, and its image source (`rewardlab.image_sources`) reads
bytes on demand, so a package of 100k items costs strings and offsets in memory, never image bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rewardlab.answers import Answer

LabelSource = Literal["human", "gold", "prior"]


class DataError(ValueError):
    """A file cannot be used as training data; the message names the file, the 1-based line and why."""


@dataclass(frozen=True)
class Item:
    external_id: str
    prompt: str
    image: str  # key for Dataset.read_image (a member name / relative path)
    facts: Mapping[str, Any]  # {} when absent
    meta: Mapping[str, Any]  # {} when absent (meta.get("qtype") is used for per-question-type metrics)


@dataclass(frozen=True)
class Pair:
    item: int  # index into Dataset.items
    a_id: str
    a_text: str
    b_id: str
    b_text: str


@dataclass(frozen=True)
class Label:
    pair: int  # index into Dataset.pairs
    more_hallucinated: Answer
    strength: int | None  # 1..S for a/b, None for both/neither or unknown
    source: LabelSource
    weight: float = 1.0  # a weight carried by the data itself (a reward export's `weight`), else 1.0


class ImageSource(Protocol):
    def read(self, key: str) -> bytes:
        """Return an image's bytes; raise DataError naming the key when it cannot be read."""
        ...


@dataclass
class Dataset:
    """Items, pairs and labels that refer to each other by list index; use it as a context manager."""

    items: list[Item]
    pairs: list[Pair]
    labels: list[Label]
    images: ImageSource

    def read_image(self, key: str) -> bytes:
        return self.images.read(key)

    def close(self) -> None:
        """Close the file the image source keeps open, if it keeps one."""
        close = getattr(self.images, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
