"""Reading a file of any other layout through a column mapping (API.md, "Import package").

A file in none of the layouts `layouts` knows imports once the lead says which column holds what. The
mapping, as JSON (what the API takes, what a job and a saved mapping store):

    {"id": "sample_id",                          # optional: else "<source>-" and 16 hex digits of the row's hash
     "prompt": "question", "image": "img",      # the image: a path in the zip or a data: URI, or a list of one
     "answers": ["answer_a", "answer_b"],       # answer 1 and answer 2
     "preference": {"column": "winner", "means": "better", "values": {"A": 1, "B": 2}},   # optional
     "models": ["model_a", "model_b"],          # optional: who wrote each answer
     "facts": {"caption": "caption", "answer": "gt"},   # optional: fact name -> column
     "source": "vlfeedback"}                    # optional: the prior labels' source, "mapping" when left out

or, for answers given as a chosen and a rejected column, `"chosen": "col", "rejected": "col"` in place of
`answers` and `preference`. `preference.values` maps each value the column holds (a string as written, any
other JSON value as its JSON text, so 1 and "1" are the same key) to 1 or 2, the answer it names, or to
"both" or "neither"; `means` says whether the named answer is the better one ("better", the default) or the
more hallucinated one. Without a preference the pairs import with no prior label, to be labeled.

Each row becomes the RewardLab line it stands for (`ColumnMapping.record`), which `lines.package_item_spec`
then validates like any other line, so a mapped file obeys exactly the rules of a RewardLab file. As in the
public layouts (`public`), canonical a/b is drawn from one bit of the row's hash, the responses are named
"r0" (a) and "r1" (b), and every column the mapping does not read is kept in meta, so nothing is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from rewardlab.package.lines import (
    LITERAL_ANSWERS,
    MAX_ID_LENGTH,
    MAX_SOURCE_LENGTH,
    LineError,
    expect_string,
    json_record,
    show_value,
)
from rewardlab.package.package import Line
from rewardlab.package.public import ID_HEX_DIGITS, row_digest, row_flipped

FIELDS = ("id", "prompt", "image", "answers", "chosen", "rejected", "models", "preference", "facts", "source")
PREFERENCE_FIELDS = ("column", "means", "values")
Means = Literal["better", "more_hallucinated"]
MEANS: tuple[Means, ...] = ("better", "more_hallucinated")
ANSWER_NUMBERS = (1, 2)
DEFAULT_SOURCE = "mapping"
RESPONSE_IDS = ("r0", "r1")  # canonical a, b: named by position, so an id never says which answer won
# How many rows the import page previews, and how much of a value it shows.
PREVIEW_ROWS = 5
PREVIEW_CHARS = 120
# How the import page and the API name the mapping step in errors about a file in no known layout.
MAPPING_HINT = "map its columns on the import page, or send `mapping` with POST /api/v1/campaigns/{id}/imports/"


class MappingError(ValueError):
    """The mapping itself is not valid; `field` names its part at fault, like "preference.values"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Preference:
    """Which column says which answer wins, and how to read its values."""

    column: str
    values: dict[str, int | str]  # a value's key (`value_key`) -> 1, 2, "both" or "neither"
    means: Means = "better"

    def as_json(self) -> dict[str, Any]:
        return {"column": self.column, "means": self.means, "values": self.values}

    def more_hallucinated(self, value: object) -> int | str:
        """Return the index (0, 1) of the more hallucinated answer, or "both"/"neither", for a row's value."""
        target = self.values.get(value_key(value))
        if target is None:
            known = ", ".join(show_value(key) for key in self.values)
            raise LineError(f"column {self.column!r} (preference): {show_value(value)} is not one of {known}")
        if target in LITERAL_ANSWERS:
            return target
        named = cast(int, target) - 1
        return 1 - named if self.means == "better" else named


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of a row holds what; `from_json` validates one, `record` reads a row with it."""

    prompt: str
    image: str
    answers: tuple[str, str]  # answer 1, answer 2; (chosen, rejected) when `chosen_first`
    chosen_first: bool = False
    id: str | None = None
    models: tuple[str, str] | None = None
    preference: Preference | None = None
    facts: dict[str, str] = field(default_factory=dict)  # fact name -> column
    source: str = DEFAULT_SOURCE

    @classmethod
    def from_json(cls, value: object) -> ColumnMapping:
        """Validate a mapping as the API takes it; raise MappingError naming the first field at fault."""
        if not isinstance(value, dict):
            raise MappingError("mapping", f"expected an object, got {show_value(value)}")
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise MappingError(unknown[0], f"unknown field; expected fields are {', '.join(FIELDS)}")
        prompt, image = _column(value.get("prompt"), "prompt"), _column(value.get("image"), "image")
        answers, chosen_first = _answers(value)
        preference = _preference(value.get("preference"))
        if chosen_first and preference is not None:
            raise MappingError("preference", "chosen and rejected say which answer wins; leave preference out")
        mapping = cls(
            prompt=prompt,
            image=image,
            answers=answers,
            chosen_first=chosen_first,
            id=None if value.get("id") is None else _column(value["id"], "id"),
            models=None if value.get("models") is None else _two_columns(value["models"], "models"),
            preference=preference,
            facts=_facts(value.get("facts")),
            source=_source(value.get("source")),
        )
        mapping._check_each_column_once()
        return mapping

    def as_json(self) -> dict[str, Any]:
        """Return the mapping as `from_json` reads it, optional parts left out."""
        if self.chosen_first:
            answers: dict[str, Any] = {"chosen": self.answers[0], "rejected": self.answers[1]}
        else:
            answers = {"answers": list(self.answers)}
        optional = {
            "id": self.id,
            "models": list(self.models) if self.models else None,
            "preference": self.preference and self.preference.as_json(),
            "facts": self.facts or None,
        }
        present = {key: value for key, value in optional.items() if value is not None}
        return {"prompt": self.prompt, "image": self.image, **answers, **present, "source": self.source}

    def columns(self) -> dict[str, str]:
        """Map each column the mapping reads to its role, as a row's errors name it ("answer 1", "fact caption")."""
        return {column: role for _, role, column in self._fields()}

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """Return the RewardLab line a row stands for; raise LineError naming the column at fault."""
        columns = self.columns()
        missing = next((column for column in columns if column not in row), None)
        if missing is not None:
            found = show_value(sorted(row))
            raise LineError(f"missing column {missing!r} (the {columns[missing]} in the mapping); the row has {found}")
        texts = [_text(row, column, columns[column], empty=True) for column in self.answers]
        models = [_text(row, column, columns[column], empty=True, null="") for column in self.models or ()]
        digest = row_digest(row)
        order = (1, 0) if row_flipped(digest) else (0, 1)  # order[k]: the answer that becomes RESPONSE_IDS[k]
        responses = [
            {"id": RESPONSE_IDS[k], "text": texts[answer], **({"model": models[answer]} if models else {})}
            for k, answer in enumerate(order)
        ]
        facts = {name: row[column] for name, column in self.facts.items() if row[column] not in (None, "")}
        return {
            "external_id": self._external_id(row, digest),
            "image": _image(row[self.image], f"column {self.image!r} (image)"),
            "prompt": _text(row, self.prompt, "prompt"),
            "responses": responses,
            "pairs": [list(RESPONSE_IDS)],
            "facts": facts,
            "meta": {key: value for key, value in row.items() if key not in columns},
            "prior": self._priors(row, order),
        }

    def _priors(self, row: dict[str, Any], order: tuple[int, int]) -> list[dict[str, Any]]:
        """Return the row's prior label, in canonical response ids; none when nothing says which answer wins."""
        if self.chosen_first:
            worse: int | str = 1
        elif self.preference is not None:
            worse = self.preference.more_hallucinated(row[self.preference.column])
        else:
            return []
        named = worse if isinstance(worse, str) else RESPONSE_IDS[order.index(worse)]
        return [{"pair": list(RESPONSE_IDS), "more_hallucinated": named, "source": self.source}]

    def _external_id(self, row: dict[str, Any], digest: str) -> str:
        if self.id is None:
            return f"{self.source}-{digest[:ID_HEX_DIGITS]}"
        value = row[self.id]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return expect_string(value, f"column {self.id!r} (id)", max_length=MAX_ID_LENGTH)

    def _check_each_column_once(self) -> None:
        """Refuse a column read for two roles: the second would silently say what the first already says."""
        seen: dict[str, str] = {}
        for where, _, column in self._fields():
            if column in seen:
                raise MappingError(where, f"column {column!r} is already mapped as {seen[column]}")
            seen[column] = where

    def _fields(self) -> list[tuple[str, str, str]]:
        """Return (the field as a MappingError names it, the role as a row's error names it, the column) of
        every column the mapping reads, in `from_json`'s order."""
        names = ("chosen", "rejected") if self.chosen_first else ("answers[0]", "answers[1]")
        roles = ("chosen", "rejected") if self.chosen_first else ("answer 1", "answer 2")
        fields = [("id", "id", self.id)] if self.id is not None else []
        fields += [("prompt", "prompt", self.prompt), ("image", "image", self.image)]
        fields += list(zip(names, roles, self.answers, strict=True))
        fields += [(f"models[{i}]", f"model of {roles[i]}", column) for i, column in enumerate(self.models or ())]
        fields += [("preference.column", "preference", self.preference.column)] if self.preference else []
        fields += [(f"facts.{name}", f"fact {name}", column) for name, column in self.facts.items()]
        return fields


def value_key(value: object) -> str:
    """Return how `Preference.values` names a row's value: a string as written, anything else as its JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _column(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MappingError(where, f"expected a column name, got {show_value(value)}")
    return value


def _two_columns(value: object, where: str) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2:
        raise MappingError(where, f"expected two column names, one per answer, got {show_value(value)}")
    return _column(value[0], f"{where}[0]"), _column(value[1], f"{where}[1]")


def _answers(value: dict[str, Any]) -> tuple[tuple[str, str], bool]:
    """Return the two answer columns, and whether they are (chosen, rejected)."""
    given = [key for key in ("answers", "chosen", "rejected") if value.get(key) is not None]
    if given == ["answers"]:
        return _two_columns(value["answers"], "answers"), False
    if given == ["chosen", "rejected"]:
        return (_column(value["chosen"], "chosen"), _column(value["rejected"], "rejected")), True
    if not given:
        raise MappingError("answers", "expected the two answer columns, or chosen and rejected columns")
    if "answers" in given:
        raise MappingError(given[-1], "give either answers or chosen and rejected, not both")
    missing = "rejected" if given == ["chosen"] else "chosen"
    raise MappingError(missing, f"expected a column name, since {given[0]} is given")


def _preference(value: object) -> Preference | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MappingError("preference", f"expected an object with {', '.join(PREFERENCE_FIELDS)}")
    unknown = sorted(set(value) - set(PREFERENCE_FIELDS))
    if unknown:
        raise MappingError(f"preference.{unknown[0]}", f"unknown field; expected {', '.join(PREFERENCE_FIELDS)}")
    means = value.get("means", "better")
    if means not in MEANS:
        raise MappingError("preference.means", f"expected one of {', '.join(MEANS)}, got {show_value(means)}")
    return Preference(
        column=_column(value.get("column"), "preference.column"), values=_values(value.get("values")), means=means
    )


def _values(value: object) -> dict[str, int | str]:
    """Check what each preference value means; both answers must be reachable, or the position would be the label."""
    where = "preference.values"
    if not isinstance(value, dict) or not value:
        raise MappingError(where, f'expected an object like {{"A": 1, "B": 2}}, got {show_value(value)}')
    targets = (*ANSWER_NUMBERS, *LITERAL_ANSWERS)
    for key, target in value.items():
        if isinstance(target, bool) or target not in targets:
            allowed = ", ".join(show_value(t) for t in targets)
            raise MappingError(f"{where}.{key}", f"expected one of {allowed}, got {show_value(target)}")
    missing = [number for number in ANSWER_NUMBERS if number not in value.values()]
    if missing:
        raise MappingError(where, f"no value names answer {missing[0]}; map one value to 1 and one to 2")
    return dict(value)


def _facts(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingError("facts", f'expected an object like {{"caption": "column"}}, got {show_value(value)}')
    for name in value:
        if not name.strip():
            raise MappingError("facts", "expected a fact name, got an empty one")
    return {name: _column(column, f"facts.{name}") for name, column in value.items()}


def _source(value: object) -> str:
    if value is None:
        return DEFAULT_SOURCE
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_SOURCE_LENGTH:
        raise MappingError("source", f"expected a name of 1 to {MAX_SOURCE_LENGTH} characters, got {show_value(value)}")
    return value


def _text(row: dict[str, Any], column: str, role: str, *, empty: bool = False, null: str | None = None) -> str:
    """Return a column's text, `null` standing for a null when given; the error names the column and its role."""
    value = row[column]
    if value is None and null is not None:
        return null
    return expect_string(value, f"column {column!r} ({role})", empty=empty)


def _image(value: object, where: str) -> str:
    """Return the image reference: a string, or a list of exactly one, as TRL's `images` holds it."""
    if isinstance(value, list):
        if len(value) != 1:
            raise LineError(f"{where}: expected one image, as an item shows one, got {len(value)}")
        value = value[0]
    return expect_string(value, where)


@dataclass(frozen=True)
class PreviewRow:
    """One previewed line: its cells in `Preview.columns` order, or why it cannot be read."""

    where: str
    cells: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Preview:
    """The first rows of a file as the import page shows them: every column they have, in order of appearance."""

    columns: tuple[str, ...]
    rows: tuple[PreviewRow, ...]


def preview(lines: Iterable[Line], *, rows: int = PREVIEW_ROWS) -> Preview:
    """Read the first `rows` lines of a package (`Package.lines()`, so any container) into a Preview."""
    read: list[tuple[str, dict[str, Any] | str]] = []
    for line in lines:
        if len(read) == rows:
            break
        try:
            if line.error:
                raise LineError(line.error)
            read.append((line.where, json_record(line.data)))
        except LineError as exc:
            read.append((line.where, str(exc)))
    columns = tuple(dict.fromkeys(key for _, row in read if isinstance(row, dict) for key in row))
    return Preview(
        columns=columns,
        rows=tuple(
            PreviewRow(where, cells=tuple(show_cell(row[column]) if column in row else "" for column in columns))
            if isinstance(row, dict)
            else PreviewRow(where, error=row)
            for where, row in read
        ),
    )


def show_cell(value: object) -> str:
    """Show a value in the preview: text as written, anything else as JSON, cut to PREVIEW_CHARS (a data: URI to
    its header)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) <= PREVIEW_CHARS:
        return text
    shown = text.partition(",")[0] if text.startswith("data:") else text[: PREVIEW_CHARS - 1]  # an image: its type
    return f"{shown}… ({len(text):,} characters)"
