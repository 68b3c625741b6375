"""Image sources: where a Dataset's images are read from, on demand, by key (`rewardlab.data.ImageSource`).

Bytes held in memory, files under a folder, members of a zip, and the images of an import package. The
file-backed sources open their file once per process, so a dataset survives DataLoader workers.
"""

from __future__ import annotations

import os
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from rewardlab.data import DataError
from rewardlab.package.layouts import ItemSpecParser
from rewardlab.package.package import (
    ZIP_READ_ERRORS,
    ImageReadError,
    Package,
    folder_file,
    open_package,
    unsafe_path_reason,
)

# Above what annotate accepts (20 MiB by default): reading training data must not refuse what was imported.
MAX_IMAGE_BYTES = 64 * 1024**2


@dataclass
class MemoryImages:
    """Images held as bytes, for tests and small datasets built in code."""

    images: dict[str, bytes]

    def read(self, key: str) -> bytes:
        try:
            return self.images[key]
        except KeyError:
            raise DataError(f"image {key!r}: not among the images in memory") from None


class FolderImages:
    """Image files named by safe relative paths under a folder, e.g. beside a plain JSONL export."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def read(self, key: str) -> bytes:
        try:
            return folder_file(self.root, key).read_bytes()
        except (ImageReadError, OSError) as exc:
            raise DataError(f"{self.root}: image {key!r}: {exc}") from exc

    def check(self, key: str) -> str | None:
        """Return why `key` cannot be read, or None; reads no bytes."""
        try:
            folder_file(self.root, key)
        except ImageReadError as exc:
            return str(exc)
        return None


class _Closeable(Protocol):
    def close(self) -> None: ...


H = TypeVar("H", bound=_Closeable)


class _PerProcess(Generic[H]):
    """Open a file on first use in each process, and leave it out of pickles.

    DataLoader workers are forked or pickled copies of a dataset: a zip handle inherited through fork
    shares its file offset with the parent, so concurrent reads would interleave, and an open file
    cannot be pickled. Each process therefore opens its own handle.
    """

    _handle: H | None = None
    _pid: int = 0

    def _opened(self) -> H:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = self._open(), os.getpid()
        return self._handle

    def _open(self) -> H:
        raise NotImplementedError("subclasses of _PerProcess must provide an _open() method")

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_handle", None)
        state.pop("_pid", None)
        return state


class ZipImages(_PerProcess[zipfile.ZipFile]):
    """Members of a zip named by safe relative paths, e.g. the images/ of an export snapshot."""

    def __init__(self, path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes

    def _open(self) -> zipfile.ZipFile:
        return zipfile.ZipFile(self.path)

    def read(self, key: str) -> bytes:
        try:
            info = self._member(key)
            if info.file_size > self.max_bytes:
                raise ImageReadError(f"{info.file_size} bytes; the limit is {self.max_bytes}")
            with self._opened().open(info) as fp:
                data = fp.read(self.max_bytes + 1)
        except (ImageReadError, OSError, *ZIP_READ_ERRORS) as exc:
            raise DataError(f"{self.path}: image {key!r}: {exc}") from exc
        if len(data) > self.max_bytes:
            raise DataError(f"{self.path}: image {key!r}: more bytes than the limit of {self.max_bytes}")
        return data

    def check(self, key: str) -> str | None:
        """Return why `key` cannot be read, or None; reads no bytes."""
        try:
            self._member(key)
        except ImageReadError as exc:
            return str(exc)
        return None

    def _member(self, key: str) -> zipfile.ZipInfo:
        reason = unsafe_path_reason(key)
        if reason:
            raise ImageReadError(f"unsafe path: {reason}")
        try:
            return self._opened().getinfo(posixpath.normpath(key))
        except KeyError:
            raise ImageReadError("not in the zip") from None


class PackageImages(_PerProcess[Package]):
    """The images of an import package (zip, folder or bare .jsonl), read through rewardlab.package.

    A data: URI is not kept: its key maps to the offset of its line, which is read again on demand (quick in
    a bare .jsonl or a folder; in a zip, seeking in compressed items.jsonl decompresses up to the line) and
    parsed again by `parse`, which knows where the line's layout keeps its image.
    """

    def __init__(self, path: str | Path, *, strength_scale: int, max_bytes: int = MAX_IMAGE_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.parse = ItemSpecParser(strength_scale=strength_scale)  # the loader's, so the file's layout
        self.data_lines: dict[str, int] = {}  # key -> Line.start of a line whose image is a data: URI

    def _open(self) -> Package:
        return open_package(self.path)

    def check(self, key: str) -> str | None:
        """Return why `key` cannot be read, or None; reads no image bytes (a Parquet cell is found, not read)."""
        if key in self.data_lines:
            return None
        try:
            self._opened().check_image(key)
        except ValueError as exc:
            return str(exc)
        return None

    def read(self, key: str) -> bytes:
        try:
            package = self._opened()
            ref = key
            if key in self.data_lines:
                ref = self.parse(package.read_line(self.data_lines[key])).image
            return package.read_image(ref, max_bytes=self.max_bytes)
        except (ValueError, OSError) as exc:  # PackageError, ImageReadError and LineError are ValueErrors
            raise DataError(f"{self.path}: image {key!r}: {exc}") from exc
