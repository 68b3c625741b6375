"""Opening an import package: numbered lines of items.jsonl and image bytes, never a path outside it.

A package is a `.zip` holding `items.jsonl` (at its root, or in one top folder) and the images it names,
a folder holding `items.jsonl` and its images (a zip unpacked, or a dataset prepared on disk), or a bare
`.jsonl` whose images are `data:` URIs. Nothing is ever extracted to disk: members are read into memory
one at a time, after their declared size has been checked.

A zip or folder without `items.jsonl` is read as an export snapshot: its top-level `.jsonl` files (the
splits, `test.jsonl` then `train.jsonl`) are its lines, one after the other, and a line names its file.
So a downloaded snapshot imports as it is (`item_files` is the one place that rule lives).
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
from pathlib import Path
from typing import IO

ITEMS_NAME = "items.jsonl"
PACKAGE_SUFFIXES = (".zip", ".jsonl")
# One line holds one item; a longer line is refused instead of parsed.
MAX_LINE_BYTES = 1024 * 1024
# How much of an over-long line is read at a time while skipping to its end.
SKIP_CHUNK_BYTES = 64 * 1024
# How much of an item file is read at a time.
LINES_BUFFER_BYTES = 1024 * 1024
NO_FILES_IN_JSONL = "a bare .jsonl package holds no files; give the image as a data: URI"
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
    """A non-blank line: its 1-based number in its file (blank lines count), its bytes, and where it ends.

    `end` counts the bytes of every item file before this line's, so it measures progress through the
    package; `file` names the line's file when a package has several (a snapshot's splits), else is None.
    """

    number: int
    data: bytes
    end: int
    too_long: bool = False
    file: str | None = None

    @property
    def start(self) -> int:
        """Where the line begins, so a reader can keep offsets and `Package.read_line` it again later."""
        return self.end - len(self.data)

    def place(self) -> Line:
        """The line without its bytes (same number, file and start), to keep where many lines were cheaply."""
        return replace(self, data=b"", end=self.start)

    @property
    def where(self) -> str:
        """The line as an error names it: "line 3", or "test.jsonl, line 3" in a package of several files."""
        return f"{self.file}, line {self.number}" if self.file else f"line {self.number}"


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
    """Open a `.zip`, a folder or a bare `.jsonl` package; raise PackageError for anything else."""
    if path.is_dir():
        return FolderPackage(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return ZipPackage(path)
    if suffix == ".jsonl":
        return JsonlPackage(path)
    raise PackageError(f"expected a {' or '.join(PACKAGE_SUFFIXES)} file or a folder, got {path.name!r}")


class Package:
    """An opened package; use it as a context manager.

    `files` are the item files read in turn (items.jsonl, or a snapshot's splits) and `sizes` their byte
    lengths; `size` is their total.
    """

    files: list[str]
    sizes: list[int]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the open file; a bare .jsonl holds none between reads."""

    def lines(self) -> Iterator[Line]:
        """Yield every non-blank line of the item files, numbered from 1 in each as an editor numbers them."""
        offset = 0
        named = self.files != [ITEMS_NAME]
        for name, size in zip(self.files, self.sizes, strict=True):
            try:
                # A zip member's own readline steps through its decompressor a little at a time: 5x slower.
                with self._open_items(name) as raw, io.BufferedReader(raw, LINES_BUFFER_BYTES) as fp:
                    for line in _numbered_lines(fp):
                        yield replace(line, end=offset + line.end, file=name if named else None)
            except ZIP_READ_ERRORS as exc:
                raise PackageError(f"{name} cannot be read from the zip: {exc}") from exc
            offset += size

    def read_line(self, start: int) -> bytes:
        """Return the line that begins at byte `start` of the item files (a `Line.start`).

        A reader of a large package keeps offsets instead of lines, e.g. of lines with data: URIs.
        """
        for name, size in zip(self.files, self.sizes, strict=True):
            if start < size:
                try:
                    with self._open_items(name) as fp:
                        fp.seek(start)
                        return fp.readline(MAX_LINE_BYTES + 1)
                except ZIP_READ_ERRORS as exc:
                    raise PackageError(f"{name} cannot be read from the zip: {exc}") from exc
            start -= size
        raise PackageError(f"no line starts at byte {start} past the end of the package")

    def read_image(self, ref: str, *, max_bytes: int) -> bytes:
        """Return the bytes a line's `image` names: a data: URI, or a relative path inside the package."""
        if ref.startswith("data:"):
            data = _data_uri_bytes(ref)
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
        else:
            self._member_size(_member_name(ref))

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


class JsonlPackage(Package):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = [ITEMS_NAME]  # the file itself, named as items.jsonl is: lines need no file name
        self.sizes = [path.stat().st_size]

    def _open_items(self, name: str) -> IO[bytes]:
        return self.path.open("rb")

    def _member_size(self, name: str) -> int:
        raise ImageReadError(NO_FILES_IN_JSONL)

    def _read_member(self, name: str, *, max_bytes: int) -> bytes:
        raise ImageReadError(NO_FILES_IN_JSONL)


class FolderPackage(Package):
    """A folder holding items.jsonl (or a snapshot's splits); image paths are relative to it and must resolve
    to a file inside it."""

    def __init__(self, path: Path) -> None:
        self.root = path.resolve()
        names = [child.name for child in self.root.iterdir() if child.is_file()]
        _, self.files = item_files(names, where="the folder")
        self.sizes = [(self.root / name).stat().st_size for name in self.files]

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
        except PackageError:
            self._zip.close()
            raise
        self.sizes = [self._members[self._root + name].file_size for name in self.files]

    def close(self) -> None:
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
    """Return the folder prefix of the item files and their names: items.jsonl, else a snapshot's splits.

    items.jsonl is looked for at the root, then in one top folder ("top/"); without it, the top-level
    `.jsonl` files of an export snapshot are the item files, in name order.
    """
    names = set(names)
    if ITEMS_NAME in names:
        return "", [ITEMS_NAME]
    nested = sorted(name for name in names if name.count("/") == 1 and name.endswith("/" + ITEMS_NAME))
    if len(nested) == 1:
        return nested[0].removesuffix(ITEMS_NAME), [ITEMS_NAME]
    if nested:
        raise PackageError(f"{where} has {ITEMS_NAME} in several folders ({', '.join(nested)}); expected one")
    splits = sorted(name for name in names if "/" not in name and name.lower().endswith(".jsonl"))
    if splits:
        return "", splits
    raise PackageError(
        f"{where} has no {ITEMS_NAME} at its root or in a single top folder, and no .jsonl files of an export"
    )


def _numbered_lines(fp: IO[bytes]) -> Iterator[Line]:
    number = end = 0
    while data := fp.readline(MAX_LINE_BYTES + 1):
        number += 1
        end += len(data)
        if len(data) > MAX_LINE_BYTES:
            # A zip member's readline(limit) may return a buffer's worth past the limit, newline and all.
            if not data.endswith(b"\n"):
                end += _skip_rest_of_line(fp)
            yield Line(number, b"", end, too_long=True)
        elif data.strip():
            yield Line(number, data, end)


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
