"""The vision-language backend (rewardlab.vlm) on a tiny random Idefics3, on the CPU.

The model is built from its config class and saved to a temporary directory with an offline tokenizer and
processor (`rewardlab.vlm.tiny`), then loaded back through the same local-path code a real checkpoint takes.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from rewardlab.artifacts import ArtifactError
from rewardlab.cli import main
from rewardlab.data import Dataset
from rewardlab.labels import samples_build
from rewardlab.pipeline import model_load, model_score_pairs, model_train
from rewardlab.readers import load_dataset
from rewardlab.scoring import SCORE_FIELDS
from rewardlab.synthetic import SyntheticConfig, write_package
from rewardlab.vlm.batches import Collator, conversation, length_batches
from rewardlab.vlm.config import VLMConfig, VLMRunConfig, vlm_train_config
from rewardlab.vlm.model import last_token_index, vlm_net_build
from rewardlab.vlm.reward_model import TrainedVLM, vlm_load
from rewardlab.vlm.tiny import tiny_vlm_write
from rewardlab.vlm.train import Targets, get_lr, train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNLABELED = 4  # the last pairs of the dataset lose their labels: scored, but with no noise_score
LR, STEPS = 1e-2, 20  # the repeated batch: warmup and cosine decay, as a member's fit has them


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_vlm_write(tmp_path_factory.mktemp("vlm") / "tiny-idefics3")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    path = write_package(
        SyntheticConfig(n_items=20, seed=3, prior_noise=0.2), tmp_path_factory.mktemp("data") / "p.zip"
    )
    full = load_dataset(path)
    keep = len(full.pairs) - UNLABELED
    yield Dataset(full.items, full.pairs, [label for label in full.labels if label.pair < keep], full.images)
    full.close()


def vlm_run(tiny_dir, *, lora: bool = True, **train) -> VLMRunConfig:
    vlm = VLMConfig(model_dir=str(tiny_dir), lora=lora, lora_rank=4, lora_alpha=8, lora_dropout=0.0)
    return VLMRunConfig(vlm, vlm_train_config(**({"lr": 3e-3, "batch_size": 4} | train)))


@pytest.fixture(scope="module")
def trained(tiny_dir, dataset, tmp_path_factory):
    """A run through the library's front door, with its artifact."""
    out = tmp_path_factory.mktemp("runs") / "run-1"
    model, scores, metrics = model_train(dataset, vlm_run(tiny_dir), out=out, progress=False)
    return model, scores, metrics, out


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_loss_falls_on_a_repeated_batch(tiny_dir, dataset, lora):
    config = vlm_run(tiny_dir, lora=lora).vlm
    model, processor = vlm_net_build(config, device="cpu", seed=0)
    trainable = [name for name, _ in model.trainable()]
    if lora:
        assert trainable and all("lora_" in name or name.startswith("head.") for name in trainable)
    else:
        assert len(trainable) == len(list(model.parameters()))
    samples = samples_build(dataset, vlm_train_config())
    batch = np.arange(6)
    inputs = Collator(processor, dataset, max_response_tokens=64).encode(samples.pair[batch], multimodal=True)
    assert inputs["input_ids"].shape[0] == 12 and "pixel_values" in inputs
    targets = Targets.on("cpu", samples, samples.weight)[batch]
    optimizer = torch.optim.AdamW([p for _, p in model.trainable()], lr=LR)
    losses = [
        train_step(model, inputs, targets, optimizer, lr=get_lr(step, STEPS, LR), grad_clip=1.0).item()
        for step in range(STEPS)
    ]
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses


def test_a_run_scores_every_pair_with_finite_fields(trained, dataset):
    model, scores, metrics, _ = trained
    pairs = len(dataset.pairs)
    for name in SCORE_FIELDS:
        values = getattr(scores, name)
        assert values.shape == (pairs,), name
        finite = np.isfinite(values)
        if name == "noise_score":  # NaN exactly where a pair has no label
            assert finite[:-UNLABELED].all() and not finite[-UNLABELED:].any()
        else:
            assert finite.all(), name
    assert scores.member_p.shape == (2, pairs)
    assert ((scores.p_a_better > 0) & (scores.p_a_better < 1)).all()
    assert metrics["backend"] == "vlm" and metrics["samples"] == pairs - UNLABELED and metrics["pairs"] == pairs
    assert 0.0 <= metrics["labels"]["accuracy"] <= 1.0
    assert {"train_multimodal_pairs_per_second", "score_pairs_per_second", "peak_memory_bytes"} <= set(metrics["vlm"])
    losses = [entry for entry in metrics["history"]["multimodal"] if "held_out_loss" in entry]
    assert len(losses) == 2 and all(np.isfinite(entry["held_out_loss"]) for entry in losses)


def test_a_saved_model_loads_through_the_local_path_and_scores_the_same(trained, dataset, tiny_dir):
    _, scores, _, out = trained
    loaded, artifact = model_load(out)
    assert isinstance(loaded, TrainedVLM)
    assert artifact.config["backend"] == "vlm" and artifact.config["model_dir"] == str(tiny_dir)
    again = model_score_pairs(loaded, dataset)
    for name in SCORE_FIELDS:
        np.testing.assert_allclose(getattr(again, name), getattr(scores, name), atol=1e-5, err_msg=name)


def test_an_artifact_over_a_changed_base_model_is_refused(trained):
    _, _, _, out = trained
    _, artifact = model_load(out)
    moved = replace(artifact, config={**artifact.config, "model_fingerprint": "0" * 16})
    with pytest.raises(ArtifactError, match="not the one this run trained on"):
        vlm_load(moved)


def test_egt_curates_from_a_reference_and_the_curriculum_starts_with_the_easy_half(tiny_dir, dataset):
    """The reference contradicts every label, barely: every sample is a high-entropy contradiction."""
    samples = samples_build(dataset, vlm_train_config())
    reference = np.full(len(dataset.pairs), 0.5, dtype=np.float32)
    reference[samples.pair] = np.where(samples.sign > 0, 0.45, 0.55)
    run = vlm_run(tiny_dir, max_epochs=1, curation_fraction=0.25, curriculum_start=0.5, curriculum_epochs=2)
    _, _, metrics = model_train(dataset, run, reference_p=reference, progress=False)
    assert metrics["curated"] == round(0.25 * len(samples))
    # K = 2: without curation each sample trains one member; the curriculum's first epoch keeps the easiest half
    assert metrics["vlm"]["train_text_only_pairs"] == len(samples)
    assert 0 < metrics["vlm"]["train_multimodal_pairs"] <= len(samples) // 2


def test_length_batches_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 1000, size=400)
    index = np.arange(400) + 1000  # batches hold indices, lengths are aligned with them
    batches = length_batches(index, lengths, 8, rng=np.random.default_rng(1), window=10)
    assert sorted(np.concatenate(batches).tolist()) == index.tolist()
    spread = np.mean([np.ptp(lengths[batch - 1000]) for batch in batches])
    random_spread = np.mean([np.ptp(chunk) for chunk in np.split(lengths, 50)])
    assert spread < 0.2 * random_spread
    again = length_batches(index, lengths, 8, rng=np.random.default_rng(2), window=10)
    assert [b.tolist() for b in again] != [b.tolist() for b in batches]  # each epoch its own batches
    scoring = np.concatenate(length_batches(index, lengths, 8))
    assert (np.diff(lengths[scoring - 1000]) <= 0).all()


def test_the_facts_go_with_the_image_and_the_twin_reads_neither(dataset):
    item = next(item for item in dataset.items if item.facts)
    seen = conversation(item, "Two red balls.", multimodal=True)
    blind = conversation(item, "Two red balls.", multimodal=False)
    assert seen[0]["content"][0] == {"type": "image"} and "Facts about the image" in seen[0]["content"][1]["text"]
    assert blind[0]["content"] == [{"type": "text", "text": item.prompt}]
    assert seen[1] == blind[1] == {"role": "assistant", "content": [{"type": "text", "text": "Two red balls."}]}


def test_the_reward_is_read_at_the_last_real_token_on_either_padding_side():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 3]
    assert last_token_index(left).tolist() == [3, 3]


def test_configs_validate_and_round_trip(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="model_dir"):
        VLMConfig(model_dir="")
    with pytest.raises(ValueError, match="members must be at least 2"):
        VLMConfig(model_dir=str(tiny_dir), members=1)
    with pytest.raises(ValueError, match="dtype must be one of"):
        VLMConfig(model_dir=str(tiny_dir), dtype="float8")
    run = vlm_run(tiny_dir)
    assert VLMRunConfig.from_dict(run.to_dict()) == run
    with pytest.raises(ValueError, match="not a local model directory"):
        vlm_net_build(VLMConfig(model_dir=str(tmp_path)), device="cpu", seed=0)


def test_the_cli_scores_and_evaluates_a_vlm_artifact(trained, tmp_path, capsys):
    _, _, _, out = trained
    package = write_package(SyntheticConfig(n_items=6, seed=5, prior_noise=0.2), tmp_path / "other.zip")
    capsys.readouterr()

    assert main(["eval", str(out), str(package), "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["labels"]["n"] > 0 and 0.0 <= metrics["labels"]["accuracy"] <= 1.0
    assert main(["score", str(out), str(package), "--out", str(tmp_path / "s.jsonl"), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows and all(0.0 <= row["p_a_better"] <= 1.0 for row in rows)
