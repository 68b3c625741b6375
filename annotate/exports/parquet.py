"""Writing a snapshot as a Hugging Face dataset repository in a zip: `data/*.parquet` shards and a README.md.

The layout is what `push_to_hub` makes, so `datasets.load_dataset(<unzipped folder>)` reads it through the
README's YAML (`configs`, `dataset_info`) and the folder can be uploaded as it is:

    README.md                                  YAML header, then the dataset card
    data/train-00000-of-00002.parquet          rows, images embedded as `Image` features
    data/train-00001-of-00002.parquet
    data/test-00000-of-00001.parquet

Rows stream in: each split keeps one row group of rows in memory and writes it to its open shard through
pyarrow's ParquetWriter; a shard is closed once it holds `SHARD_MAX_ROWS` rows or `SHARD_MAX_BYTES` of
Arrow data, which also bounds its footer (one entry per row group) in memory. The bytes depend only on
the rows: row groups and shards are cut at fixed counts of rows and of Arrow bytes (never file positions),
Parquet holds no timestamp, the writer's options are fixed here and pyarrow's version is pinned; the zip
gives every member the snapshot's own timestamp (`annotate.exports.writer`).
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from annotate.exports.features import arrow_schema, image_columns, yaml_features
from annotate.exports.writer import SPLIT_ORDER, SnapshotWriter

DATA_DIR = "data"
# datasets writes image datasets in row groups of 100 rows (PARQUET_ROW_GROUP_SIZE_FOR_IMAGE_DATASETS), so
# the Hub's viewer reads a few images at a time; rows without images are small and go 10,000 at a time.
IMAGE_GROUP_ROWS = 100
TEXT_GROUP_ROWS = 10_000
# A shard's footer (one entry per row group and column, statistics included) stays in memory until it is
# closed: at 100-row groups it grew the export by about 175 MiB by 200k rows (bench/export.py), so a
# shard holds at most 500 row groups of images.
SHARD_MAX_ROWS = 50_000
SHARD_MAX_BYTES = 500 * 1024 * 1024  # push_to_hub's default max_shard_size
# Fixed, not left to pyarrow's defaults, which may change between versions. Snappy is what datasets writes.
PARQUET_OPTIONS = {"compression": "snappy", "use_dictionary": True, "write_statistics": True}


@dataclass
class _Shard:
    writer: pq.ParquetWriter
    path: Path
    rows: int = 0
    nbytes: int = 0


class ParquetSnapshotWriter(SnapshotWriter):
    """Write one snapshot .zip at `path` holding a dataset repository; a context manager that deletes `path`
    on an error. Rows must already hold their images (`annotate.exports.features.row_encoder`)."""

    def __init__(self, path: Path, *, features: Mapping[str, dict], timestamp: datetime) -> None:
        super().__init__(path, packed=True, timestamp=timestamp)
        self.features = dict(features)
        self.schema = arrow_schema(features)
        self.group_rows = IMAGE_GROUP_ROWS if image_columns(features) else TEXT_GROUP_ROWS
        self.split_rows: Counter = Counter()
        self.split_bytes: Counter = Counter()  # Arrow bytes per split: the card's num_bytes, as datasets counts
        self._pending: dict[str, list[dict]] = {}
        self._open: dict[str, _Shard] = {}
        self._closed: dict[str, list[Path]] = {}

    def add_row(self, split: str, row: dict) -> None:
        self.rows += 1
        pending = self._pending.setdefault(split, [])
        pending.append(row)
        if len(pending) >= self.group_rows:
            self._flush(split)

    def _flush(self, split: str) -> None:
        """Write the split's waiting rows as one row group; close the shard once it is full."""
        rows = self._pending.pop(split, None)
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=self.schema)
        shard = self._open.get(split) or self._new_shard(split)
        shard.writer.write_table(table, row_group_size=len(rows))
        shard.rows += len(rows)
        shard.nbytes += table.nbytes
        self.split_rows[split] += len(rows)
        self.split_bytes[split] += table.nbytes
        if shard.rows >= SHARD_MAX_ROWS or shard.nbytes >= SHARD_MAX_BYTES:
            self._close_shard(split)

    def _new_shard(self, split: str) -> _Shard:
        path = Path(self._staging.name) / f"{split}-{len(self._closed.get(split, [])):05d}.parquet"
        shard = _Shard(pq.ParquetWriter(path, self.schema, **PARQUET_OPTIONS), path)
        self._open[split] = shard
        return shard

    def _close_shard(self, split: str) -> None:
        shard = self._open.pop(split)
        shard.writer.close()
        self._closed.setdefault(split, []).append(shard.path)

    def finish_rows(self) -> dict[str, list[str]]:
        """Move every shard into the zip under its final name; return {split: member names} of splits with rows."""
        files = {}
        for split in SPLIT_ORDER:
            self._flush(split)
            if split in self._open:
                self._close_shard(split)
            paths = self._closed.pop(split, [])
            names = [f"{DATA_DIR}/{split}-{index:05d}-of-{len(paths):05d}.parquet" for index in range(len(paths))]
            for name, path in zip(names, paths, strict=True):
                with path.open("rb") as staged:
                    staged.seek(0, os.SEEK_END)
                    self.add_staged(name, staged, compress_type=zipfile.ZIP_STORED)  # Parquet is compressed
                path.unlink()
            if names:
                files[split] = names
        return files

    def readme_header(self, files: Mapping[str, list[str]], download_size: int) -> str:
        """Return the README's YAML header: the configs `load_dataset` follows, and the features and splits."""
        header = {
            "configs": [
                {
                    "config_name": "default",
                    "data_files": [{"split": split, "path": f"{DATA_DIR}/{split}-*"} for split in files],
                }
            ],
            "dataset_info": {
                "features": yaml_features(self.features),
                "splits": [
                    {"name": split, "num_bytes": self.split_bytes[split], "num_examples": self.split_rows[split]}
                    for split in files
                ],
                "download_size": download_size,
                "dataset_size": sum(self.split_bytes.values()),
            },
        }
        return f"---\n{yaml.safe_dump(header, sort_keys=False, allow_unicode=True)}---\n\n"

    def member_size(self, name: str) -> int:
        return self._zip.getinfo(name).file_size

    def close(self) -> None:
        for shard in self._open.values():
            shard.writer.close()
        self._open.clear()
        super().close()
