"""Opening an import package: numbered lines of items.jsonl and image bytes, never a path outside it.

A package is a `.zip` holding `items.jsonl` (at its root, or in one top folder) and the images it names,
a folder holding `items.jsonl` and its images (a zip unpacked, or a dataset prepared on disk), or a bare
`.jsonl` whose images are `data:` URIs. Nothing is ever extracted to disk: members are read into memory
one at a time, after their declared size has been checked.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ITEMS_NAME = "items.jsonl"
PACKAGE_SUFFIXES = (".zip", ".jsonl")
# One line holds one item; a longer line is refused instead of parsed.
MAX_LINE_BYTES = 1024 * 1024
# How much of an over-long line is read at a time while skipping to its end.
SKIP_CHUNK_BYTES = 64 * 1024
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
    """A non-blank line: its 1-based number (blank lines count), its bytes, and where it ends in the file."""

    number: int
    data: bytes
    end: int
    too_long: bool = False

    @property
    def start(self) -> int:
        """Where the line begins, so a reader can keep offsets and `Package.read_line` it again later."""
        return self.end - len(self.data)


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
    """An opened package; use it as a context manager. `size` is the byte length of items.jsonl."""

    size: int

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the open file; a bare .jsonl holds none between reads."""

    def lines(self) -> Iterator[Line]:
        """Yield every non-blank line of items.jsonl, numbered from 1 as an editor would number them."""
        try:
            with self._open_items() as fp:
                yield from _numbered_lines(fp)
        except ZIP_READ_ERRORS as exc:
            raise PackageError(f"{ITEMS_NAME} cannot be read from the zip: {exc}") from exc

    def read_line(self, start: int) -> bytes:
        """Return the line of items.jsonl that begins at byte `start` (a `Line.start`).

        A reader of a large package keeps offsets instead of lines, e.g. of lines with data: URIs.
        """
        try:
            with self._open_items() as fp:
                fp.seek(start)
                return fp.readline(MAX_LINE_BYTES + 1)
        except ZIP_READ_ERRORS as exc:
            raise PackageError(f"{ITEMS_NAME} cannot be read from the zip: {exc}") from exc

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

    def _open_items(self) -> IO[bytes]:
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
        self.size = path.stat().st_size

    def _open_items(self) -> IO[bytes]:
        return self.path.open("rb")

    def _member_size(self, name: str) -> int:
        raise ImageReadError(NO_FILES_IN_JSONL)

    def _read_member(self, name: str, *, max_bytes: int) -> bytes:
        raise ImageReadError(NO_FILES_IN_JSONL)


class FolderPackage(Package):
    """A folder holding items.jsonl; image paths are relative to it and must resolve to a file inside it."""

    def __init__(self, path: Path) -> None:
        self.root = path.resolve()
        items = self.root / ITEMS_NAME
        if not items.is_file():
            raise PackageError(f"the folder has no {ITEMS_NAME}")
        self.size = items.stat().st_size

    def _open_items(self) -> IO[bytes]:
        return (self.root / ITEMS_NAME).open("rb")

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
            self._root = _items_folder(self._members)
        except PackageError:
            self._zip.close()
            raise
        self.size = self._members[self._root + ITEMS_NAME].file_size

    def close(self) -> None:
        self._zip.close()

    def _open_items(self) -> IO[bytes]:
        return self._zip.open(self._members[self._root + ITEMS_NAME])

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


def _items_folder(members: dict[str, zipfile.ZipInfo]) -> str:
    """Return the folder prefix of items.jsonl: "" at the root, "top/" when the zip holds one folder."""
    if ITEMS_NAME in members:
        return ""
    nested = sorted(name for name in members if name.count("/") == 1 and name.endswith("/" + ITEMS_NAME))
    if len(nested) == 1:
        return nested[0].removesuffix(ITEMS_NAME)
    if nested:
        raise PackageError(f"the zip has {ITEMS_NAME} in several folders ({', '.join(nested)}); expected one")
    raise PackageError(f"the zip has no {ITEMS_NAME} at its root or in a single top folder")


def _numbered_lines(fp: IO[bytes]) -> Iterator[Line]:
    number = end = 0
    while data := fp.readline(MAX_LINE_BYTES + 1):
        number += 1
        end += len(data)
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
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
