"""Opening an import package: numbered lines of its item files and image bytes, never a path outside it.

A package is a `.zip` holding `items.jsonl` (at its root, or in one top folder) and the images it names,
a folder holding `items.jsonl` and its images (a zip unpacked, or a dataset prepared on disk), or a bare
`.jsonl` whose images are `data:` URIs. Nothing is ever extracted to disk: members are read into memory
one at a time, after their declared size has been checked.

A zip or folder without `items.jsonl` is read as what else it holds (`item_files` is the one place that rule
lives): an export snapshot's top-level `.jsonl` files (the splits, `test.jsonl` then `train.jsonl`), so a
downloaded snapshot imports as it is; else a Hugging Face dataset repository's Parquet files (`data/*.parquet`,
else `*.parquet` at the root; README.md and other files are ignored); else top-level `.json` files, each one
JSON array of rows (LLaVA-Human-Preference-10K's `llava_7b_v1_preference.json`). A bare `.json` or `.parquet`
is read the same way. Whatever the container, a row is handed out as a `Line` of one JSON object's bytes
(`containers`), so everything after this module reads one path; a row of a JSON array or a Parquet file is
named "row 12" where a JSONL line is "line 12", with its file when the package has several or is a zip.
"""

from __future__ import annotations

import base64
import binascii
import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO

from rewardlab.package.containers import (
    CELL_PREFIX,
    ContainerError,
    ParquetRows,
    Row,
    array_row_at,
    array_rows,
    parse_cell_ref,
)

ITEMS_NAME = "items.jsonl"
PACKAGE_SUFFIXES = (".zip", ".jsonl", ".json", ".parquet")
# The files a zip or folder may hold rows in besides items.jsonl, and the folder of a Hub repository's shards.
ROW_FILE_SUFFIXES = (".jsonl", ".parquet", ".json")
HUB_DATA_FOLDER = "data/"
# One line holds one item; a longer line is refused instead of parsed.
MAX_LINE_BYTES = 1024 * 1024
# How much of an over-long line is read at a time while skipping to its end.
SKIP_CHUNK_BYTES = 64 * 1024
# How much of an item file is read at a time.
LINES_BUFFER_BYTES = 1024 * 1024
NO_FILES_IN_BARE = "a bare {} package holds no files; give the image as a data: URI"
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# What a damaged or unsupported zip member raises while it is read (encrypted members raise RuntimeError).
ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError)


class PackageError(ValueError):
    """The package as a whole cannot be used: not a zip, no items.jsonl, or an unsafe member name."""


class ImageReadError(ValueError):
    """A line's image cannot be read: an unsafe or missing path, too many bytes, or a malformed data: URI.

    The message leaves the image's name out; the caller says which image it was.
    """


@dataclass(frozen=True)
class Line:
    """A non-blank line, or a row of a JSON array or Parquet file: its 1-based number in its file (blank lines
    count), its bytes (one JSON object), where it starts and ends, and why it cannot be read, if it cannot.

    `start` and `end` count the item files before this line's, so they measure progress through the package:
    bytes, or rows in a Parquet file. `file` names the line's file when a package has several (a snapshot's
    splits, a dataset's shards), else is None.
    """

    number: int
    data: bytes
    start: int
    end: int
    error: str = ""  # a line too long, or a row no JSON object can hold; its data is then empty
    file: str | None = None
    unit: str = "line"  # "row" in a JSON array or a Parquet file

    def place(self) -> Line:
        """The line without its bytes (same number, file and start), to keep where many lines were cheaply."""
        return replace(self, data=b"", end=self.start)

    @property
    def where(self) -> str:
        """The line as an error names it: "line 3", or "test.jsonl, line 3" in a package of several files."""
        return f"{self.file}, {self.unit} {self.number}" if self.file else f"{self.unit} {self.number}"


def unsafe_path_reason(path: str) -> str | None:
    """Return why a path may not be used inside a package, or None for a plain relative path."""
    if not path:
        return "the path is empty"
    if "\\" in path or "\0" in path:
        return f"{path!r} contains a backslash or NUL"
    if path.startswith("/") or _WINDOWS_DRIVE.match(path):
        return f"{path!r} is absolute"
    if ".." in path.split("/"):
        return f"{path!r} has a '..' segment"
    return None


def open_package(path: Path) -> Package:
    """Open a `.zip`, a folder, or a bare `.jsonl`, `.json` or `.parquet`; raise PackageError for anything else."""
    if path.is_dir():
        return FolderPackage(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return ZipPackage(path)
    if suffix in PACKAGE_SUFFIXES:
        return FilePackage(path)
    raise PackageError(f"expected a {', '.join(PACKAGE_SUFFIXES)} file or a folder, got {path.name!r}")


class Package:
    """An opened package; use it as a context manager.

    `files` are the item files read in turn (items.jsonl, a snapshot's splits, a dataset's shards) and
    `sizes` their lengths, in the unit `Line.end` counts; `size` is their total. `named` says whether a line
    names its file.
    """

    files: list[str]
    sizes: list[int]
    named: bool = True

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the open files."""
        for rows in getattr(self, "_parquet", {}).values():
            rows.close()

    def lines(self) -> Iterator[Line]:
        """Yield every non-blank line or row of the item files, numbered from 1 in each as an editor numbers them."""
        offset = 0
        for name, size in zip(self.files, self.sizes, strict=True):
            file = name if self.named else None
            try:
                for row in self._rows(name, offset):
                    yield Line(row.number, row.data, row.start, row.end, row.error, file, _unit(name))
            except ZIP_READ_ERRORS as exc:
                raise PackageError(f"{name} cannot be read from the zip: {exc}") from exc
            except ContainerError as exc:
                raise PackageError(f"{name}: {exc}") from exc
            offset += size

    def read_line(self, start: int) -> bytes:
        """Return the line that begins at `start` of the item files (a `Line.start`).

        A reader of a large package keeps offsets instead of lines, e.g. of lines with data: URIs.
        """
        for name, size in zip(self.files, self.sizes, strict=True):
            if start < size:
                try:
                    return self._row_at(name, start)
                except ZIP_READ_ERRORS as exc:
                    raise PackageError(f"{name} cannot be read from the zip: {exc}") from exc
                except ContainerError as exc:
                    raise PackageError(f"{name}: {exc}") from exc
            start -= size
        raise PackageError(f"no line starts at {start} past the end of the package")

    def read_image(self, ref: str, *, max_bytes: int) -> bytes:
        """Return the bytes a line's `image` names: a data: URI, an embedded image, or a relative path."""
        if ref.startswith("data:"):
            data = _data_uri_bytes(ref)
        elif ref.startswith(CELL_PREFIX):
            data = self._cell(ref)
        else:
            data = self._read_member(_member_name(ref), max_bytes=max_bytes)
        if len(data) > max_bytes:
            raise ImageReadError(f"{len(data)} bytes; the limit is {max_bytes}")
        return data

    def check_image(self, ref: str) -> None:
        """Raise ImageReadError where `read_image` would fail to find `ref`, reading no file.

        A loader checks every line of a large package this way without reading all of its images.
        """
        if ref.startswith("data:"):
            _data_uri_bytes(ref)
        elif ref.startswith(CELL_PREFIX):
            self._cell_rows(ref)
        else:
            self._member_size(_member_name(ref))

    def _rows(self, name: str, offset: int) -> Iterator[Row]:
        """Read one item file's rows by its suffix; positions start at `offset`."""
        suffix = PurePosixPath(name).suffix.lower()
        if suffix == ".parquet":
            # A handle of its own: in a zip, images read between batches would make the rows' reads seek back.
            with self._open_items(name) as fp:
                yield from ParquetRows(fp, name).rows(offset=offset, max_bytes=MAX_LINE_BYTES)
            return
        # A zip member's own readline steps through its decompressor a little at a time: 5x slower.
        with self._open_items(name) as raw, io.BufferedReader(raw, LINES_BUFFER_BYTES) as fp:
            rows = array_rows(fp, max_bytes=MAX_LINE_BYTES) if suffix == ".json" else _numbered_lines(fp)
            for row in rows:
                yield replace(row, start=offset + row.start, end=offset + row.end)

    def _size(self, name: str, byte_size: int) -> int:
        """Return an item file's length as lines count it: bytes, or rows of a Parquet file."""
        if not name.lower().endswith(".parquet"):
            return byte_size
        try:
            return self._parquet_rows(name).rows.num_rows
        except ZIP_READ_ERRORS as exc:
            raise PackageError(f"{name} cannot be read from the zip: {exc}") from exc
        except ContainerError as exc:
            raise PackageError(f"{name}: {exc}") from exc

    def _row_at(self, name: str, start: int) -> bytes:
        suffix = PurePosixPath(name).suffix.lower()
        if suffix == ".parquet":
            return self._parquet_rows(name).rows.row(start, max_bytes=MAX_LINE_BYTES)
        with self._open_items(name) as fp:
            if suffix == ".json":
                return array_row_at(fp, start, max_bytes=MAX_LINE_BYTES)
            fp.seek(start)
            return fp.readline(MAX_LINE_BYTES + 1)

    def _parquet_rows(self, name: str) -> _OpenParquet:
        """Return the item file opened as Parquet, once per package: its footer is read once."""
        opened: dict[str, _OpenParquet] = self.__dict__.setdefault("_parquet", {})
        if name not in opened:
            opened[name] = _OpenParquet(self._open_items(name), name)
        return opened[name]

    def _cell_rows(self, ref: str) -> tuple[_OpenParquet, int, str, int | None]:
        try:
            name, row, column, index = parse_cell_ref(ref)
        except (ValueError, KeyError) as exc:
            raise ImageReadError("a malformed reference to an embedded image") from exc
        if name not in self.files or not name.lower().endswith(".parquet"):
            raise ImageReadError(f"{name!r} is not a Parquet file of the package")
        return self._parquet_rows(name), row, column, index

    def _cell(self, ref: str) -> bytes:
        rows, row, column, index = self._cell_rows(ref)
        try:
            data = rows.rows.cell_bytes(row, column, index)
        except ContainerError as exc:
            raise ImageReadError(str(exc)) from exc
        except ZIP_READ_ERRORS as exc:
            raise ImageReadError(f"cannot be read from the zip: {exc}") from exc
        if data is None:
            raise ImageReadError("the embedded image has no bytes")
        return data

    # Methods that subclasses must implement.

    def _open_items(self, name: str) -> IO[bytes]:
        """Open one of `files` for reading."""
        raise NotImplementedError("subclasses of Package must provide an _open_items() method")

    def _member_size(self, name: str) -> int:
        """Return the size a member declares; raise ImageReadError when there is no such member."""
        raise NotImplementedError("subclasses of Package must provide a _member_size() method")

    def _read_member(self, name: str, *, max_bytes: int) -> bytes:
        """Return at most `max_bytes + 1` bytes of a member, so an understated size is still caught."""
        raise NotImplementedError("subclasses of Package must provide a _read_member() method")


class _OpenParquet:
    """A Parquet item file and the handle it reads through, closed with the package."""

    def __init__(self, fp: IO[bytes], name: str) -> None:
        self.fp = fp
        try:
            self.rows = ParquetRows(fp, name)
        except BaseException:
            fp.close()
            raise

    def close(self) -> None:
        self.fp.close()


def _unit(name: str) -> str:
    return "line" if name.lower().endswith(".jsonl") else "row"


class FilePackage(Package):
    """A bare .jsonl, .json or .parquet: its rows name images by data: URI, or embed them (Parquet)."""

    named = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = [path.name]
        try:
            self.sizes = [self._size(path.name, path.stat().st_size)]
        except PackageError:
            self.close()
            raise

    def _open_items(self, name: str) -> IO[bytes]:
        return self.path.open("rb")

    def _member_size(self, name: str) -> int:
        raise ImageReadError(NO_FILES_IN_BARE.format(self.path.suffix.lower()))

    def _read_member(self, name: str, *, max_bytes: int) -> bytes:
        raise ImageReadError(NO_FILES_IN_BARE.format(self.path.suffix.lower()))


class FolderPackage(Package):
    """A folder holding items.jsonl (or a snapshot's splits); image paths are relative to it and must resolve
    to a file inside it."""

    def __init__(self, path: Path) -> None:
        self.root = path.resolve()
        names = folder_names(self.root)
        _, self.files = item_files(names, where="the folder")
        self.named = self.files != [ITEMS_NAME]
        try:
            self.sizes = [self._size(name, (self.root / name).stat().st_size) for name in self.files]
        except PackageError:
            self.close()
            raise

    def _open_items(self, name: str) -> IO[bytes]:
        return (self.root / name).open("rb")

    def _member_size(self, name: str) -> int:
        return folder_file(self.root, name).stat().st_size

    def _read_member(self, name: str, *, max_bytes: int) -> bytes:
        path = folder_file(self.root, name)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageReadError(f"{size} bytes; the limit is {max_bytes}")
            with path.open("rb") as fp:
                return fp.read(max_bytes + 1)
        except OSError as exc:
            raise ImageReadError(f"cannot be read: {exc.strerror}") from exc


class ZipPackage(Package):
    def __init__(self, path: Path) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise PackageError(f"not a readable .zip file: {exc}") from exc
        try:
            self._members = _checked_members(self._zip)
            self._root, self.files = item_files(self._members, where="the zip")
            self.named = self.files != [ITEMS_NAME]
            self.sizes = [self._size(name, self._members[self._root + name].file_size) for name in self.files]
        except PackageError:
            self.close()
            raise

    def close(self) -> None:
        super().close()
        self._zip.close()

    def _open_items(self, name: str) -> IO[bytes]:
        return self._zip.open(self._members[self._root + name])

    def _member_size(self, name: str) -> int:
        return self._member(name).file_size

    def _read_member(self, name: str, *, max_bytes: int) -> bytes:
        info = self._member(name)
        if info.file_size > max_bytes:
            raise ImageReadError(f"{info.file_size} bytes; the limit is {max_bytes}")
        try:
            with self._zip.open(info) as fp:
                return fp.read(max_bytes + 1)
        except ZIP_READ_ERRORS as exc:
            raise ImageReadError(f"cannot be read from the zip: {exc}") from exc

    def _member(self, name: str) -> zipfile.ZipInfo:
        info = self._members.get(self._root + name)
        if info is None:
            raise ImageReadError("not in the package")
        return info


def folder_names(root: Path) -> list[str]:
    """Return the names `item_files` chooses from in a folder: its files, and those of a Hub dataset's data/."""
    names = [child.name for child in root.iterdir() if child.is_file()]
    if (root / HUB_DATA_FOLDER).is_dir():
        names += [HUB_DATA_FOLDER + child.name for child in (root / HUB_DATA_FOLDER).iterdir() if child.is_file()]
    return names


def folder_file(root: Path, ref: str) -> Path:
    """Return the regular file a relative path names inside `root`, all symlinks resolved.

    Raise ImageReadError for a path `unsafe_path_reason` refuses, one that resolves outside `root` (a symlink
    leaving it) or one that names no regular file: a folder is read as safely as a zip.
    """
    root = root.resolve()
    path = (root / _member_name(ref)).resolve()
    if not path.is_relative_to(root):
        raise ImageReadError("unsafe path: it resolves to a file outside the folder")
    if not path.is_file():
        raise ImageReadError("not in the folder")
    return path


def _member_name(ref: str) -> str:
    """Return the normalised member name of a relative path; raise ImageReadError for an unsafe one."""
    reason = unsafe_path_reason(ref)
    if reason:
        raise ImageReadError(f"unsafe path: {reason}")
    return posixpath.normpath(ref)


def _checked_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Map file names to entries; one unsafe name rejects the package, even if no line uses it."""
    members = {}
    for info in archive.infolist():
        reason = unsafe_path_reason(info.filename)
        if reason:
            raise PackageError(f"unsafe zip member: {reason}")
        if not info.is_dir():
            members[info.filename] = info
    return members


def item_files(names: Iterable[str], *, where: str) -> tuple[str, list[str]]:
    """Return the folder prefix of the item files and their names, in the order they are read.

    items.jsonl is looked for at the root, then in one top folder ("top/"). Without it: the top-level `.jsonl`
    files of an export snapshot; else the Parquet files of a Hub dataset (`data/*.parquet`, else `*.parquet`);
    else the top-level `.json` files, each a JSON array of rows. Each in name order, so `test` before `train`
    and shards in turn. A zip holding one top folder and nothing else is read inside that folder.
    """
    names = set(names)
    if ITEMS_NAME in names:
        return "", [ITEMS_NAME]
    nested = sorted(name for name in names if name.count("/") == 1 and name.endswith("/" + ITEMS_NAME))
    if len(nested) == 1:
        return nested[0].removesuffix(ITEMS_NAME), [ITEMS_NAME]
    if nested:
        raise PackageError(f"{where} has {ITEMS_NAME} in several folders ({', '.join(nested)}); expected one")
    if files := _row_files(names):
        return "", files
    tops = {name.split("/", 1)[0] + "/" for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        (top,) = tops
        if files := _row_files({name.removeprefix(top) for name in names}):
            return top, files
    raise PackageError(
        f"{where} has no {ITEMS_NAME} at its root or in a single top folder, no .jsonl files of an export, "
        f"no Parquet files (data/*.parquet or *.parquet) and no .json array of rows"
    )


def _row_files(names: set[str]) -> list[str]:
    """Return the first kind of row files found, in `ROW_FILE_SUFFIXES` order: Hub shards in data/ first."""
    for suffix in ROW_FILE_SUFFIXES:
        found = sorted(name for name in names if "/" not in name and name.lower().endswith(suffix))
        if suffix == ".parquet":
            shards = [name for name in names if name.startswith(HUB_DATA_FOLDER) and name.count("/") == 1]
            found = sorted(name for name in shards if name.lower().endswith(suffix)) or found
        if found:
            return found
    return []


def _numbered_lines(fp: IO[bytes]) -> Iterator[Row]:
    number = end = 0
    while data := fp.readline(MAX_LINE_BYTES + 1):
        number += 1
        start = end
        end += len(data)
        if len(data) > MAX_LINE_BYTES:
            # A zip member's readline(limit) may return a buffer's worth past the limit, newline and all.
            if not data.endswith(b"\n"):
                end += _skip_rest_of_line(fp)
            yield Row(number, b"", start, end, error=f"the line is longer than {MAX_LINE_BYTES} bytes")
        elif data.strip():
            yield Row(number, data, start, end)


def _skip_rest_of_line(fp: IO[bytes]) -> int:
    skipped = 0
    while chunk := fp.readline(SKIP_CHUNK_BYTES):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _data_uri_bytes(uri: str) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma or not header.endswith(";base64"):
        raise ImageReadError("a data: URI must be base64, like data:image/png;base64,...")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise ImageReadError(f"the data: URI is not valid base64 ({exc})") from exc
