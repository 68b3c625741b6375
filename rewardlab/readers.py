"""Reading training data from files: `load_dataset` and a reader per layout, each returning a Dataset.

The reward model trains on the data the web app holds, but without the web app, so this module reads the
files that leave it: an import package (whose `prior` and `gold` labels train and check the model), a
`reward` export or any TRL preference file (one human label per row), and an `annotations` export (every
human label). `load_dataset` tells them apart from the file and the keys of its first row, and always
speaks canonical a/b, as API.md does. An import package may hold any layout annotate imports
(`rewardlab.package.layouts`), and a bare .jsonl of LLaVA-RLHF, RLAIF-V or VL-RewardBench rows is read as
one, with prior labels; a bare .jsonl of TRL rows stays a reward file with human labels, as TRL's trainers read
it. A bare .json array or .parquet, and a zip or folder of them (a Hub dataset), is always an import package.

Images are checked here but not read: the Dataset gets an image source (`rewardlab.image_sources`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal, cast

from rewardlab.answers import ANSWERS, Answer
from rewardlab.data import DataError, Dataset, ImageSource, Item, Label, Pair
from rewardlab.image_sources import FolderImages, PackageImages, ZipImages
from rewardlab.package.lines import PACKAGE, ItemSpec, LineError, json_record, label_strength, show_value
from rewardlab.package.merge import different_image, merge_items
from rewardlab.package.package import (
    ITEMS_NAME,
    ZIP_READ_ERRORS,
    ImageReadError,
    Line,
    Package,
    PackageError,
    folder_names,
    item_files,
    open_package,
)
from rewardlab.package.public import LLAVA_RLHF, RLAIF_V, VL_REWARDBENCH, trl_texts

Layout = Literal["package", "reward", "annotations"]

LAYOUTS = (
    "an import package (items.jsonl lines: external_id, image, prompt, responses; or public preference rows)",
    "a .jsonl of LLaVA-RLHF human preference, RLAIF-V or VL-RewardBench rows, read as an import package",
    "a .json array or Parquet file of any of these rows (alone, or a zip or folder of them), read as one",
    "a reward export or TRL preference file (rows: prompt, chosen, rejected, images)",
    "an annotations export (rows: external_id, pair, prompt, image, a, b, more_hallucinated)",
)
# First-row fields of a bare .jsonl read as an import package, as annotate imports it (prior labels, data: URIs).
# TRL's are left out: a bare TRL file is a reward file, human labels with images beside it, as TRL reads it.
PACKAGE_MARKERS = (*PACKAGE.markers, *LLAVA_RLHF.markers, *RLAIF_V.markers, *VL_REWARDBENCH.markers)
# Reward-export keys that identify a row's item and pair; a row gives all of them or none.
IDENTITY_KEYS = ("external_id", "pair", "chosen_id", "rejected_id")
# A data: URI's image is re-read from its line, named by where it starts; keys start with "data:" so no member
# path can collide.
DATA_LINE_KEY = "data:line-{}"
# Files read as an import package whatever their rows: only JSONL may be a reward or annotations export.
PACKAGE_FILE_SUFFIXES = (".json", ".parquet")


def load_dataset(path: str | Path, *, strength_scale: int = 4) -> Dataset:
    """Read an import package, a reward export or an annotations export; raise DataError naming the line.

    `strength_scale` is S of API.md's labels: a strength above it is an error, not a silent clip.
    """
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, strength_scale)
    if not path.is_file():
        raise _error(path, None, "no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _load_zip(path, strength_scale)
    if suffix in PACKAGE_FILE_SUFFIXES:
        return _load_package(path, strength_scale)
    if suffix != ".jsonl":
        raise _error(
            path, None, f"unknown layout: expected a .zip, .jsonl, .json, .parquet or a folder holding {_layouts()}"
        )
    with path.open("rb") as fp:
        number, row = _first_row(str(path), _rows(str(path), fp))
    if _layout(row, str(path), number) == "package":
        return _load_package(path, strength_scale)
    builder = _Builder()
    export = _ExportFile(str(path), FolderImages(path.parent), strength_scale, row_prefix="")
    with path.open("rb") as fp:
        _add_export_rows(builder, export, _rows(str(path), fp))
    return builder.dataset(export.images)


def _error(where: str | Path, line: int | None, reason: str) -> DataError:
    return DataError(f"{where}, line {line}: {reason}" if line else f"{where}: {reason}")


def _layouts() -> str:
    return "one of: " + "; ".join(LAYOUTS)


def _layout(row: dict[str, Any], where: str, line: int) -> Layout:
    """Tell the layout from the keys of a file's first row."""
    if any(key in row for key in PACKAGE_MARKERS):
        return "package"
    if "chosen" in row and "rejected" in row:
        return "reward"
    if "more_hallucinated" in row:
        return "annotations"
    raise _error(
        where, line, f"unknown layout: the first row has the keys {show_value(sorted(row))}; expected {_layouts()}"
    )


def _rows(where: str, fp: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; blank lines count, as an editor counts them."""
    for number, data in enumerate(fp, start=1):
        if not data.strip():
            continue
        try:
            row = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise _error(where, number, f"the line is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except json.JSONDecodeError as exc:
            raise _error(where, number, f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(row, dict):
            raise _error(where, number, f"expected a JSON object, got {show_value(row)}")
        yield number, row


def _first_row(where: str, rows: Iterator[tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
    first = next(rows, None)
    if first is None:
        raise _error(where, None, "the file has no rows")
    return first


@dataclass
class _Builder:
    """Collect each item and pair once, keyed by identity, and the labels that point at them."""

    items: list[Item] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    item_index: dict[str, int] = field(default_factory=dict)
    pair_index: dict[tuple[str, str, str], int] = field(default_factory=dict)
    first_seen: dict[str, tuple[str, int]] = field(default_factory=dict)  # external_id -> its first file and line
    # Import packages: external_id -> the line that brought it, and the item of the lines that repeat it.
    first_line: dict[str, Line] = field(default_factory=dict)
    merged: dict[str, ItemSpec] = field(default_factory=dict)
    # Parquet shards embed the image in every row, each its own reference: rows of one item compare bytes.
    embedded: ImageSource | None = None
    embedded_sha: dict[str, str] = field(default_factory=dict)  # an item's first image reference -> its SHA-256

    def item(self, item: Item, where: str, line: int) -> int:
        """Return the item's index, adding it; a later row of the same item must repeat it exactly."""
        index = self.item_index.setdefault(item.external_id, len(self.items))
        if index == len(self.items):
            self.items.append(item)
            self.first_seen[item.external_id] = where, line
        elif self.items[index] != item and not self._same_embedded_image(self.items[index], item):
            known = self.items[index]
            differs = next(
                key for key in ("prompt", "image", "facts", "meta") if getattr(known, key) != getattr(item, key)
            )
            seen = "{}, line {}".format(*self.first_seen[item.external_id])
            raise _error(where, line, f"external_id {item.external_id!r}: the {differs} differs from {seen}")
        return index

    def _same_embedded_image(self, known: Item, item: Item) -> bool:
        if self.embedded is None or replace(item, image=known.image) != known:
            return False
        if known.image not in self.embedded_sha:  # read once per item, not once per row that repeats it
            self.embedded_sha[known.image] = hashlib.sha256(self.embedded.read(known.image)).hexdigest()
        return self.embedded_sha[known.image] == hashlib.sha256(self.embedded.read(item.image)).hexdigest()

    def pair(self, pair: Pair, where: str, line: int) -> int:
        """Return the pair's index, adding it; a later row of the same pair must repeat its texts."""
        key = (self.items[pair.item].external_id, pair.a_id, pair.b_id)
        index = self.pair_index.setdefault(key, len(self.pairs))
        if index == len(self.pairs):
            self.pairs.append(pair)
        elif self.pairs[index] != pair:
            raise _error(where, line, f"pair {list(key[1:])} of {key[0]!r} has other texts than on an earlier row")
        return index

    def dataset(self, images: ImageSource) -> Dataset:
        return Dataset(items=self.items, pairs=self.pairs, labels=self.labels, images=images)


# Import packages: the lines are parsed exactly as annotate's import parses them.


def _load_package(path: Path, strength_scale: int) -> Dataset:
    images = PackageImages(path, strength_scale=strength_scale)
    builder = _Builder()
    try:
        with open_package(path) as package:
            for line in package.lines():
                try:
                    _add_package_line(builder, package, images, line)
                except (LineError, ImageReadError) as exc:
                    raise DataError(f"{path}, {line.where}: {exc}") from exc
    except PackageError as exc:
        raise _error(path, None, str(exc)) from exc
    if not builder.items:
        raise _error(path, None, "the package has no items")
    return builder.dataset(images)


def _add_package_line(builder: _Builder, package: Package, images: PackageImages, line: Line) -> None:
    if line.error:
        raise LineError(line.error)
    spec = images.parse(line.data)
    first = builder.first_line.get(spec.external_id)
    if first is not None:
        _merge_package_line(builder, package, images, first, line, spec)
        return
    image = _package_image_key(package, images, spec.image, line)
    item = builder.item(_package_item(spec, image), str(images.path), line.number)
    builder.first_line[spec.external_id] = line.place()
    _add_pairs(builder, item, spec, known=None)


def _merge_package_line(
    builder: _Builder, package: Package, images: PackageImages, first: Line, line: Line, spec: ItemSpec
) -> None:
    """Add the pairs and labels of a line that repeats an id to its item, as annotate's import merges them."""
    known = builder.merged.get(spec.external_id) or images.parse(package.read_line(first.start))
    if spec.image != known.image and len({_image_sha(package, images, ref) for ref in (known.image, spec.image)}) > 1:
        raise different_image(spec.external_id, first_where=first.where, later_where=line.where)
    merged = merge_items(known, spec, first_where=first.where, later_where=line.where)
    builder.merged[spec.external_id] = merged
    _add_pairs(builder, builder.item_index[spec.external_id], merged, known=known)


def _add_pairs(builder: _Builder, item: int, spec: ItemSpec, *, known: ItemSpec | None) -> None:
    """Add the item's pairs and labels that `known` (the item as merged so far, if any) does not have yet.

    A merge only appends to an item's pairs and labels, so what is new is what comes after `known`'s.
    """
    start, priors, gold = (len(known.pairs), len(known.priors), len(known.gold)) if known else (0, 0, 0)
    texts = {response.id: response.text for response in spec.responses}
    where = builder.first_seen[spec.external_id]
    at = [builder.pair_index[(spec.external_id, a, b)] for a, b in spec.pairs[:start]]
    at += [builder.pair(Pair(item, a, texts[a], b, texts[b]), *where) for a, b in spec.pairs[start:]]
    for label in spec.priors[priors:]:
        builder.labels.append(Label(at[label.pair], label.more_hallucinated, label.strength, "prior"))
    for label in spec.gold[gold:]:
        builder.labels.append(Label(at[label.pair], label.more_hallucinated, None, "gold"))


def _image_sha(package: Package, images: PackageImages, ref: str) -> str:
    """Return the SHA-256 of an image's bytes: two rows repeating an id must show the same image."""
    return hashlib.sha256(package.read_image(ref, max_bytes=images.max_bytes)).hexdigest()


def _package_image_key(package: Package, images: PackageImages, ref: str, line: Line) -> str:
    """Check the image without reading it; a data: URI gets a short key, so the URI is not kept."""
    is_data_uri = ref.startswith("data:")
    try:
        package.check_image(ref)
    except ImageReadError as exc:
        raise ImageReadError(f"image {'(data: URI)' if is_data_uri else repr(ref)}: {exc}") from exc
    if not is_data_uri:
        return ref
    key = DATA_LINE_KEY.format(line.start)
    images.data_lines[key] = line.start
    return key


def _package_item(spec: ItemSpec, image: str) -> Item:
    return Item(external_id=spec.external_id, prompt=spec.prompt, image=image, facts=spec.facts, meta=spec.meta)


# Exports: JSONL rows, alone (images beside the file) or in a snapshot .zip (images inside it).


@dataclass(frozen=True)
class _ExportFile:
    where: str  # the file, named in errors
    images: FolderImages | ZipImages | PackageImages
    strength_scale: int
    row_prefix: str  # before "row-<line>", the external_id of a row without identity keys


def _load_zip(path: Path, strength_scale: int) -> Dataset:
    """Read a zip holding an export snapshot's JSONL splits as one, else as an import package."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _error(path, None, f"not a readable .zip file: {exc}") from exc
    with archive:
        members = _item_files(path, archive.namelist())
        if _is_export(members):
            return _load_export_files(path, ZipImages(path), members, archive.open, strength_scale)
    return _load_shards_or_package(path, members, strength_scale)


def _load_folder(path: Path, strength_scale: int) -> Dataset:
    """Read a folder holding an export snapshot's JSONL splits as one, else as an import package."""
    members = _item_files(path, folder_names(path))
    if not _is_export(members):
        return _load_shards_or_package(path, members, strength_scale)
    return _load_export_files(path, FolderImages(path), members, lambda name: (path / name).open("rb"), strength_scale)


def _is_export(members: list[str]) -> bool:
    """Whether a zip's or folder's item files are a snapshot's JSONL splits rather than an import package's rows."""
    return members != [ITEMS_NAME] and all(name.lower().endswith(".jsonl") for name in members)


def _item_files(path: Path, names: list[str]) -> list[str]:
    try:
        return item_files(names, where=f"the {'folder' if path.is_dir() else 'zip'}")[1]
    except PackageError as exc:
        raise _error(path, None, f"unknown layout: {exc}; expected {_layouts()}") from exc


def _load_export_files(
    path: Path,
    images: FolderImages | ZipImages,
    members: list[str],
    open_member: Callable[[str], IO[bytes]],
    strength_scale: int,
) -> Dataset:
    """Read a snapshot's split files in turn; a row's id without identity keys says which split it came from."""
    builder = _Builder()
    for member in members:
        export = _ExportFile(f"{path}/{member}", images, strength_scale, row_prefix=f"{member[: -len('.jsonl')]}/")
        try:
            with open_member(member) as fp:
                _add_export_rows(builder, export, _rows(export.where, fp))
        except ZIP_READ_ERRORS as exc:
            raise _error(export.where, None, f"cannot be read from the zip: {exc}") from exc
    return builder.dataset(images)


def _load_shards_or_package(path: Path, members: list[str], strength_scale: int) -> Dataset:
    """Read the Parquet shards of a snapshot in the Hub layout as export rows, and anything else as a package.

    Shards are read through rewardlab.package, which hands out each row as JSON with its embedded images as
    references that `PackageImages` reads; whether they are export rows or a package's is the first row's call.
    """
    if not all(name.lower().endswith(".parquet") for name in members):
        return _load_package(path, strength_scale)
    images = PackageImages(path, strength_scale=strength_scale)
    try:
        with open_package(path) as package:
            lines = package.lines()
            first = next(lines, None)
            if first is None or _layout(_line_row(str(path), first), str(path), first.number) == "package":
                return _load_package(path, strength_scale)
            builder = _Builder(embedded=images)
            for name, shard in itertools.groupby(itertools.chain([first], lines), key=lambda line: line.file):
                export = _ExportFile(f"{path}/{name}", images, strength_scale, row_prefix=f"{Path(name).stem}/")
                _add_export_rows(builder, export, ((line.number, _line_row(export.where, line)) for line in shard))
    except PackageError as exc:
        raise _error(path, None, str(exc)) from exc
    return builder.dataset(images)


def _line_row(where: str, line: Line) -> dict[str, Any]:
    try:
        if line.error:
            raise LineError(line.error)
        return json_record(line.data)
    except LineError as exc:
        raise DataError(f"{where}, {line.unit} {line.number}: {exc}") from exc


def _add_export_rows(builder: _Builder, export: _ExportFile, rows: Iterator[tuple[int, dict[str, Any]]]) -> None:
    """Add every row of one file; its first row tells whether it is a reward or an annotations export."""
    first = _first_row(export.where, rows)
    layout = _layout(first[1], export.where, first[0])
    if layout == "package":
        raise _error(export.where, first[0], f"an import package line outside {ITEMS_NAME}; expected export rows")
    add = _add_reward_row if layout == "reward" else _add_annotation_row
    for number, data in itertools.chain([first], rows):
        add(builder, _Row(export, number, data))


def _add_reward_row(builder: _Builder, row: _Row) -> None:
    """Add one labeled pair: canonical a/b from `pair` and the ids, else a = chosen and b = rejected."""
    prompt, chosen, rejected = row.trl_texts()
    image = row.image(row.first_image())
    if any(key in row.data for key in IDENTITY_KEYS):
        external_id, (a_id, b_id), answer = row.text("external_id"), row.pair_ids(), row.rejected_side()
        a_text, b_text = (rejected, chosen) if answer == "a" else (chosen, rejected)
    else:  # a plain TRL row is an item of its own
        external_id, answer = f"{row.export.row_prefix}row-{row.line}", "b"
        a_id, a_text, b_id, b_text = "chosen", chosen, "rejected", rejected
    item = builder.item(Item(external_id, prompt, image, row.mapping("facts"), row.mapping("meta")), *row.at)
    pair = builder.pair(Pair(item, a_id, a_text, b_id, b_text), *row.at)
    builder.labels.append(Label(pair, answer, row.strength(answer), "human", row.weight()))


def _add_annotation_row(builder: _Builder, row: _Row) -> None:
    """Add one human label; rows of the same item and pair share them."""
    external_id, (a_id, b_id) = row.text("external_id"), row.pair_ids()
    a_text, b_text = row.response("a", a_id), row.response("b", b_id)
    prompt, image = row.text("prompt", empty=True), row.image(row.text("image"))
    item = builder.item(Item(external_id, prompt, image, row.mapping("facts"), row.mapping("meta")), *row.at)
    pair = builder.pair(Pair(item, a_id, a_text, b_id, b_text), *row.at)
    answer = row.choice()
    builder.labels.append(Label(pair, answer, row.strength(answer), "human"))


@dataclass(frozen=True)
class _Row:
    """One export row and the checked reading of its keys; every error names the file and line."""

    export: _ExportFile
    line: int
    data: dict[str, Any]

    @property
    def at(self) -> tuple[str, int]:
        return self.export.where, self.line

    def error(self, reason: str) -> DataError:
        return _error(self.export.where, self.line, reason)

    def required(self, key: str) -> Any:
        if key not in self.data:
            raise self.error(f"missing key {key!r}")
        return self.data[key]

    def text(self, key: str, *, empty: bool = False) -> str:
        value = self.required(key)
        if not isinstance(value, str) or not (empty or value):
            raise self.error(f"{key}: expected {'a' if empty else 'a non-empty'} string, got {show_value(value)}")
        return value

    def trl_texts(self) -> tuple[str, str, str]:
        """Return the question, chosen and rejected text: strings, or TRL messages as a `reward` export has them."""
        try:
            return trl_texts(self.data)
        except LineError as exc:
            raise self.error(str(exc)) from exc

    def mapping(self, key: str) -> dict[str, Any]:
        """Return an optional object; null counts as absent, as exporters often write null for none."""
        value = self.data.get(key)
        if value is None:
            return {}
        if isinstance(value, str):  # a Parquet snapshot holds facts and meta as JSON text: their keys vary by row
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise self.error(f"{key}: expected an object or its JSON text, got {show_value(value)}") from exc
        if not isinstance(value, dict):
            raise self.error(f"{key}: expected an object, got {show_value(value)}")
        return value

    def pair_ids(self) -> tuple[str, str]:
        value = self.required("pair")
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) and v for v in value)):
            raise self.error(f'pair: expected two response ids like ["r0", "r1"], got {show_value(value)}')
        if value[0] == value[1]:
            raise self.error(f"pair: a pair needs two different responses, got {value[0]!r} twice")
        return value[0], value[1]

    def rejected_side(self) -> Literal["a", "b"]:
        """Return the canonical side of the rejected response, the more hallucinated one."""
        a_id, b_id = self.pair_ids()
        chosen, rejected = self.text("chosen_id"), self.text("rejected_id")
        if (chosen, rejected) not in ((a_id, b_id), (b_id, a_id)):
            ids = f"chosen_id {chosen!r} and rejected_id {rejected!r}"
            raise self.error(f"{ids} must be the two ids of pair {[a_id, b_id]}")
        return "a" if rejected == a_id else "b"

    def response(self, side: str, response_id: str) -> str:
        """Return the text of response `side` ("a" or "b"), whose id must be the pair's id on that side."""
        value = self.required(side)
        if not (isinstance(value, dict) and isinstance(value.get("id"), str) and isinstance(value.get("text"), str)):
            raise self.error(f'{side}: expected {{"id": ..., "text": ...}} with strings, got {show_value(value)}')
        if value["id"] != response_id:
            raise self.error(f"{side}.id: expected {response_id!r}, the pair's {side}, got {value['id']!r}")
        return value["text"]

    def first_image(self) -> str:
        value = self.required("images")
        if not (isinstance(value, list) and value and isinstance(value[0], str)):
            raise self.error(f"images: expected a list of image paths, got {show_value(value)}")
        return value[0]

    def image(self, ref: str) -> str:
        """Return a safe path to an image that exists, so training never fails on a missing one later."""
        reason = self.export.images.check(ref)
        if reason:
            raise self.error(f"image {ref!r}: {reason}")
        return ref

    def choice(self) -> Answer:
        value = self.required("more_hallucinated")
        if value not in ANSWERS:
            raise self.error(f"more_hallucinated: expected one of {', '.join(ANSWERS)}, got {show_value(value)}")
        return cast(Answer, value)

    def strength(self, answer: Answer) -> int | None:
        try:
            return label_strength(self.data.get("strength"), answer, "strength", self.export.strength_scale)
        except LineError as exc:
            raise self.error(str(exc)) from exc

    def weight(self) -> float:
        value = self.data.get("weight")
        if value is None:
            return 1.0
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise self.error(f"weight: expected a number of at least 0, got {show_value(value)}")
        return float(value)
