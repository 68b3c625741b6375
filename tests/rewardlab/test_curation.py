"""A DT2IT curation round (rewardlab.curation) on hand-built scores: flip, send back to humans, or keep."""

from __future__ import annotations

import numpy as np
import pytest

from rewardlab.curation import CurationConfig, curation_round, decision_counts
from rewardlab.scoring import Scores

NAN = float("nan")
A_BETTER, B_BETTER, TIE = 1.0, -1.0, 0.0


def scores(member_p: list[list[float]], noise: list[float], *, image_p=None, text_p=None) -> Scores:
    """Scores of P pairs from every member's P(a better) [K, P] and the noise scores; other fields unused.

    The image's evidence is the members' whole verdict unless `image_p` says otherwise; the text-only twin
    is unsure (0.5) unless `text_p` says otherwise.
    """
    member = np.array(member_p, dtype=np.float32)
    p = member.mean(0)
    zeros = np.zeros_like(p)
    return Scores(
        p_a_better=p,
        entropy=zeros,
        mutual_info=zeros,
        text_only_p_a_better=np.full_like(p, 0.5) if text_p is None else np.array(text_p, dtype=np.float32),
        shortcut_score=zeros,
        noise_score=np.array(noise, dtype=np.float32),
        weight=np.ones_like(p),
        member_p=member,
        image_member_p=member if image_p is None else np.array(image_p, dtype=np.float32),
    )


def decide(member_p, noise, label, *, human=None, gold=None, image_p=None, text_p=None, **config):
    count = len(label)
    return curation_round(
        scores(member_p, noise, image_p=image_p, text_p=text_p),
        np.array(label, dtype=float),
        human=np.zeros(count, bool) if human is None else np.array(human),
        gold=np.zeros(count, bool) if gold is None else np.array(gold),
        config=CurationConfig(**config),
    ).tolist()


def test_a_prior_label_every_member_rejects_with_confidence_is_flipped():
    # label: a better; both members give a 0.02 and 0.05, i.e. 0.98 and 0.95 ≥ 0.9 for b
    assert decide([[0.02], [0.05]], [0.97], [A_BETTER]) == ["flip"]
    # the mirror case: label b better, members give a 0.97 and 0.93
    assert decide([[0.97], [0.93]], [0.95], [B_BETTER]) == ["flip"]


def test_a_label_the_text_only_twin_also_rejects_is_never_flipped():
    # every member and the image's evidence reject "a better", but so does the twin (0.1 for a): the model
    # may only be following the text, so the label goes back to humans
    assert decide([[0.02], [0.05]], [0.97], [A_BETTER], text_p=[0.1], reannotate_fraction=1.0) == ["reannotate"]
    # the same pair with a twin that agrees with the label is flipped on the image's evidence
    assert decide([[0.02], [0.05]], [0.97], [A_BETTER], text_p=[0.8]) == ["flip"]


def test_a_flip_needs_the_image_evidence_of_every_member():
    # the members' whole verdicts are confident, but one member's image evidence gives b only 0.6
    assert decide([[0.02], [0.05]], [0.97], [A_BETTER], image_p=[[0.02], [0.4]], reannotate_fraction=1.0) == [
        "reannotate"
    ]


def test_image_evidence_the_whole_verdict_does_not_share_flips_nothing():
    # every member's image evidence rejects "a better", but one member's whole verdict gives b only 0.6:
    # the words outweigh what the image showed it, so humans decide
    assert decide([[0.02], [0.4]], [0.97], [A_BETTER], image_p=[[0.02], [0.02]], reannotate_fraction=1.0) == [
        "reannotate"
    ]


def test_one_unsure_member_prevents_a_flip():
    # member 1 gives b only 1 - 0.3 = 0.7 < 0.9: the label goes back to humans instead
    assert decide([[0.02], [0.3]], [0.84], [A_BETTER], reannotate_fraction=1.0) == ["reannotate"]


def test_a_confident_ensemble_whose_held_out_score_is_unsure_does_not_flip():
    # every member is confident, but the honest (out-of-fold) noise score 0.8 is under flip_confidence 0.9
    assert decide([[0.02], [0.05]], [0.8], [A_BETTER], reannotate_fraction=1.0) == ["reannotate"]


def test_a_human_label_is_never_flipped_by_the_model():
    assert decide([[0.01], [0.01]], [0.99], [A_BETTER], human=[True], reannotate_fraction=1.0) == ["reannotate"]


def test_a_gold_pair_is_never_touched():
    assert decide([[0.01], [0.01]], [0.99], [A_BETTER], gold=[True], reannotate_fraction=1.0) == ["keep"]


def test_unlabeled_and_tie_pairs_are_kept():
    # pair 0 unlabeled (no noise score), pair 1 a tie the model finds one-sided
    decisions = decide([[0.01, 0.01], [0.01, 0.01]], [NAN, 0.98], [NAN, TIE], reannotate_fraction=1.0)
    assert decisions == ["keep", "keep"]


def test_a_label_the_model_agrees_with_is_kept():
    assert decide([[0.9], [0.8]], [0.15], [A_BETTER], reannotate_fraction=1.0) == ["keep"]


def test_reannotation_takes_the_highest_noise_scores_within_the_budget():
    # 10 labeled pairs, fraction 0.3: int(0.3 · 10) = 3 go back; members unsure, so nothing flips
    noise = [0.55, 0.9, 0.6, 0.2, 0.85, 0.7, 0.1, 0.95, 0.3, 0.65]
    member_p = [[0.4] * 10, [0.6] * 10]
    decisions = decide(member_p, noise, [A_BETTER] * 10, reannotate_fraction=0.3)
    assert [i for i, d in enumerate(decisions) if d == "reannotate"] == [1, 4, 7]  # noise 0.9, 0.85, 0.95
    assert decision_counts(np.array(decisions, dtype=object)) == {"keep": 7, "reannotate": 3, "flip": 0}


def test_noise_at_or_under_the_threshold_is_not_reannotated():
    decisions = decide([[0.5, 0.5], [0.5, 0.5]], [0.5, 0.51], [A_BETTER, A_BETTER], reannotate_fraction=1.0)
    assert decisions == ["keep", "reannotate"]


def test_the_budget_counts_labeled_pairs_only_and_flips_are_outside_it():
    # 4 pairs, 2 labeled: int(0.5 · 2) = 1 reannotation; the flip of pair 0 does not use it
    member_p = [[0.01, 0.3, 0.3, 0.3], [0.01, 0.6, 0.6, 0.6]]
    decisions = decide(member_p, [0.99, 0.8, NAN, NAN], [A_BETTER, A_BETTER, NAN, NAN], reannotate_fraction=0.5)
    assert decisions == ["flip", "reannotate", "keep", "keep"]


def test_curation_config_rejects_a_share_outside_zero_and_one():
    with pytest.raises(ValueError, match="reannotate_fraction must be in"):
        CurationConfig(reannotate_fraction=1.5)
