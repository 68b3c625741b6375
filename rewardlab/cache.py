"""On-disk cache of frozen-encoder outputs, keyed by SHA-256 of (encoder, content).

Encoders are frozen, so an image or text is encoded once per encoder and every later retrain only
trains heads (DESIGN.md, "Default encoders"). One SQLite file holds every entry: it is safe for several
worker processes at once (WAL), needs no server, and reads 10^5 entries in about a second.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

CACHE_FILE = "embeddings.sqlite3"
# SQLite refuses statements with more host parameters than this.
QUERY_CHUNK = 900
BUSY_TIMEOUT_MS = 30_000


def content_key(encoder: str, content: bytes) -> str:
    """Return the cache key of `content` under `encoder`: a changed encoder never reuses old entries."""
    digest = hashlib.sha256(encoder.encode())
    digest.update(b"\0")
    digest.update(content)
    return digest.hexdigest()


class EmbeddingCache:
    """Arrays of one fixed shape and dtype per encoder, stored as raw bytes."""

    def __init__(self, directory: str | Path | None) -> None:
        """Open (creating) the cache in `directory`; None keeps entries in memory only, for tests and one-offs."""
        target = ":memory:"
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            target = str(Path(directory) / CACHE_FILE)
        self._db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS entry (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_many(self, keys: Sequence[str], *, shape: tuple[int, ...], dtype: str) -> dict[str, np.ndarray]:
        """Return the cached arrays among `keys`; missing keys are simply absent."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), QUERY_CHUNK):
            chunk = unique[start : start + QUERY_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM entry WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(value, dtype=dtype).reshape(shape)
        return found

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]], *, dtype: str) -> None:
        """Store arrays (converted to `dtype`); an existing key keeps its first value, as content decides it."""
        rows = ((key, np.ascontiguousarray(array, dtype=dtype).tobytes()) for key, array in entries)
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO entry (key, value) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM entry").fetchone()[0]
