"""Losses and uncertainty measures (rewardlab.losses) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab.losses import (
    binary_entropy,
    mutual_information,
    preference_losses,
    shortcut_failure_coefficient,
    weighted_mean,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_chosen_a_with_margin_is_minus_log_sigmoid_of_the_gap_less_the_margin():
    # r_a = 1, r_b = 0, m = 0.5: -log σ(1 - 0 - 0.5) = -log σ(0.5) = log(1 + e^-0.5) = 0.474077
    loss = preference_losses(t(1.0), t(0.0), t(1.0), t(0.5))
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)


def test_chosen_b_mirrors_chosen_a():
    # sign -1 compares r_b - r_a: r_a = 0, r_b = 1, m = 0.5 gives -log σ(0.5) = 0.474077 again
    assert preference_losses(t(0.0), t(1.0), t(-1.0), t(0.5)).item() == pytest.approx(0.474077, abs=1e-6)
    # and choosing b when a has the higher reward costs more: -log σ(0 - 1 - 0) = log(1 + e) = 1.313262
    assert preference_losses(t(1.0), t(0.0), t(-1.0), t(0.0)).item() == pytest.approx(1.313262, abs=1e-6)


def test_a_margin_makes_the_same_gap_cost_more():
    # m = 0: -log σ(1) = 0.313262;  m = 1: -log σ(0) = log 2 = 0.693147
    losses = preference_losses(t(1.0, 1.0), t(0.0, 0.0), t(1.0, 1.0), t(0.0, 1.0))
    assert losses.tolist() == pytest.approx([0.313262, 0.693147], abs=1e-6)


def test_a_tie_at_equal_rewards_costs_log_two_whatever_the_margin():
    # -½ [log σ(0) + log σ(0)] = log 2 = 0.693147; the margin only applies to a ranked label
    assert preference_losses(t(0.3), t(0.3), t(0.0), t(1.0)).item() == pytest.approx(math.log(2), abs=1e-6)


def test_a_tie_is_smallest_at_equal_rewards_and_symmetric():
    # r_a - r_b = ±2: -½ [log σ(2) + log σ(-2)] = ½ (0.126928 + 2.126928) = 1.126928
    gaps = t(-2.0, -0.5, 0.0, 0.5, 2.0)
    losses = preference_losses(gaps, torch.zeros(5), torch.zeros(5), torch.zeros(5))
    assert losses[0].item() == pytest.approx(1.126928, abs=1e-6)
    assert losses[2].item() == pytest.approx(math.log(2), abs=1e-6)
    assert losses.argmin().item() == 2
    assert torch.allclose(losses, losses.flip(0))


def test_losses_broadcast_member_rewards_over_per_sample_labels():
    # rewards [K=2, N=2], labels [N]: member 1 has the gaps of member 0 negated
    reward_a = t(1.0, 0.0, -1.0, 0.0).reshape(2, 2)
    reward_b = torch.zeros(2, 2)
    losses = preference_losses(reward_a, reward_b, t(1.0, 0.0), t(0.0, 0.0))
    # [[-log σ(1), log 2], [-log σ(-1), log 2]]
    assert losses.tolist() == [pytest.approx([0.313262, 0.693147], abs=1e-6), pytest.approx([1.313262, 0.693147])]


def test_sfc_is_the_text_loss_share_of_both_losses():
    # L = 1, L_t = 3: 3 / (1 + 3) = 0.75;  L = 3, L_t = 1: 0.25
    assert shortcut_failure_coefficient(t(1.0, 3.0), t(3.0, 1.0)).tolist() == pytest.approx([0.75, 0.25])


def test_no_gradient_flows_through_sfc():
    loss = t(1.0).requires_grad_()
    text_loss = t(3.0).requires_grad_()
    sfc = shortcut_failure_coefficient(loss, text_loss)
    assert not sfc.requires_grad
    (sfc * loss).sum().backward()
    # d(SFC · L)/dL with SFC held constant is SFC itself, 0.75 (it would be 0.75 - 3/16 = 0.5625 through SFC)
    assert loss.grad.item() == pytest.approx(0.75)
    assert text_loss.grad is None


def test_sfc_of_two_zero_losses_is_finite():
    assert shortcut_failure_coefficient(t(0.0), t(0.0)).item() == 0.0


def test_weighted_mean_by_hand():
    # (1·1 + 1·2 + 2·3) / (1 + 1 + 2) = 9 / 4
    assert weighted_mean(t(1.0, 2.0, 3.0), t(1.0, 1.0, 2.0)).item() == pytest.approx(2.25)


def test_weighted_mean_ignores_the_scale_of_the_weights():
    values, weights = t(1.0, 2.0, 3.0), t(0.2, 0.5, 0.3)
    assert weighted_mean(values, weights * 10).item() == pytest.approx(weighted_mean(values, weights).item())


def test_weighted_mean_is_per_row_over_the_last_axis_and_zero_without_weight():
    values = t(1.0, 3.0, 5.0, 7.0).reshape(2, 2)
    weights = t(1.0, 1.0, 0.0, 0.0).reshape(2, 2)
    # row 0: (1 + 3) / 2 = 2; row 1 has no weight: 0 / EPS = 0, not nan
    assert weighted_mean(values, weights).tolist() == [2.0, 0.0]


def test_binary_entropy_in_bits():
    # H(0.9) = -(0.9 log2 0.9 + 0.1 log2 0.1) = 0.9 · 0.152003 + 0.1 · 3.321928 = 0.468996
    assert binary_entropy(t(0.5, 0.9, 0.1)).tolist() == pytest.approx([1.0, 0.468996, 0.468996], abs=1e-6)


def test_binary_entropy_of_a_certain_answer_is_zero():
    assert binary_entropy(t(0.0, 1.0)).tolist() == pytest.approx([0.0, 0.0], abs=1e-4)


def test_mutual_information_is_zero_when_members_agree():
    member_p = t(0.3, 0.5, 0.3, 0.5).reshape(2, 2)  # [K=2, N=2]: the members give the same p on each pair
    assert mutual_information(member_p).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_mutual_information_of_opposite_confident_members():
    # members [0.1, 0.9]: H(mean 0.5) - mean(H(0.1), H(0.9)) = 1 - 0.468996 = 0.531004
    member_p = t(0.1, 0.9).reshape(2, 1)
    assert mutual_information(member_p).tolist() == pytest.approx([0.531004], abs=1e-6)
