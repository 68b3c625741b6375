"""Writing a snapshot's file as rows arrive: a .zip (split JSONL files, images, card) or one bare .jsonl.

The bytes depend only on what is written, never on when: every zip member carries the snapshot's own
timestamp and a fixed compression, members go in in the order they are added, JSON is written with fixed
separators. So a run redone after a crash writes the same file, and its SHA-256 identifies the content.

Rows stream to one temporary JSONL file per split (a zip takes one member at a time, and images are added
between rows); `finish_rows` then copies each into the zip. Memory holds a row and the set of member names.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import IO

from annotate.exports.jsontext import dumps_line

SPLIT_ORDER = ("train", "test")
COPY_CHUNK = 1024 * 1024
# Images are compressed already; deflating them again costs time and saves nothing.
STORED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        while chunk := fp.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class SnapshotWriter:
    """Write one snapshot file at `path`; use as a context manager, which deletes `path` on an error.

    `packed=True` makes a .zip: rows go to `<split>.jsonl` members (a split without rows has no file),
    beside the images and any other member added. `packed=False` makes one .jsonl of every row, in order.
    """

    def __init__(self, path: Path, *, packed: bool, timestamp: datetime) -> None:
        self.path = path
        self.packed = packed
        # A zip stores local time to the second, from 1980 on.
        self.date_time = max(timestamp.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
        self.rows = 0
        self._members: set[str] = set()
        self._staging = tempfile.TemporaryDirectory(dir=path.parent, prefix=".rows-") if packed else None
        self._splits: dict[str, IO[bytes]] = {}
        self._zip = zipfile.ZipFile(path, "w") if packed else None
        self._bare = None if packed else path.open("wb", buffering=COPY_CHUNK)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is not None:
            self.path.unlink(missing_ok=True)

    def has(self, name: str) -> bool:
        return name in self._members

    def add_member(self, name: str, data: bytes) -> None:
        """Add a file to the zip once; a name added before is left as it is."""
        if name in self._members:
            return
        self._members.add(name)
        info = zipfile.ZipInfo(name, date_time=self.date_time)
        stored = name.lower().endswith(STORED_SUFFIXES)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data)

    def add_row(self, split: str, row: dict) -> None:
        line = dumps_line(row)
        self.rows += 1
        if self._bare is not None:
            self._bare.write(line)
            return
        if split not in self._splits:
            # A large buffer: a million small writes otherwise cost a system call every few rows.
            self._splits[split] = (Path(self._staging.name) / f"{split}.jsonl").open("w+b", buffering=COPY_CHUNK)
        self._splits[split].write(line)

    def finish_rows(self) -> dict[str, str]:
        """Copy each split's rows into the zip; return {split: member name} of the splits that have rows."""
        files = {}
        for split in [split for split in SPLIT_ORDER if split in self._splits]:
            name = f"{split}.jsonl"
            with self._splits.pop(split) as staged:
                self.add_staged(name, staged, compress_type=zipfile.ZIP_DEFLATED)
            files[split] = name
        return files

    def add_staged(self, name: str, staged: IO[bytes], *, compress_type: int) -> None:
        """Copy a staged file, written up to its current position, into the zip as member `name`."""
        info = zipfile.ZipInfo(name, date_time=self.date_time)
        info.compress_type = compress_type
        info.file_size = staged.tell()  # lets zipfile switch to ZIP64 past 2 GiB
        staged.seek(0)
        with self._zip.open(info, "w") as member:
            shutil.copyfileobj(staged, member, COPY_CHUNK)
        self._members.add(name)

    def close(self) -> None:
        for staged in self._splits.values():
            staged.close()
        self._splits.clear()
        if self._zip is not None:
            self._zip.close()
        if self._bare is not None:
            self._bare.close()
        if self._staging is not None:
            self._staging.cleanup()
