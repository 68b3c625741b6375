"""The command line (`python -m rewardlab train|score|eval`).

`train` and one failure run as other programs run them, in a subprocess; the other commands call `main` in
this process, as `python -m rewardlab` does, since each new interpreter spends seconds importing transformers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

import rewardlab
from rewardlab.cli import main
from rewardlab.pipeline import model_load, model_save
from rewardlab.synthetic import SyntheticConfig, write_package
from tests.rewardlab.tiny import write_tiny_bert

ITEMS = 60
SCORE_FIELDS = (
    "p_a_better",
    "entropy",
    "mutual_info",
    "text_only_p_a_better",
    "shortcut_score",
    "noise_score",
    "weight",
)  # API.md, "Model scores on a pair"
REPO = Path(rewardlab.__file__).parent.parent

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rewardlab_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m rewardlab ARGS` in a new interpreter, with one torch thread (see `one_torch_thread`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rewardlab", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def run_main(capsys, *args: str | Path) -> tuple[int, str, str]:
    """Return the exit status, stdout and stderr of `python -m rewardlab ARGS`, run in this process."""
    capsys.readouterr()
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "embedding-cache"  # shared with test_pipeline: same scenes, same entries


@pytest.fixture(scope="module")
def data(workspace) -> Path:
    """Prior labels, a fifth of them flipped, and gold pairs on a fifth of the items."""
    config = SyntheticConfig(n_items=ITEMS, seed=1, prior_noise=0.2, gold_share=0.2)
    return write_package(config, workspace / "data.zip")


@pytest.fixture(scope="module")
def trained(workspace, data, cache_dir):
    """`train` run once for the module: (completed process, model directory)."""
    out = workspace / "model"
    text_encoder = write_tiny_bert(workspace / "tiny-bert")
    result = rewardlab_cli(
        "train", data, "--out", out, "--seed", "0", "--max-epochs", "3", "--members", "2",
        "--text-encoder", text_encoder, "--device", "cpu", "--cache-dir", cache_dir, "--quiet",
    )  # fmt: skip
    return result, out


def package_rows(path: Path) -> list[dict]:
    with zipfile.ZipFile(path) as archive:
        return [json.loads(line) for line in archive.read("items.jsonl").splitlines()]


def test_train_writes_a_model_and_prints_its_summary(trained):
    result, out = trained
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["model"] == str(out)
    assert 0.0 <= summary["held_out"]["accuracy"] <= 1.0
    assert summary["held_out"]["n"] == ITEMS  # every pair has one prior label
    assert "gold_accuracy" in summary["held_out"]
    assert {"config.json", "weights.safetensors", "metrics.json", "SHA256SUMS"} <= {p.name for p in out.iterdir()}


def test_train_stores_the_settings_it_was_given(trained):
    _, out = trained
    run = json.loads((out / "config.json").read_text())["run"]
    assert (run["model"]["members"], run["train"]["max_epochs"], run["train"]["seed"]) == (2, 3, 0)


def test_score_writes_every_score_field_for_every_pair_in_package_order(trained, data, cache_dir, workspace, capsys):
    _, model = trained
    out = workspace / "scores.jsonl"
    status, stdout, stderr = run_main(capsys, "score", model, data, "--out", out, "--cache-dir", cache_dir, "--quiet")
    assert status == 0, stderr
    assert json.loads(stdout)["pairs"] == ITEMS
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    items = package_rows(data)
    assert [row["external_id"] for row in rows] == [item["external_id"] for item in items]
    assert [row["pair"] for row in rows] == [item["pairs"][0] for item in items] == [["r0", "r1"]] * ITEMS
    for row in rows:
        assert set(SCORE_FIELDS) <= set(row)
        assert all(isinstance(row[name], float) for name in SCORE_FIELDS)  # every pair is labeled: no null
        assert 0.0 <= row["p_a_better"] <= 1.0 and 0.0 <= row["entropy"] <= 1.0
    assert len({row["model"] for row in rows}) == 1


def test_eval_prints_metrics_against_the_labels_and_gold(trained, data, cache_dir, capsys):
    _, model = trained
    status, stdout, stderr = run_main(capsys, "eval", model, data, "--cache-dir", cache_dir, "--quiet")
    assert status == 0, stderr
    metrics = json.loads(stdout)
    assert 0.0 <= metrics["labels"]["accuracy"] <= 1.0
    assert metrics["labels"]["n"] == ITEMS
    assert metrics["gold"]["n"] == ITEMS // 5
    assert len(metrics["model"]) == 64  # the artifact's SHA-256


def test_bad_json_in_data_exits_2_naming_the_line(workspace):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, "PNG")
    first = {
        "external_id": "e1",
        "image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
        "prompt": "Is there a red square?",
        "responses": [{"id": "r0", "text": "Yes."}, {"id": "r1", "text": "No."}],
    }
    bad = workspace / "bad.jsonl"
    bad.write_text(json.dumps(first) + '\n{"external_id": "e2", oops\n')
    result = rewardlab_cli("train", bad, "--out", workspace / "never", "--quiet")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "line 2: not valid JSON" in result.stderr
    assert result.stdout == "" and not (workspace / "never").exists()


@pytest.mark.parametrize("command", ["eval", "score"])
def test_a_missing_model_directory_exits_2(command, workspace, data, capsys):
    out = ["--out", workspace / "never.jsonl"] if command == "score" else []
    status, stdout, stderr = run_main(capsys, command, workspace / "no-such-model", data, *out, "--quiet")
    assert status == 2
    assert stderr.startswith("error: ") and "no-such-model" in stderr
    assert stdout == "" and not (workspace / "never.jsonl").exists()


def test_a_model_trained_on_a_gpu_evaluates_on_the_default_device(trained, data, cache_dir, workspace, capsys):
    _, model = trained
    gpu_model, artifact = model_load(model)
    gpu_model.run = replace(gpu_model.run, train=replace(gpu_model.run.train, device="cuda"))
    model_save(gpu_model, workspace / "gpu-model", artifact.metrics)
    # no --device: API.md's default is $REWARDLAB_DEVICE, else cuda when available, else cpu
    status, stdout, stderr = run_main(
        capsys, "eval", workspace / "gpu-model", data, "--cache-dir", cache_dir, "--quiet"
    )
    assert status == 0, stderr
    assert json.loads(stdout)["labels"]["n"] == ITEMS
