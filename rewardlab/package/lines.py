"""Validating one line of items.jsonl into an `ItemSpec` (API.md, "Import package").

Every check that needs neither the database nor the image bytes lives here, so a bad line is refused
with a precise reason before anything is written. Prior and gold labels come out already in the
pair's canonical a/b terms, so the writer only copies values. The field checks (`expect_string`, ...)
are shared with `public`, which converts the public preference layouts into the same ItemSpec.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from rewardlab.answers import TIES, Answer
from rewardlab.package.containers import CELL_PREFIX

T = TypeVar("T")

REQUIRED_FIELDS = ("external_id", "image", "prompt", "responses")
OPTIONAL_FIELDS = ("pairs", "facts", "meta", "prior", "gold")
# Where a row may name its image: VL-RewardBench, LLaVA-RLHF and RLAIF-V as published say `image_path`.
IMAGE_PATH = "image_path"
RESPONSE_FIELDS = ("id", "text", "model")
LABEL_REQUIRED = ("pair", "more_hallucinated")
LABEL_FIELDS = {"prior": (*LABEL_REQUIRED, "strength", "source"), "gold": LABEL_REQUIRED}
# Answers written literally instead of as a response id, so no response may be named like them.
LITERAL_ANSWERS = TIES
# Column sizes of annotate.models, checked here so a long value is a line error, not a database error.
MAX_ID_LENGTH = 200
MAX_MODEL_LENGTH = 200
MAX_SOURCE_LENGTH = 100
# How much of a bad value an error message quotes.
SHOW_CHARS = 60


class LineError(ValueError):
    """One line is not a valid item; the message names the field and says what was expected."""


class MissingFieldError(LineError):
    """A row lacks a top-level field its layout requires: it may be in a layout only a column mapping reads."""


@dataclass(frozen=True)
class ResponseSpec:
    id: str
    text: str
    model: str = ""


@dataclass(frozen=True)
class LabelSpec:
    """A prior or gold label on `ItemSpec.pairs[pair]`, in that pair's a/b terms."""

    pair: int
    more_hallucinated: Answer
    strength: int | None = None
    source: str = ""


@dataclass(frozen=True)
class ItemSpec:
    external_id: str
    image: str  # a relative path inside the package, or a data: URI
    prompt: str
    responses: tuple[ResponseSpec, ...]
    pairs: tuple[tuple[str, str], ...]  # (a, b) response ids, in the order the line gave them
    facts: dict[str, Any]
    meta: dict[str, Any]
    priors: tuple[LabelSpec, ...]
    gold: tuple[LabelSpec, ...]

    def gold_answer(self, pair: int) -> Answer | Literal[""]:
        """Return the known answer for `pairs[pair]`, or "" when it is not a gold pair."""
        return next((label.more_hallucinated for label in self.gold if label.pair == pair), "")


@dataclass(frozen=True)
class Layout:
    """A layout lines of items.jsonl can be in, as `layouts.ItemSpecParser` tells them apart."""

    name: str
    markers: tuple[str, ...]  # fields no other layout has: a row holding any of them is in this layout
    # (`layouts.ItemSpecParser` says where two layouts share one)
    fields: tuple[str, ...]  # the required fields, listed when a row is in no known layout


PACKAGE = Layout("import package", markers=("responses",), fields=REQUIRED_FIELDS)


def package_item_spec(record: dict[str, Any], *, strength_scale: int) -> ItemSpec:
    """Validate one RewardLab line (a `json_record`); raise LineError naming the first problem found.

    `strength_scale` is the campaign's, since a prior's strength must fit it.
    """
    allowed = (*REQUIRED_FIELDS, IMAGE_PATH, *OPTIONAL_FIELDS)
    _check_keys(record, allowed=allowed, required=tuple(key for key in REQUIRED_FIELDS if key != "image"), where="")
    external_id = expect_string(record["external_id"], "external_id", max_length=MAX_ID_LENGTH)
    image, kept = row_image(record)
    prompt = expect_string(record["prompt"], "prompt")
    responses = _responses(record["responses"])
    ids = [response.id for response in responses]
    pairs = _pairs(record.get("pairs"), ids)
    priors, gold = (
        _labels(record.get(name), name, pairs=pairs, ids=ids, strength_scale=strength_scale) for name in LABEL_FIELDS
    )
    if len({label.pair for label in gold}) < len(gold):
        raise LineError("gold: a pair has more than one gold answer")
    return ItemSpec(
        external_id=external_id,
        image=image,
        prompt=prompt,
        responses=responses,
        pairs=pairs,
        facts=expect_object(given(record.get("facts"), {}), "facts"),
        meta=with_kept(expect_object(given(record.get("meta"), {}), "meta"), kept),
        priors=priors,
        gold=gold,
    )


def row_image(record: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Return the row's image, from `image` or `image_path`, and the meta fields that keep the other.

    Both given and different is an error, except that an embedded image (a data: URI or a Parquet cell) wins
    over a path that only records where the publisher kept the file; that path is kept in meta.
    """
    image, path = record.get("image"), record.get(IMAGE_PATH)
    if image is None and path is None:
        raise LineError(f"missing required field 'image' (or {IMAGE_PATH!r})")
    if image is None:
        return expect_string(path, IMAGE_PATH), {}
    image = expect_string(image, "image")
    if path is None or path == image:
        return image, {}
    path = expect_string(path, IMAGE_PATH)
    if is_embedded(image):
        return image, {IMAGE_PATH: path}
    raise LineError(f"image {show_value(image)} and {IMAGE_PATH} {show_value(path)} differ; give one image")


def is_embedded(ref: str) -> bool:
    """Whether an image reference holds the image itself (a data: URI, a Parquet cell) rather than a path."""
    return ref.startswith(("data:", CELL_PREFIX))


def with_kept(meta: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """Return `meta` with the fields RewardLab keeps for the row; a field the row already has is an error."""
    clash = sorted(set(meta) & set(kept))
    if clash:
        raise LineError(f"{clash[0]}: RewardLab keeps its own {clash[0]!r} in meta for this row; rename the field")
    return {**meta, **kept}


def json_record(data: bytes) -> dict[str, Any]:
    """Return a line's JSON object; raise LineError for bytes that are not one PostgreSQL's jsonb can hold."""
    try:
        text = data.decode("utf-8-sig")
        record = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError as exc:
        raise LineError(f"the line is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise LineError(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
    except RecursionError as exc:
        raise LineError("the JSON is nested too deeply") from exc
    if not isinstance(record, dict):
        raise LineError(f"expected a JSON object, got {show_value(record)}")
    # PostgreSQL cannot store NUL, nor UTF-8 a lone surrogate (an escape like \ud800 that pairs with none); the
    # cheap substring test skips the walk for most lines.
    if ("\\u0000" in text or "\\ud" in text.lower()) and (reason := _unstorable(record)):
        raise LineError(f"the line contains {reason}, which cannot be stored")
    return record


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise LineError(f"the number {literal[:SHOW_CHARS]} is too large to store")
    return value


def _refuse_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity, but they are not JSON and PostgreSQL's jsonb refuses them.
    raise LineError(f"{name} is not a JSON value")


def _unstorable(value: object) -> str | None:
    """Name the first character in `value`'s strings (keys included) that the database cannot store, or None."""
    if isinstance(value, str):
        if "\0" in value:
            return "a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"a lone surrogate (\\u{ord(value[exc.start]):04x})"
        return None
    if isinstance(value, dict):
        return next(filter(None, (_unstorable(key) or _unstorable(item) for key, item in value.items())), None)
    if isinstance(value, list):
        return next(filter(None, map(_unstorable, value)), None)
    return None


def given(value: T | None, default: T) -> T:
    """Treat null like a missing optional field: exporters often write null for "none"."""
    return default if value is None else value


def show_value(value: object) -> str:
    """Quote a bad value in an error message, cut to SHOW_CHARS."""
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= SHOW_CHARS else shown[: SHOW_CHARS - 1] + "…"


def _check_keys(record: dict[str, Any], *, allowed: tuple[str, ...], required: tuple[str, ...], where: str) -> None:
    """Refuse unknown keys by name (a typo must not silently drop data), then missing ones."""
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(record) - set(allowed))
    if unknown:
        raise LineError(f"{prefix}unknown field {unknown[0]!r}; expected fields are {', '.join(allowed)}")
    missing = [key for key in required if key not in record]
    if missing:
        error = LineError if where else MissingFieldError
        raise error(f"{prefix}missing required field {missing[0]!r}")


def expect_string(value: object, where: str, *, max_length: int | None = None, empty: bool = False) -> str:
    """Return `value` if it is a string that fits; a blank one only when `empty` allows it."""
    if not isinstance(value, str) or (not empty and not value.strip()):
        expected = "a string" if empty else "a non-empty string"
        raise LineError(f"{where}: expected {expected}, got {show_value(value)}")
    if max_length is not None and len(value) > max_length:
        raise LineError(f"{where}: expected at most {max_length} characters, got {len(value)}")
    return value


def expect_object(value: object, where: str) -> dict[str, Any]:
    """Return `value` if it is a JSON object; `where` names the field in the error."""
    if not isinstance(value, dict):
        raise LineError(f"{where}: expected an object, got {show_value(value)}")
    return value


def expect_list(value: object, where: str) -> list[Any]:
    """Return `value` if it is a JSON list; `where` names the field in the error."""
    if not isinstance(value, list):
        raise LineError(f"{where}: expected a list, got {show_value(value)}")
    return value


def _responses(value: object) -> tuple[ResponseSpec, ...]:
    entries = expect_list(value, "responses")
    if len(entries) < 2:
        raise LineError(f"responses: expected at least 2 responses to compare, got {len(entries)}")
    responses: list[ResponseSpec] = []
    for index, entry in enumerate(entries):
        where = f"responses[{index}]"
        _check_keys(expect_object(entry, where), allowed=RESPONSE_FIELDS, required=("id", "text"), where=where)
        response_id = expect_string(entry["id"], f"{where}.id", max_length=MAX_ID_LENGTH)
        if response_id in LITERAL_ANSWERS:
            raise LineError(f"{where}.id: {response_id!r} is reserved for labels; rename the response")
        if any(response.id == response_id for response in responses):
            raise LineError(f"{where}.id: {response_id!r} is used by another response of this item")
        text = expect_string(entry["text"], f"{where}.text", empty=True)
        model = expect_string(given(entry.get("model"), ""), f"{where}.model", max_length=MAX_MODEL_LENGTH, empty=True)
        responses.append(ResponseSpec(id=response_id, text=text, model=model))
    return tuple(responses)


def _pair_ids(value: object, where: str, ids: list[str]) -> tuple[str, str]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
        raise LineError(f'{where}: expected two response ids like ["r0", "r1"], got {show_value(value)}')
    for part in value:
        if part not in ids:
            raise LineError(f"{where}: unknown response id {part!r}; this item's responses are {', '.join(ids)}")
    if value[0] == value[1]:
        raise LineError(f"{where}: a pair needs two different responses, got {value[0]!r} twice")
    return value[0], value[1]


def _pairs(value: object, ids: list[str]) -> tuple[tuple[str, str], ...]:
    """Return the pairs in the given a/b order; left out, every unordered pair in the responses' order."""
    if value is None:
        return tuple(itertools.combinations(ids, 2))
    entries = expect_list(value, "pairs")
    if not entries:
        raise LineError("pairs: expected at least one pair; leave the field out to compare every pair")
    pairs: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        pair = _pair_ids(entry, f"pairs[{index}]", ids)
        if any(set(pair) == set(known) for known in pairs):
            raise LineError(f"pairs[{index}]: the pair {list(pair)} is listed twice")
        pairs.append(pair)
    return tuple(pairs)


def _labels(
    value: object, name: str, *, pairs: tuple[tuple[str, str], ...], ids: list[str], strength_scale: int
) -> tuple[LabelSpec, ...]:
    labels: list[LabelSpec] = []
    for index, entry in enumerate(expect_list(given(value, []), name)):
        where = f"{name}[{index}]"
        _check_keys(expect_object(entry, where), allowed=LABEL_FIELDS[name], required=LABEL_REQUIRED, where=where)
        wanted = set(_pair_ids(entry["pair"], f"{where}.pair", ids))
        pair = next((i for i, known in enumerate(pairs) if set(known) == wanted), None)
        if pair is None:
            raise LineError(f"{where}.pair: {entry['pair']} is not one of this item's pairs")
        answer = _answer(entry["more_hallucinated"], pairs[pair], f"{where}.more_hallucinated")
        strength = label_strength(entry.get("strength"), answer, f"{where}.strength", strength_scale)
        source = expect_string(
            given(entry.get("source"), ""), f"{where}.source", max_length=MAX_SOURCE_LENGTH, empty=True
        )
        labels.append(LabelSpec(pair=pair, more_hallucinated=answer, strength=strength, source=source))
    return tuple(labels)


def _answer(value: object, pair: tuple[str, str], where: str) -> Answer:
    """Map a response id to its side of the pair; `both` and `neither` pass through."""
    a, b = pair
    if value == a:
        return "a"
    if value == b:
        return "b"
    if value in LITERAL_ANSWERS:
        return cast(Answer, value)
    raise LineError(f"{where}: expected {a!r}, {b!r}, 'both' or 'neither', got {show_value(value)}")


def label_strength(value: object, answer: Answer, where: str, scale: int) -> int | None:
    """Return a label's strength: 1..scale for a/b, absent for both/neither (API.md, "Labels")."""
    if value is None:
        return None
    if answer in LITERAL_ANSWERS:
        raise LineError(f"{where}: {answer!r} takes no strength, got {show_value(value)}")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= scale:
        raise LineError(f"{where}: expected an integer from 1 to {scale}, got {show_value(value)}")
    return value
