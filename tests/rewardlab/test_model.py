"""Reward heads (rewardlab.model): K independent members in one tensor, and a text-only twin blind to images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewardlab.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig
from rewardlab.features import Features
from rewardlab.lexical import FACT_FEATURES
from rewardlab.model import EnsembleBag, EnsembleLinear, heads_build

PAIRS, TEXT_DIM, TOKENS, TOKEN_FEATURES, WORDS, BUCKETS = 6, 8, 5, 7, 4, 64
DIMS = {"text_dim": TEXT_DIM, "token_features": TOKEN_FEATURES}


def run_config(seed: int = 0, members: int = 3) -> RunConfig:
    return RunConfig(
        EncoderConfig(lexical_buckets=BUCKETS),
        ModelConfig(members=members, width=8, heads=2, lexical_dim=4),
        TrainConfig(seed=seed),
    )


def random_features(seed: int = 0) -> Features:
    """PAIRS pairs over random texts (prompt, a, b, facts rows of their own) and one image each."""
    rng = np.random.default_rng(seed)
    texts = 4 * PAIRS
    tokens = rng.normal(size=(PAIRS, TOKENS, TOKEN_FEATURES)).astype(np.float32)
    tokens[..., 0] = 1.0  # every token present
    return Features(
        text_emb=rng.normal(size=(texts, TEXT_DIM)).astype(np.float32),
        text_bow=rng.integers(1, BUCKETS, size=(texts, WORDS)).astype(np.int32),
        image_tokens=tokens,
        prompt=np.arange(PAIRS),
        a=np.arange(PAIRS, 2 * PAIRS),
        b=np.arange(2 * PAIRS, 3 * PAIRS),
        facts=np.arange(3 * PAIRS, 4 * PAIRS),
        image=np.arange(PAIRS),
        support_a=rng.random((PAIRS, len(FACT_FEATURES))).astype(np.float32),
        support_b=rng.random((PAIRS, len(FACT_FEATURES))).astype(np.float32),
    )


def test_shared_applies_each_member_to_the_same_input():
    layer = EnsembleLinear(3, 4, 5, torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 6, 4)
    looped = torch.stack([x @ layer.weight[k] + layer.bias[k] for k in range(3)])
    assert layer.shared(x).shape == (3, 2, 6, 5)
    assert torch.allclose(layer.shared(x), looped, atol=1e-6)


def test_forward_applies_member_k_to_input_k():
    layer = EnsembleLinear(3, 4, 5, torch.Generator().manual_seed(0))
    x = torch.randn(3, 2, 6, 4)  # member axis first
    looped = torch.stack([x[k] @ layer.weight[k] + layer.bias[k] for k in range(3)])
    assert torch.allclose(layer(x), looped, atol=1e-6)


def test_member_zero_output_does_not_touch_member_one_weights():
    layer = EnsembleLinear(2, 4, 5, torch.Generator().manual_seed(0))
    layer.shared(torch.randn(6, 4))[0].sum().backward()
    assert layer.weight.grad[0].abs().sum() > 0
    assert torch.count_nonzero(layer.weight.grad[1]) == 0
    assert torch.count_nonzero(layer.bias.grad[1]) == 0


def test_each_bag_member_reads_only_its_own_word_table():
    bag = EnsembleBag(2, BUCKETS, 3, torch.Generator().manual_seed(0))
    ids = torch.tensor([[1, 5, 0], [7, 0, 0]])  # 0 is padding
    out = bag(ids)
    assert out.shape == (2, 2, 3)
    # the weight is [member, word, dim]; the mean leaves the padding out
    assert torch.allclose(out[1, 1], bag.weight[1, 7])
    assert torch.allclose(out[0, 0], (bag.weight[0, 1] + bag.weight[0, 5]) / 2)
    out[0].sum().backward()
    touched = bag.weight.grad.abs().sum(-1).nonzero().tolist()
    assert touched == [[0, 1], [0, 5], [0, 7]]  # member 0's rows only


@pytest.mark.parametrize("multimodal", [True, False])
def test_rewards_are_member_by_pair(multimodal):
    heads = heads_build(run_config(members=3), DIMS, multimodal=multimodal)
    reward_a, reward_b = heads(random_features().batch(np.arange(PAIRS)))
    assert reward_a.shape == reward_b.shape == (3, PAIRS)
    assert torch.isfinite(reward_a).all() and torch.isfinite(reward_b).all()


def test_text_only_twin_ignores_the_image():
    heads = heads_build(run_config(), DIMS, multimodal=False)
    batch = random_features().batch(np.arange(PAIRS))
    before = heads(batch)
    batch["tokens"] = torch.randn_like(batch["tokens"])
    after = heads(batch)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_multimodal_heads_read_the_image():
    heads = heads_build(run_config(), DIMS, multimodal=True)
    batch = random_features().batch(np.arange(PAIRS))
    before = heads(batch)[0]
    batch["tokens"][..., 1:] = torch.randn_like(batch["tokens"][..., 1:])
    assert not torch.allclose(before, heads(batch)[0])


def test_an_image_without_tokens_gives_finite_rewards():
    heads = heads_build(run_config(), DIMS, multimodal=True)
    batch = random_features().batch(np.arange(PAIRS))
    batch["tokens"] = torch.zeros_like(batch["tokens"])  # column 0 = 0: nothing present
    reward_a, _ = heads(batch)
    assert torch.isfinite(reward_a).all()


def test_an_image_with_no_tokens_and_no_facts_adds_nothing_whatever_the_answers_say():
    heads = heads_build(run_config(), DIMS, multimodal=True)
    with torch.no_grad():  # biases start at 0; a trained model's do not, and padding must still pool nothing
        for name, param in heads.named_parameters():
            if name.endswith("bias"):
                param.normal_()
    batch = random_features().batch(np.arange(PAIRS))
    batch["tokens"] = torch.zeros_like(batch["tokens"])
    batch["support_a"], batch["support_b"] = torch.zeros_like(batch["support_a"]), torch.zeros_like(batch["support_b"])
    batch["facts_emb"] = torch.zeros_like(batch["facts_emb"])
    text, image = heads.parts(batch)
    assert torch.count_nonzero(text) > 0  # the words still move r_text ...
    assert torch.equal(image, torch.zeros_like(image))  # ... but r_image is what looking adds: nothing here


def test_r_image_reads_the_objects_not_the_order_they_are_listed_in():
    heads = heads_build(run_config(), DIMS, multimodal=True)
    batch = random_features().batch(np.arange(PAIRS))
    before = heads.parts(batch)[1]
    batch["tokens"] = batch["tokens"].flip(1)  # the same objects, listed in another order: nothing moves
    assert torch.allclose(before, heads.parts(batch)[1], atol=1e-5)
    batch["tokens"][..., 2:] = batch["tokens"][..., 2:] + torch.randn(PAIRS, 1, TOKEN_FEATURES - 2)
    assert not torch.allclose(before, heads.parts(batch)[1], atol=1e-3)


def test_same_seed_builds_identical_weights_and_another_seed_differs():
    first = heads_build(run_config(seed=3), DIMS, multimodal=True).state_dict()
    again = heads_build(run_config(seed=3), DIMS, multimodal=True).state_dict()
    other = heads_build(run_config(seed=4), DIMS, multimodal=True).state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["response.weight"], other["response.weight"])


def test_the_twin_and_the_multimodal_ensemble_start_differently():
    multimodal = heads_build(run_config(), DIMS, multimodal=True).state_dict()
    text_only = heads_build(run_config(), DIMS, multimodal=False).state_dict()
    assert not torch.equal(multimodal["response.weight"], text_only["response.weight"])
