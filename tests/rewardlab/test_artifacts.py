"""Model artifacts: they round-trip, are deterministic, catch tampering and are replaced atomically."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from rewardlab import artifacts
from rewardlab.artifacts import (
    FILE_NAMES,
    SUMS_NAME,
    WEIGHTS_NAME,
    ArtifactError,
    artifact_read,
    artifact_sha256,
    artifact_write,
)

CONFIG = {"train": {"lr": 0.001, "epochs": 3}, "encoder": "minilm"}
METRICS = {"accuracy": 0.75, "n": 40}


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "head.weight": torch.randn(8, 4, generator=generator).t(),  # not contiguous: saved as contiguous
        "head.bias": torch.randn(4, generator=generator),
        "steps": torch.tensor([7], dtype=torch.int64),
    }


def _write(path, seed: int = 0, **changes):
    options = {"config": CONFIG, "tensors": _tensors(seed), "metrics": METRICS} | changes
    return artifact_write(path, **options)


def _assert_equal_tensors(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype
        assert torch.equal(left[name], right[name]), name


def _leftovers(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-")))


def test_round_trip(tmp_path):
    written = _write(tmp_path / "run-1")
    read = artifact_read(tmp_path / "run-1")
    assert (read.config, read.metrics) == (CONFIG, METRICS)
    _assert_equal_tensors(read.tensors, _tensors())
    _assert_equal_tensors(written.tensors, _tensors())
    assert read.sha256 == written.sha256 == artifact_sha256(tmp_path / "run-1")
    assert sorted(p.name for p in (tmp_path / "run-1").iterdir()) == sorted([*FILE_NAMES, SUMS_NAME])


def test_same_content_gives_same_bytes_and_checksum(tmp_path):
    first, again, other = _write(tmp_path / "a"), _write(tmp_path / "b"), _write(tmp_path / "c", seed=1)
    for name in [*FILE_NAMES, SUMS_NAME]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.sha256 == again.sha256 != other.sha256


def test_sha256sums_is_in_sha256sum_format(tmp_path):
    _write(tmp_path / "run")
    lines = (tmp_path / "run" / SUMS_NAME).read_text().splitlines()
    expected = [f"{hashlib.sha256((tmp_path / 'run' / n).read_bytes()).hexdigest()}  {n}" for n in FILE_NAMES]
    assert lines == expected
    assert artifact_sha256(tmp_path / "run") == hashlib.sha256((tmp_path / "run" / SUMS_NAME).read_bytes()).hexdigest()


def test_a_tampered_byte_names_the_file(tmp_path):
    _write(tmp_path / "run")
    weights = tmp_path / "run" / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=WEIGHTS_NAME):
        artifact_read(tmp_path / "run")


@pytest.mark.parametrize("name", [*FILE_NAMES, SUMS_NAME])
def test_a_missing_file_is_named(tmp_path, name):
    _write(tmp_path / "run")
    (tmp_path / "run" / name).unlink()
    with pytest.raises(ArtifactError, match=name):
        artifact_read(tmp_path / "run")


def test_a_new_artifact_replaces_the_old_one(tmp_path):
    _write(tmp_path / "run")
    new = _write(tmp_path / "run", seed=1, metrics={"accuracy": 0.9})
    read = artifact_read(tmp_path / "run")
    assert read.metrics == {"accuracy": 0.9} and read.sha256 == new.sha256
    _assert_equal_tensors(read.tensors, _tensors(1))
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_artifact_and_leaves_nothing_behind(tmp_path, monkeypatch):
    old = _write(tmp_path / "run")

    def fail(tensors, filename):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "run", seed=1)
    read = artifact_read(tmp_path / "run")
    assert read.sha256 == old.sha256
    _assert_equal_tensors(read.tensors, _tensors())
    assert _leftovers(tmp_path) == []


def test_a_failed_rename_into_place_rolls_back(tmp_path, monkeypatch):
    old = _write(tmp_path / "run")
    rename = os.rename
    calls = []

    def rename_failing_second(source, target):
        calls.append((source, target))
        if len(calls) == 2:  # 1: old artifact aside, 2: new one into place, 3: the rollback
            raise OSError("rename failed")
        rename(source, target)

    monkeypatch.setattr(os, "rename", rename_failing_second)
    with pytest.raises(OSError, match="rename failed"):
        _write(tmp_path / "run", seed=1)
    monkeypatch.undo()
    assert len(calls) == 3
    assert artifact_read(tmp_path / "run").sha256 == old.sha256
    assert _leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "save_file", lambda tensors, filename: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        _write(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_invalid_inputs_are_rejected_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="config must be a dict, got list"):
        _write(tmp_path / "run", config=[1, 2])
    with pytest.raises(ValueError, match="'w': ndarray"):
        _write(tmp_path / "run", tensors={"w": torch.zeros(2).numpy()})
    assert list(tmp_path.iterdir()) == []


def test_reading_a_directory_that_is_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match=SUMS_NAME):
        artifact_read(tmp_path)
    (tmp_path / SUMS_NAME).write_text("not a checksum line\n")
    with pytest.raises(ArtifactError, match="expected '<hex>  <name>'"):
        artifact_read(tmp_path)
