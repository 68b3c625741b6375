"""What keeps the loop from amplifying a text shortcut (issue 14): the image's own evidence, contrast pairs
the text cannot answer, noise scores that do not count what the text-only twin shares, and EGT curation
that keeps the pairs the twin gets wrong."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rewardlab.config import TrainConfig
from rewardlab.contrast import contrast_add
from rewardlab.labels import Samples
from rewardlab.model import heads_build
from rewardlab.scoring import scores_compute
from rewardlab.train import entropy_curation, predict_parts
from tests.rewardlab.test_model import DIMS, PAIRS, random_features, run_config

A_BETTER, B_BETTER = 1.0, -1.0


def labels(signs: list[float], weight: float = 1.0) -> Samples:
    count = len(signs)
    return Samples(
        pair=np.arange(count, dtype=np.int64),
        sign=np.array(signs, np.float32),
        margin=np.zeros(count, np.float32),
        weight=np.full(count, weight, np.float32),
    )


def shared_prompt_features():
    """PAIRS pairs, one image each, the first four asking one prompt and the last two another."""
    features = random_features()
    features.prompt = np.array([0, 0, 0, 0, 1, 1])
    return features


def test_contrast_pairs_hold_the_chosen_answer_under_two_images_or_two_answers_under_one():
    features = shared_prompt_features()
    samples = labels([A_BETTER, B_BETTER, A_BETTER, B_BETTER, A_BETTER, 0.0])
    folds = np.arange(PAIRS) % 3
    extended, joined, joined_folds = contrast_add(features, samples, folds, per_label=3, weight=0.5, seed=0)
    added = joined.take(slice(PAIRS, None))
    assert len(added) > 0 and (added.sign == 1).all() and (added.margin == 0).all()
    assert np.allclose(added.weight, 0.5)
    source = joined_folds[PAIRS:]
    chosen_answers = {int(features.a[p] if samples.sign[p] > 0 else features.b[p]) for p in range(5)}
    for row, fold in zip(added.pair, source, strict=True):
        same_text = extended.a[row] == extended.b[row]
        same_image = extended.image[row] == extended.image_b[row]
        assert same_text != same_image  # one of the two sides differs, never both, never neither
        assert extended.a[row] in chosen_answers and extended.b[row] in chosen_answers
        origin = np.flatnonzero(features.image == extended.image[row])[0]
        assert fold == folds[origin]  # the contrast pair stays in its label's fold
        if not same_text:  # an answer swap asks the label's own prompt
            assert extended.prompt[row] == features.prompt[origin]
    assert (extended.side_b_images[:PAIRS] == features.image).all()  # the labeled pairs keep one image


def test_no_contrast_pairs_from_ties_or_when_turned_off():
    features, folds = shared_prompt_features(), np.zeros(PAIRS, np.int64)
    ties = labels([0.0] * PAIRS)
    assert contrast_add(features, ties, folds, per_label=2, weight=0.5, seed=0)[1] is ties
    decisive = labels([A_BETTER] * PAIRS)
    assert contrast_add(features, decisive, folds, per_label=0, weight=0.5, seed=0)[1] is decisive


def test_a_contrast_pair_moves_only_the_image_reward():
    features = shared_prompt_features()
    extended, joined, _ = contrast_add(
        features, labels([A_BETTER] * PAIRS), np.zeros(PAIRS, np.int64), per_label=2, weight=1.0, seed=0
    )
    image_pairs = joined.pair[PAIRS:][extended.a[joined.pair[PAIRS:]] == extended.b[joined.pair[PAIRS:]]]
    heads = heads_build(run_config(), DIMS, multimodal=True)
    text, image = heads.parts(extended.batch(image_pairs))
    assert torch.allclose(text[:, 0], text[:, 1])  # same words on both sides: no text-only difference
    assert not torch.allclose(image[:, 0], image[:, 1])  # the images differ, so the image reward does
    total, image_logits = predict_parts(heads, extended, image_pairs)
    assert np.allclose(total, image_logits, atol=1e-5)


def test_side_b_of_a_contrast_pair_sees_its_own_image_and_the_label_rows_their_one_image():
    features = shared_prompt_features()
    extended, joined, _ = contrast_add(
        features, labels([A_BETTER] * PAIRS), np.zeros(PAIRS, np.int64), per_label=2, weight=1.0, seed=0
    )
    rows = np.concatenate([np.arange(PAIRS), joined.pair[PAIRS:]])  # labels and contrast pairs in one batch
    heads = heads_build(run_config(), DIMS, multimodal=True)
    _, mixed = heads.parts(extended.batch(rows))
    shown_b = replace(extended, image=extended.side_b_images, image_b=None)  # every pair on side b's image
    _, alone_a = heads.parts(replace(extended, image_b=None).batch(rows))
    _, alone_b = heads.parts(shown_b.batch(rows))
    assert torch.allclose(mixed[:, 0], alone_a[:, 0], atol=1e-5)
    assert torch.allclose(mixed[:, 1], alone_b[:, 1], atol=1e-5)


def test_the_twin_has_no_image_part():
    heads = heads_build(run_config(), DIMS, multimodal=False)
    total, image = predict_parts(heads, random_features())
    assert image is None and total.shape == (3, PAIRS)


def logits(values: list[float], members: int = 2) -> np.ndarray:
    return np.tile(np.array(values, np.float32), (members, 1))


def test_noise_score_counts_the_image_evidence_not_what_the_twin_shares():
    # pair 0: the full model and the twin both reject the label "a better", the image's evidence backs it
    #   (a correct label the style misleads on); pair 1: the image rejects it too (a wrong label)
    label = np.array([A_BETTER, A_BETTER])
    scores = scores_compute(
        logits([-3.0, -3.0]),
        logits([-3.0, -3.0]),
        np.array([-1, -1]),
        label,
        sfc=True,
        image_logits=logits([1.0, -2.0]),
    )
    assert scores.noise_score[0] < 0.5 < scores.noise_score[1]
    # both pairs are reported as ones the text alone answers: the twin reaches the model's verdict
    assert (scores.shortcut_score > 0.9).all()


def test_without_an_image_split_the_twin_shared_contradiction_is_taken_out():
    label = np.array([A_BETTER, A_BETTER])
    scores = scores_compute(logits([-3.0, -3.0]), logits([-3.0, 3.0]), np.array([-1, -1]), label, sfc=False)
    assert scores.noise_score[0] < 0.05  # the twin contradicts as much as the model: no evidence
    assert scores.noise_score[1] > 0.9  # the twin agrees with the label, the model does not


def test_egt_curation_keeps_the_labels_the_twin_gets_wrong_unless_the_model_rejects_them_more():
    # 8 labels "a better"; the model rejects all of them (p 0.4), the twin rejects the last four harder (0.1)
    samples = labels([A_BETTER] * 8)
    model_logits = np.full(8, np.log(0.4 / 0.6), np.float32)
    twin_logits = np.array([2.0] * 4 + [np.log(0.1 / 0.9)] * 4, np.float32)
    config = TrainConfig(curation_fraction=0.5)
    curation = entropy_curation(model_logits, samples, config, text_logits_oof=twin_logits)
    assert not curation.active[:4].all() and curation.active[4:].all()
    # without the twin's view, the same budget would reach the labels the twin gets wrong
    assert entropy_curation(model_logits, samples, config).curated == 4
