"""A trained model as one self-checking directory, written atomically.

Layout::

    config.json           the run's whole configuration (any JSON object), so the model can be rebuilt
    weights.safetensors   named tensors, CPU and contiguous
    metrics.json          its evaluation
    SHA256SUMS            "<hex>  <name>" per file, as ``sha256sum`` writes and ``sha256sum -c`` checks

The artifact's own checksum is the SHA-256 of the SHA256SUMS bytes, so one hex string pins every file;
ModelRun stores it. Files hold no timestamps and JSON keys are sorted, so the same inputs give the same
bytes and the same checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
METRICS_NAME = "metrics.json"
SUMS_NAME = "SHA256SUMS"
FILE_NAMES = (CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME)  # sorted: the order of lines in SHA256SUMS
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
JSON_INDENT = 2
REPLACED = "the artifact was replaced while being read; read it again."


class ArtifactError(ValueError):
    """An artifact directory is missing a file, or a file's checksum differs from SHA256SUMS."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    metrics: dict[str, Any]
    sha256: str  # of the SHA256SUMS bytes


def _json_bytes(name: str, value: dict[str, Any]) -> bytes:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}.")
    return (json.dumps(value, sort_keys=True, indent=JSON_INDENT) + "\n").encode()


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the tensors detached, on CPU and contiguous, as safetensors stores them."""
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise ValueError(f"tensors must map names to torch tensors, got {name!r}: {type(tensor).__name__}.")
    return {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}


def _sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's entries to disk, so a rename never publishes unwritten data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _sums_text(digests: dict[str, str]) -> str:
    return "".join(f"{digests[name]}  {name}\n" for name in FILE_NAMES)


def _parse_sums(path: Path, text: str) -> dict[str, str]:
    """Return {file name: hex digest} from SHA256SUMS, which must list exactly the artifact's files."""
    digests = {}
    for line in text.splitlines():
        digest, separator, name = line.partition("  ")
        if not separator:
            raise ArtifactError(f"{path / SUMS_NAME}: expected '<hex>  <name>' lines, got {line!r}.")
        digests[name] = digest
    if sorted(digests) != list(FILE_NAMES):
        raise ArtifactError(f"{path / SUMS_NAME} must list {', '.join(FILE_NAMES)}; it lists {', '.join(digests)}.")
    return digests


def _replace_dir(new: Path, path: Path) -> None:
    """Move the complete directory ``new`` to ``path``, replacing what is there.

    POSIX cannot rename a directory over a non-empty one, so the old artifact is first renamed aside to a
    ``.old-`` sibling. Between the two renames ``path`` does not exist: a reader then finds no artifact
    (an ArtifactError), never a mix. A crash in that window leaves the whole old artifact in the ``.old-``
    sibling and the whole new one in the ``.tmp-`` sibling; a failed second rename puts the old one back.
    """
    if not path.exists():
        new.rename(path)
        return
    old = path.with_name(OLD_PREFIX + new.name.removeprefix(TMP_PREFIX))
    path.rename(old)
    try:
        new.rename(path)
    except BaseException:
        old.rename(path)
        raise
    shutil.rmtree(old)


def artifact_write(
    path: str | os.PathLike[str],
    *,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    metrics: dict[str, Any],
) -> Artifact:
    """Write an artifact directory at ``path`` atomically and return it, replacing any artifact there.

    Everything is written and fsynced in a ``.tmp-`` sibling (same parent, so the rename stays on one file
    system), then renamed into place; on failure the sibling is removed and the old artifact stays.
    Two writers to the same path at once are not supported.
    """
    path = Path(path)
    files = {CONFIG_NAME: _json_bytes("config", config), METRICS_NAME: _json_bytes("metrics", metrics)}
    tensors = _cpu_tensors(tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent))
    try:
        for name, data in files.items():
            _write_bytes(tmp / name, data)
        save_file(tensors, tmp / WEIGHTS_NAME)
        _fsync(tmp / WEIGHTS_NAME)
        sums = _sums_text({name: _sha256_file(tmp / name) for name in FILE_NAMES}).encode()
        _write_bytes(tmp / SUMS_NAME, sums)
        _fsync(tmp)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(path.parent)  # make the rename itself durable
    return Artifact(path, config, tensors, metrics, hashlib.sha256(sums).hexdigest())


def artifact_read(path: str | os.PathLike[str]) -> Artifact:
    """Return the artifact at ``path`` after checking every file against SHA256SUMS.

    Raises ArtifactError naming the file that is missing or whose checksum differs. SHA256SUMS is read
    again at the end: if the artifact was replaced while being read, the files may come from two versions,
    and that is reported rather than returned.
    """
    path = Path(path)
    sums = _read_sums(path)
    for name, digest in _parse_sums(path, sums.decode()).items():
        _check(path, name, digest)
    try:
        config = json.loads((path / CONFIG_NAME).read_bytes())
        metrics = json.loads((path / METRICS_NAME).read_bytes())
        tensors = load_file(path / WEIGHTS_NAME)
    except FileNotFoundError:  # moved aside by a writer after the checks
        raise ArtifactError(f"{path}: {REPLACED}") from None
    if _read_sums(path) != sums:
        raise ArtifactError(f"{path}: {REPLACED}")
    return Artifact(path, config, tensors, metrics, hashlib.sha256(sums).hexdigest())


def _read_sums(path: Path) -> bytes:
    try:
        return (path / SUMS_NAME).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: {SUMS_NAME} is missing; is this an artifact directory?") from None


def _check(path: Path, name: str, digest: str) -> None:
    """Raise ArtifactError unless ``path / name`` exists and has the SHA-256 ``digest``."""
    try:
        actual = _sha256_file(path / name)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: {name} is missing.") from None
    if actual != digest:
        raise ArtifactError(f"{path}: checksum of {name} differs: SHA256SUMS says {digest}, got {actual}.")


def artifact_sha256(path: str | os.PathLike[str]) -> str:
    """Return the artifact's checksum (SHA-256 of SHA256SUMS) without reading or checking the other files."""
    return hashlib.sha256(_read_sums(Path(path))).hexdigest()
