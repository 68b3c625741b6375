"""Turn a `Dataset` into the arrays the heads read: encoded once, cached, indexed per pair.

Texts and images are deduplicated before encoding (a prompt like "Describe the image." appears thousands
of times), then every pair points at its rows. Only these arrays cross into training and scoring, so a
retrain never touches the encoders or the files again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rewardlab.cache import EmbeddingCache
from rewardlab.config import EncoderConfig
from rewardlab.data import Dataset
from rewardlab.encoders import Encoder, encode_cached, image_encoder_load, text_encoder_load
from rewardlab.lexical import FACT_FEATURES, bag_of_words, fact_support, facts_text


@dataclass
class Features:
    """Per-text, per-image and per-pair arrays; pair columns index the text and image rows.

    The last text row is all zeros and stands for "no facts".
    """

    text_emb: np.ndarray  # [T + 1, D] float32
    text_bow: np.ndarray  # [T + 1, W] int32 hashed word ids, 0 = padding
    image_tokens: np.ndarray  # [I, M, F] float32; column 0 says whether a token is present
    prompt: np.ndarray  # [P] int64 text rows
    a: np.ndarray
    b: np.ndarray
    facts: np.ndarray
    image: np.ndarray  # [P] int64 image rows
    support_a: np.ndarray  # [P, len(FACT_FEATURES)] how well the facts back each response
    support_b: np.ndarray
    # [P] image row side b is shown with, where it differs from side a's (`rewardlab.contrast`); None: same
    image_b: np.ndarray | None = None

    @property
    def side_b_images(self) -> np.ndarray:
        return self.image if self.image_b is None else self.image_b

    @property
    def dims(self) -> dict[str, int]:
        """The input sizes the heads are built for (`rewardlab.model.heads_build`)."""
        return {"text_dim": self.text_emb.shape[1], "token_features": self.image_tokens.shape[2]}

    def __len__(self) -> int:
        return len(self.prompt)

    def batch(self, pairs: np.ndarray, device: str = "cpu") -> dict[str, torch.Tensor]:
        """Gather the tensors of `pairs` (indices) for one forward pass."""

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        rows = {name: getattr(self, name)[pairs] for name in ("prompt", "a", "b", "facts")}
        batch = {f"{name}_emb": put(self.text_emb[index]) for name, index in rows.items()}
        batch |= {f"{name}_bow": put(self.text_bow[index]) for name, index in rows.items() if name != "facts"}
        batch["tokens"] = put(self.image_tokens[self.image[pairs]])
        if self.image_b is not None:  # only the rows whose side b has an image of its own: few of a batch
            rows_b = np.flatnonzero(self.image_b[pairs] != self.image[pairs])
            batch["rows_b"], batch["tokens_b"] = put(rows_b), put(self.image_tokens[self.image_b[pairs[rows_b]]])
        batch["support_a"], batch["support_b"] = put(self.support_a[pairs]), put(self.support_b[pairs])
        return batch


@dataclass
class Encoders:
    """The frozen encoders of one run, loaded once per process."""

    config: EncoderConfig
    text: Encoder
    image: Encoder

    @classmethod
    def load(cls, config: EncoderConfig, device: str = "cpu") -> Encoders:
        return cls(config, text_encoder_load(config.text, device), image_encoder_load(config.image, device))


def _index(values: list) -> tuple[list, np.ndarray]:
    """Return the distinct values in first-seen order and, per input, its row among them."""
    rows: dict = {}
    positions = np.array([rows.setdefault(value, len(rows)) for value in values], dtype=np.int64)
    return list(rows), positions


def features_build(dataset: Dataset, encoders: Encoders, cache: EmbeddingCache, *, progress: bool = True) -> Features:
    """Encode every distinct text and image of `dataset` (through the cache) and index them per pair."""
    items = [dataset.items[pair.item] for pair in dataset.pairs]
    fact_strings = [facts_text(item.facts) for item in items]
    columns = {
        "prompt": [item.prompt for item in items],
        "a": [pair.a_text for pair in dataset.pairs],
        "b": [pair.b_text for pair in dataset.pairs],
    }
    texts, positions = _index([text for column in columns.values() for text in column] + fact_strings)
    count = len(dataset.pairs)
    text_emb = encode_cached(encoders.text, [t.encode() for t in texts], cache, desc="texts", progress=progress)
    empty = len(texts)  # the zero row appended below
    config = encoders.config
    bow = bag_of_words(texts, buckets=config.lexical_buckets, max_words=config.max_words)
    image_keys, image_rows = _index([item.image for item in items])
    images = encode_cached(
        encoders.image, [dataset.read_image(key) for key in image_keys], cache, desc="images", progress=progress
    )
    facts = positions[3 * count :].copy()
    facts[np.array([not text for text in fact_strings], dtype=bool)] = empty
    return Features(
        text_emb=np.concatenate([text_emb, np.zeros((1, text_emb.shape[1]), np.float32)]),
        text_bow=np.concatenate([bow, np.zeros((1, bow.shape[1]), np.int32)]),
        image_tokens=images,
        prompt=positions[:count],
        a=positions[count : 2 * count],
        b=positions[2 * count : 3 * count],
        facts=facts,
        image=image_rows,
        support_a=_support(columns["a"], items),
        support_b=_support(columns["b"], items),
    )


def _support(responses: list[str], items: list) -> np.ndarray:
    if not responses:
        return np.zeros((0, len(FACT_FEATURES)), np.float32)
    return np.stack([fact_support(text, item.facts) for text, item in zip(responses, items, strict=True)])
