"""Priorities and surfacing as a pure function of the scores, labels and the campaign's settings."""

from __future__ import annotations

import numpy as np
import pytest

from annotate.services.priorities import Signals, priorities_compute, weights_errors

NAN = np.nan


def _signals(**overrides) -> Signals:
    """Four pairs: a confident clean one, an uncertain one, a contradicted one, and one with split labels."""
    base = {
        "entropy": np.array([0.1, 0.99, 0.5, 0.2]),
        "mutual_info": np.array([0.0, 0.2, 0.05, 0.01]),
        "shortcut": np.array([0.5, 0.5, 0.2, 0.5]),
        "noise": np.array([0.05, NAN, 0.95, 0.1]),
        "labels": np.array([3.0, 0.0, 3.0, 2.0]),
        "agreement": np.array([1.0, 1.0, 1.0, 0.5]),
        "needed": np.array([3, 3, 3, 3]),
        "gold": np.array([False, False, False, False]),
    }
    return Signals(**(base | overrides))


def test_each_reason_surfaces_its_pair_and_surfaced_pairs_come_first():
    plan = priorities_compute(_signals(), weights={}, thresholds={}, max_needed=5)
    assert plan.reasons == [[], ["uncertain"], ["suspected_noise"], ["disagreement"]]
    assert plan.priority[1:].min() > plan.priority[0]
    assert all(p >= 1.0 for p in plan.priority[1:]) and plan.priority[0] < 1.0


def test_a_surfaced_pair_asks_for_one_more_label_than_it_has_up_to_the_bound():
    plan = priorities_compute(_signals(), weights={}, thresholds={}, max_needed=5)
    assert plan.needed.tolist() == [3, 3, 4, 3]  # the contradicted complete pair reopens; the split one has room
    capped = priorities_compute(
        _signals(labels=np.array([3.0, 0.0, 5.0, 2.0])), weights={}, thresholds={}, max_needed=5
    )
    assert capped.needed[2] == 5


def test_gold_pairs_are_never_surfaced():
    plan = priorities_compute(_signals(gold=np.array([True] * 4)), weights={}, thresholds={}, max_needed=5)
    assert plan.reasons == [[], [], [], []]


def test_thresholds_and_the_share_cap_come_from_the_campaign():
    strict = priorities_compute(_signals(), weights={}, thresholds={"suspected_noise": 0.99}, max_needed=5)
    assert "suspected_noise" not in strict.reasons[2]
    many = _signals(entropy=np.full(4, 0.99), noise=np.full(4, NAN))
    capped = priorities_compute(many, weights={}, thresholds={"max_share": 0.25}, max_needed=5)
    assert sum("uncertain" in r for r in capped.reasons) == 1


def test_weights_order_the_pairs_that_are_not_surfaced():
    calm = _signals(entropy=np.array([0.2, 0.4, 0.3, 0.1]), noise=np.array([0.6, 0.1, NAN, NAN]), agreement=np.ones(4))
    only_noise = dict.fromkeys(["entropy", "mutual_info", "coverage", "shortcut", "disagreement"], 0.0) | {"noise": 1.0}
    by_noise = priorities_compute(calm, weights=only_noise, thresholds={}, max_needed=5)
    assert int(np.argmax(by_noise.priority)) == 0
    no_noise = {"noise": 0.0, "mutual_info": 0.0, "coverage": 0.0, "shortcut": 0.0}
    by_entropy = priorities_compute(calm, weights=no_noise, thresholds={}, max_needed=5)
    assert int(np.argmax(by_entropy.priority)) == 1


@pytest.mark.parametrize(
    ("weights", "thresholds", "field"),
    [({"entropi": 1}, {}, "priority_weights"), ({"entropy": -1}, {}, "priority_weights"),
     ({}, {"uncertain": 2}, "surface_thresholds"), ({}, {"noisy": 0.5}, "surface_thresholds")],
)  # fmt: skip
def test_bad_weights_and_thresholds_are_named(weights, thresholds, field):
    assert field in weights_errors(weights, thresholds)
    assert weights_errors({"entropy": 2}, {"uncertain": 0.8}) == {}
