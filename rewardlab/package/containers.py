"""Reading the rows of item files that are not JSONL: a JSON array of rows, and Parquet as `datasets` writes it.

Every container hands out the same thing as a JSONL file: `Line`s whose `data` is one JSON object's bytes, so
the layouts, the error reporting and everything after them read one path (`package.Package.lines`). A JSON
array is cut into its elements without decoding the file at once; a Parquet file is read a record batch at a
time. An `Image` cell (`{"bytes": ..., "path": ...}`, alone or in a list) becomes a string: a reference to the
cell (`cell_ref`), which `package.Package.read_image` resolves by reading the cell again, or the cell's
relative `path` when it holds no bytes (a file beside the Parquet file). So image bytes are never copied into
the JSON, nor kept.
"""

from __future__ import annotations

import codecs
import datetime
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import parse_qs, urlencode

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Prefix of an embedded image's reference: a Parquet cell, named by file, 1-based row, column and list index.
CELL_PREFIX = "parquet:"
# Rows per record batch read from a Parquet file: `datasets` writes row groups of 100 rows for image data.
PARQUET_BATCH_ROWS = 100
# How much of a JSON array is read at a time.
ARRAY_CHUNK_BYTES = 1024 * 1024
# JSON's whitespace (RFC 8259): anything else between rows is a syntax error.
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_BOM = "\ufeff"


class ContainerError(ValueError):
    """A file cannot be read as the container its name says (not a JSON array, not Parquet)."""


@dataclass(frozen=True)
class Row:
    """One row as read from a container: its 1-based number, its JSON bytes, its place in the file, or an error."""

    number: int
    data: bytes
    start: int
    end: int
    error: str = ""


# JSON arrays.


def array_rows(fp: IO[bytes], *, max_bytes: int) -> Iterator[Row]:
    """Yield each element of the JSON array that is the whole file, as its bytes; positions are byte offsets.

    The elements are cut out as written, not re-encoded, so `lines.json_record` judges them exactly as it
    judges a JSONL line (NaN, invalid UTF-8, NUL...). A syntax error between rows, or a row longer than
    `max_bytes`, ends the file with an error on that row: nothing after it can be found reliably.
    """
    reader = _ArrayReader(fp, max_bytes=max_bytes)
    reader.expect_open()
    number = 0
    while True:
        reader.skip_space()
        if number == 0 and reader.peek() == "]":
            reader.expect_close()
            return
        number += 1
        row = reader.element(number)
        yield row
        if row.error:
            return
        reader.skip_space()
        if reader.peek() == ",":
            reader.take(1)
            continue
        if reader.peek() == "]":
            reader.expect_close()
            return
        yield Row(number + 1, b"", reader.offset, reader.offset, error=f"expected ',' or ']' after row {number}")
        return


def array_row_at(fp: IO[bytes], start: int, *, max_bytes: int) -> bytes:
    """Return the bytes of the array element that begins at byte `start` (a `Row.start`)."""
    fp.seek(start)
    reader = _ArrayReader(fp, max_bytes=max_bytes)
    row = reader.element(0)
    if row.error:
        raise ContainerError(f"no row starts at byte {start}: {row.error}")
    return row.data


class _ArrayReader:
    """A window on the file's text: decoded incrementally, with invalid UTF-8 kept as surrogates so the bytes
    of an element are the file's own bytes again."""

    def __init__(self, fp: IO[bytes], *, max_bytes: int) -> None:
        self.fp = fp
        self.max_bytes = max_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.text = ""
        self.at = 0  # index in `text` of the next character to read
        self.offset = 0  # byte offset of `text[at]` from where reading began
        self.eof = False
        self.decode = json.JSONDecoder().raw_decode

    def fill(self) -> bool:
        """Read another chunk; return False at the end of the file."""
        if self.eof:
            return False
        chunk = self.fp.read(ARRAY_CHUNK_BYTES)
        self.eof = not chunk
        self.text = self.text[self.at :] + self.decoder.decode(chunk, final=self.eof)
        self.at = 0
        return bool(chunk)

    def peek(self) -> str:
        while self.at >= len(self.text):
            if not self.fill():
                return ""
        return self.text[self.at]

    def take(self, chars: int) -> None:
        """Step over ASCII characters (JSON's punctuation and whitespace are one byte each)."""
        self.at += chars
        self.offset += chars

    def skip_space(self) -> None:
        while self.peek():
            end = _JSON_SPACE.match(self.text, self.at).end()
            self.take(end - self.at)
            if self.at < len(self.text):
                return

    def expect_open(self) -> None:
        if self.peek() == _BOM:
            self.at += 1
            self.offset += len(_BOM.encode())
        self.skip_space()
        if self.peek() != "[":
            raise ContainerError(f"expected a JSON array of rows, got {self.text[self.at : self.at + 20]!r}")
        self.take(1)

    def expect_close(self) -> None:
        self.take(1)
        self.skip_space()
        if self.peek():
            raise ContainerError("expected the end of the file after the array's closing ']'")

    def element(self, number: int) -> Row:
        """Cut out the next JSON value, reading on while it is incomplete; an error ends the file."""
        start = self.offset
        self.peek()
        while True:
            try:
                _, end = self.decode(self.text, self.at)
                break
            except json.JSONDecodeError as exc:
                if len(self.text) - self.at > self.max_bytes or not self.fill():
                    if len(self.text) - self.at > self.max_bytes:
                        return Row(number, b"", start, start, error=f"the row is longer than {self.max_bytes} bytes")
                    return Row(
                        number,
                        b"",
                        start,
                        start,
                        error=f"not valid JSON: {exc.msg} at character {exc.pos - self.at + 1} of the row",
                    )
            except RecursionError:
                return Row(number, b"", start, start, error="the JSON is nested too deeply")
        data = self.text[self.at : end].encode("utf-8", "surrogateescape")
        if len(data) > self.max_bytes:
            return Row(number, b"", start, start, error=f"the row is longer than {self.max_bytes} bytes")
        self.at = end
        self.offset += len(data)
        return Row(number, data, start, self.offset)


# Parquet.


def cell_ref(file: str, row: int, column: str, index: int | None = None) -> str:
    """Return the reference to an embedded image: a cell of `file`, its row numbered from 1 as errors name it."""
    query = {"row": row, "column": column, **({"index": index} if index is not None else {})}
    return f"{CELL_PREFIX}{file}#{urlencode(query)}"


def parse_cell_ref(ref: str) -> tuple[str, int, str, int | None]:
    """Return the file, row, column and list index of a `cell_ref`; raise ValueError for a malformed one."""
    file, _, fragment = ref.removeprefix(CELL_PREFIX).rpartition("#")
    query = {key: values[0] for key, values in parse_qs(fragment, strict_parsing=True).items()}
    index = query.get("index")
    return file, int(query["row"]), query["column"], None if index is None else int(index)


def _is_image_type(kind: pa.DataType) -> bool:
    """An `Image` feature as `datasets` stores it: a struct of `bytes` (binary) and `path` (string)."""
    if not pa.types.is_struct(kind) or {kind.field(i).name for i in range(kind.num_fields)} != {"bytes", "path"}:
        return False
    return _is_binary(kind.field("bytes").type) and _is_text(kind.field("path").type)


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


class ParquetRows:
    """One Parquet file: its rows as JSON objects, one at a time, and the bytes of any image cell.

    Rows are read a record batch at a time; an image cell is read again on demand from one cached batch of
    its column, so reading the images of consecutive rows reads each batch once and memory holds one batch.
    """

    def __init__(self, source: IO[bytes], name: str) -> None:
        try:
            # No pre-buffering: a batch reader pre-buffers every row group it will read, the whole file.
            self.file = pq.ParquetFile(source, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise ContainerError(f"not a readable Parquet file: {exc}") from exc
        self.name = name
        schema = self.file.schema_arrow
        self.images = {f.name for f in schema if _is_image_type(f.type)}  # one image per cell
        self.image_lists = {f.name for f in schema if _is_list(f.type) and _is_image_type(f.type.value_type)}
        metadata = self.file.metadata
        self.num_rows = metadata.num_rows
        self.group_starts = [0]
        for group in range(metadata.num_row_groups):
            self.group_starts.append(self.group_starts[-1] + metadata.row_group(group).num_rows)
        self._cached: tuple[str, int, pa.Array] | None = None  # the column, first row and cells of one batch

    def rows(self, *, offset: int, max_bytes: int) -> Iterator[Row]:
        """Yield every row as JSON; `start` is `offset` plus the row's 0-based index, so rows measure progress."""
        index = 0
        try:
            batches = (
                batch
                for group in range(self.file.num_row_groups)
                for batch in self.file.iter_batches(PARQUET_BATCH_ROWS, row_groups=[group])
            )
            for batch in batches:
                for record in self._records(batch, first=index):
                    yield self._row(record, index, offset=offset, max_bytes=max_bytes)
                    index += 1
        except (pa.ArrowException, OSError) as exc:
            raise ContainerError(f"row {index + 1} cannot be read: {exc}") from exc

    def row(self, index: int, *, max_bytes: int) -> bytes:
        """Return the JSON bytes of the row at a 0-based index, as `rows` gave it."""
        first, batch = self._batch_with(index, columns=None)
        (record,) = self._records(batch.slice(index - first, 1), first=index)
        row = self._row(record, index, offset=0, max_bytes=max_bytes)
        if row.error:
            raise ContainerError(f"row {index + 1}: {row.error}")
        return row.data

    def cell_bytes(self, row: int, column: str, index: int | None) -> bytes | None:
        """Return the bytes of the image cell at a 1-based row (and list index); None when the cell has none."""
        if column not in (self.image_lists if index is not None else self.images) or not 1 <= row <= self.num_rows:
            raise ContainerError(f"{self.name} has no image cell at row {row}, column {column!r}")
        cell = self._cell(row - 1, column)
        if index is not None:
            if not cell.is_valid or not 0 <= index < len(cell):
                raise ContainerError(f"{self.name} has no image {index} at row {row}, column {column!r}")
            cell = cell.values[index]
        value = cell["bytes"].as_py() if cell.is_valid else None
        return value

    def _group(self, index: int) -> int:
        group = next((g for g in range(len(self.group_starts) - 1) if index < self.group_starts[g + 1]), None)
        if group is None:
            raise ContainerError(f"{self.name} has no row {index + 1}")
        return group

    def _cell(self, index: int, column: str) -> pa.Scalar:
        cached = self._cached
        if cached is None or cached[0] != column or not cached[1] <= index < cached[1] + len(cached[2]):
            first, batch = self._batch_with(index, columns=[column])
            cached = self._cached = (column, first, batch.column(0))
        return cached[2][index - cached[1]]

    def _batch_with(self, index: int, *, columns: list[str] | None) -> tuple[int, pa.RecordBatch]:
        """Return the batch of `columns` (all when None) that holds the row at a 0-based index, and its first row.

        The row group is read a batch at a time up to the row: memory holds a batch, not the group.
        """
        group = self._group(index)
        first = self.group_starts[group]
        for batch in self.file.iter_batches(PARQUET_BATCH_ROWS, row_groups=[group], columns=columns):
            if index < first + batch.num_rows:
                return first, batch
            first += batch.num_rows
        raise ContainerError(f"{self.name} has no row {index + 1}")

    def _records(self, batch: pa.RecordBatch, *, first: int) -> list[dict[str, Any]]:
        """Return the batch's rows as dicts, each image cell replaced by its reference (no bytes are copied)."""
        plain = [name for name in batch.schema.names if name not in self.images | self.image_lists]
        records = batch.select(plain).to_pylist() if plain else [{} for _ in range(batch.num_rows)]
        for name in self.images | self.image_lists:
            cells = batch.column(name)
            refs = self._image_refs(cells, name, first) if name in self.images else self._list_refs(cells, name, first)
            for record, ref in zip(records, refs, strict=True):
                record[name] = ref
        order = batch.schema.names
        return [{key: record[key] for key in order} for record in records]

    def _image_refs(self, cells: pa.Array, column: str, first: int, index: int | None = None) -> list[str | None]:
        has_bytes = pc.is_valid(pc.struct_field(cells, "bytes")).to_pylist()
        paths = pc.struct_field(cells, "path").to_pylist()
        valid = cells.is_valid().to_pylist()
        return [
            (cell_ref(self.name, first + i + 1, column, index) if embedded else path) if ok else None
            for i, (ok, embedded, path) in enumerate(zip(valid, has_bytes, paths, strict=True))
        ]

    def _list_refs(self, cells: pa.Array, column: str, first: int) -> list[list[str | None] | None]:
        refs: list[list[str | None] | None] = []
        for i, cell in enumerate(cells):
            if not cell.is_valid:
                refs.append(None)
                continue
            values = cell.values
            refs.append(
                [self._image_refs(values.slice(j, 1), column, first + i, index=j)[0] for j in range(len(values))]
            )
        return refs

    def _row(self, record: dict[str, Any], index: int, *, offset: int, max_bytes: int) -> Row:
        start = offset + index
        try:
            data = json.dumps(
                {key: _json_value(value, key) for key, value in record.items()}, ensure_ascii=False, allow_nan=False
            ).encode()
        except ContainerError as exc:
            return Row(index + 1, b"", start, start + 1, error=str(exc))
        if len(data) > max_bytes:
            return Row(index + 1, b"", start, start + 1, error=f"the row is longer than {max_bytes} bytes")
        return Row(index + 1, data, start, start + 1)


def _json_value(value: object, column: str) -> Any:
    """Return a cell as JSON: dates and times as ISO 8601 text; refuse what JSON cannot hold, naming the column."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ContainerError(f"column {column!r}: {value} is not a JSON value")
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_json_value(item, column) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item, column) for key, item in value.items()}
    if isinstance(value, bytes):
        raise ContainerError(f"column {column!r}: binary data is read only in an Image column ({{bytes, path}})")
    raise ContainerError(f"column {column!r}: a {type(value).__name__} value cannot be imported; expected JSON values")
