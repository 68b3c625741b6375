"""A campaign's rows as a `rewardlab` Dataset: where the labeling domain's tables become the arrays and
image bytes the reward-model library trains on (DESIGN.md, "Rooms": `workers` joins the two sides).

Workers import this module; the web process never does (`tests/test_web_boundary.py`).
"""

from __future__ import annotations

import numpy as np
from django.core.files.storage import default_storage
from django.db.models import QuerySet

from annotate.models import Annotation, Campaign, Item, Pair, PriorLabel
from rewardlab import data as rl


class StorageImages:
    """Item images read from Django's storage by SHA-256, only when an encoder needs their bytes."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def read(self, key: str) -> bytes:
        try:
            with default_storage.open(self.names[key], "rb") as fp:
                return fp.read()
        except (KeyError, OSError) as exc:
            raise rl.DataError(f"image {key[:12]}: cannot be read ({exc}).") from exc


def campaign_dataset(campaign: Campaign, *, pairs: QuerySet[Pair] | None = None) -> tuple[rl.Dataset, np.ndarray]:
    """Return the campaign (or the given pairs of it) as a rewardlab Dataset, and the Pair id of each pair.

    Labels: each prior label, each human annotation and each gold answer, all in canonical a/b.
    """
    pairs = Pair.objects.filter(campaign=campaign) if pairs is None else pairs
    pair_rows = list(
        pairs.order_by("id").values_list(
            "id", "item_id", "a__external_id", "a__text", "b__external_id", "b__text", "gold_answer"
        )
    )
    item_rows = list(
        Item.objects.filter(pk__in=pairs.values("item_id"))  # a subquery: 100k ids would overflow parameters
        .order_by("id")
        .values_list("id", "external_id", "prompt", "image__sha256", "image__file", "facts", "meta")
    )
    item_index = {row[0]: index for index, row in enumerate(item_rows)}
    pair_index = {row[0]: index for index, row in enumerate(pair_rows)}
    labels = [
        rl.Label(pair_index[pair_id], choice, strength, source)
        for source, model in (("prior", PriorLabel), ("human", Annotation))
        for pair_id, choice, strength in model.objects.filter(pair__in=pairs)
        .order_by("id")
        .values_list("pair_id", "more_hallucinated", "strength")
    ]
    labels += [rl.Label(index, row[6], None, "gold") for index, row in enumerate(pair_rows) if row[6]]
    dataset = rl.Dataset(
        items=[rl.Item(ext, prompt, sha, facts or {}, meta or {}) for _, ext, prompt, sha, _, facts, meta in item_rows],
        pairs=[
            rl.Pair(item_index[item_id], a_id, a_text, b_id, b_text)
            for _, item_id, a_id, a_text, b_id, b_text, _ in pair_rows
        ],
        labels=labels,
        images=StorageImages({row[3]: row[4] for row in item_rows}),
    )
    return dataset, np.array([row[0] for row in pair_rows], dtype=np.int64)
