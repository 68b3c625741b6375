"""Merging rows that repeat an external_id into one item (API.md, "Import package").

Public files repeat an id for the same image and question with another pair of answers (VL-RewardBench does
so for 18 ids): such rows are one item with several responses and pairs. Each row keeps its pair and its
labels; a response equal in text and model to one the item has is that response, and a new one whose id is
taken gets a fresh one. The same id with another image, prompt or facts is an error naming both rows. Whether
the images are the same is the caller's to say (it compares their SHA-256), so this module reads no image.
"""

from __future__ import annotations

from dataclasses import replace

from rewardlab.answers import Answer
from rewardlab.package.lines import MAX_ID_LENGTH, ItemSpec, LabelSpec, LineError, ResponseSpec, with_kept

# The meta field that keeps a repeated row's own meta when it differs from the item's (a judge's rationale).
REPEATED_META = "repeated_rows"
FLIPPED: dict[Answer, Answer] = {"a": "b", "b": "a", "both": "both", "neither": "neither"}


def different_image(external_id: str, *, first_where: str, later_where: str) -> LineError:
    """The error for a row that repeats an id with another image."""
    return LineError(f"external_id {external_id!r}: {later_where} has another image than {first_where}")


def merge_items(item: ItemSpec, row: ItemSpec, *, first_where: str, later_where: str) -> ItemSpec:
    """Return `item` with the responses, pairs and labels of `row`, a later row with the same id and image.

    Raise LineError naming both rows when they are not the same item (another prompt, other facts).
    """
    for name in ("prompt", "facts"):
        if getattr(row, name) != getattr(item, name):
            another = "another prompt" if name == "prompt" else "other facts"
            raise LineError(f"external_id {item.external_id!r}: {later_where} has {another} than {first_where}")
    responses, ids = _merged_responses(item.responses, row.responses)
    pairs, priors, gold = list(item.pairs), list(item.priors), list(item.gold)
    for index, (a, b) in enumerate(row.pairs):
        pair = (ids[a], ids[b])
        if pair[0] == pair[1]:
            raise LineError(f"pairs[{index}]: both responses are response {pair[0]!r} of {first_where}")
        at = next((i for i, known in enumerate(pairs) if set(known) == set(pair)), len(pairs))
        if at == len(pairs):
            pairs.append(pair)
        flip = pairs[at] != pair
        # A row repeated as it is adds nothing: its labels are already the item's.
        priors += [
            moved for label in row.priors if label.pair == index and (moved := _moved(label, at, flip)) not in priors
        ]
        for label in (_moved(label, at, flip) for label in row.gold if label.pair == index):
            known_gold = next((known for known in gold if known.pair == at), None)
            if known_gold is None:
                gold.append(label)
            elif known_gold.more_hallucinated != label.more_hallucinated:
                raise LineError(f"gold: the pair {list(pair)} has another gold answer on {first_where}")
    return replace(
        item,
        responses=tuple(responses),
        pairs=tuple(pairs),
        priors=tuple(priors),
        gold=tuple(gold),
        meta=_merged_meta(item.meta, row.meta),
    )


def _merged_responses(
    known: tuple[ResponseSpec, ...], new: tuple[ResponseSpec, ...]
) -> tuple[list[ResponseSpec], dict[str, str]]:
    """Return the item's responses with the row's new ones, and the item's id of each of the row's responses."""
    responses = list(known)
    by_content = {(response.text, response.model): response.id for response in responses}
    ids: dict[str, str] = {}
    for response in new:
        same = by_content.get((response.text, response.model))
        if same is None:
            taken = {known.id for known in responses}
            fresh = response.id
            suffix = 1
            while fresh in taken:
                suffix += 1
                fresh = f"{response.id}-{suffix}"
            if len(fresh) > MAX_ID_LENGTH:
                raise LineError(f"responses: the id {fresh[:40]!r}… given to a repeated id's new response is too long")
            responses.append(replace(response, id=fresh))
            same = by_content[(response.text, response.model)] = fresh
        ids[response.id] = same
    return responses, ids


def _moved(label: LabelSpec, pair: int, flip: bool) -> LabelSpec:
    """Return the label on the item's pair `pair`, its answer flipped when the item has the pair as (b, a)."""
    answer = FLIPPED[label.more_hallucinated] if flip else label.more_hallucinated
    return replace(label, pair=pair, more_hallucinated=answer)


def _merged_meta(meta: dict, row_meta: dict) -> dict:
    """Keep the first row's meta; a later row's own meta, when it differs, is listed under REPEATED_META."""
    if row_meta == meta or row_meta == {k: v for k, v in meta.items() if k != REPEATED_META}:
        return meta
    if REPEATED_META in meta:
        return {**meta, REPEATED_META: [*meta[REPEATED_META], row_meta]}
    return with_kept(meta, {REPEATED_META: [row_meta]})
