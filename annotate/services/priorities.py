"""What annotators see next: pair priorities and surfacing (DESIGN.md, "The loop", step 4).

A pair's priority mixes what the active reward model says of it (entropy, ensemble disagreement, how
well a text-only model answers it, how strongly it contradicts the current label) with what humans
said (disagreement among labels) and coverage (how far it is from its needed labels), with the
campaign's weights. A pair past one of the campaign's thresholds is *surfaced*, with its reasons; it is
served before every other pair and asks for one label more than it has (up to overlap plus
`max_extra_labels`), so a complete pair goes back to annotators. Gold pairs are never surfaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from annotate.bulk import staged_update
from annotate.models import Campaign, Pair, PairScore

REASONS = ("uncertain", "shortcut", "suspected_noise", "disagreement")
DEFAULT_WEIGHTS = {
    "entropy": 1.0,
    "mutual_info": 0.5,
    "shortcut": 0.5,
    "noise": 1.0,
    "disagreement": 1.0,
    "coverage": 0.5,
}
# uncertain: entropy (bits) at least; shortcut: text-only probability of the label at least; suspected_noise:
# noise_score at least; disagreement: the stored consensus's agreement at most; max_share: most pairs one
# reason may surface per round, as a share of the campaign's pairs (the highest-scoring ones are kept).
DEFAULT_THRESHOLDS = {
    "uncertain": 0.9,
    "shortcut": 0.9,
    "suspected_noise": 0.75,
    "disagreement": 0.5,
    "max_share": 0.25,
}
SURFACED_BONUS = 1.0  # above any weighted score, so surfaced pairs come first


def weights_errors(weights: dict, thresholds: dict) -> dict[str, str]:
    """Return per setting what is wrong with a campaign's priority weights and surfacing thresholds."""
    errors = {}
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown or any(not isinstance(v, int | float) or v < 0 for v in weights.values()):
        errors["priority_weights"] = f"Expected non-negative numbers for some of {', '.join(DEFAULT_WEIGHTS)}."
    unknown = sorted(set(thresholds) - set(DEFAULT_THRESHOLDS))
    if unknown or any(not isinstance(v, int | float) or not 0 <= v <= 1 for v in thresholds.values()):
        errors["surface_thresholds"] = f"Expected numbers from 0 to 1 for some of {', '.join(DEFAULT_THRESHOLDS)}."
    return errors


@dataclass(frozen=True)
class Signals:
    """Per pair, in one order: model scores (NaN where the active model has none) and label counts."""

    entropy: np.ndarray
    mutual_info: np.ndarray
    shortcut: np.ndarray
    noise: np.ndarray  # NaN where the pair has no label
    labels: np.ndarray  # human labels
    agreement: np.ndarray  # of the stored consensus (`Pair.consensus`; 1 when < 2 labels or not computed yet)
    needed: np.ndarray
    gold: np.ndarray  # bool


@dataclass(frozen=True)
class Plan:
    priority: np.ndarray
    reasons: list[list[str]]
    needed: np.ndarray


def _top_share(score: np.ndarray, eligible: np.ndarray, share: float) -> np.ndarray:
    """Keep, among eligible pairs, at most `share` of all pairs, the highest-scoring first."""
    limit = int(np.ceil(share * len(score)))
    chosen = np.flatnonzero(eligible)
    chosen = chosen[np.argsort(-score[chosen], kind="stable")][:limit]
    keep = np.zeros(len(score), bool)
    keep[chosen] = True
    return keep


def priorities_compute(signals: Signals, *, weights: dict, thresholds: dict, max_needed: int) -> Plan:
    """Return priorities, reasons and needed labels; a pure function of the signals and settings."""
    w = DEFAULT_WEIGHTS | weights
    t = DEFAULT_THRESHOLDS | thresholds
    entropy, mutual_info = np.nan_to_num(signals.entropy), np.nan_to_num(signals.mutual_info)
    shortcut, noise = np.nan_to_num(signals.shortcut), np.nan_to_num(signals.noise)
    labeled = ~np.isnan(signals.noise) & ~signals.gold
    disagreement = np.where(signals.labels >= 2, 2 * (1 - signals.agreement), 0.0)
    candidates = {
        "uncertain": (entropy, ~signals.gold & (entropy >= t["uncertain"])),
        "shortcut": (shortcut, labeled & (shortcut >= t["shortcut"])),
        "suspected_noise": (noise, labeled & (noise >= t["suspected_noise"])),
        "disagreement": (
            disagreement,
            ~signals.gold & (signals.labels >= 2) & (signals.agreement <= t["disagreement"]),
        ),
    }
    flags = {reason: _top_share(score, eligible, t["max_share"]) for reason, (score, eligible) in candidates.items()}
    reasons = [[reason for reason in REASONS if flags[reason][i]] for i in range(len(entropy))]
    surfaced = np.array([bool(r) for r in reasons], dtype=bool)
    terms = {
        "entropy": entropy,
        "mutual_info": mutual_info / max(mutual_info.max(initial=0.0), 1e-9),
        "shortcut": shortcut,
        "noise": noise,
        "disagreement": disagreement,
        "coverage": 1 - np.minimum(signals.labels / np.maximum(signals.needed, 1), 1.0),
    }
    total = sum(w.values()) or 1.0
    score = sum(w[name] * value for name, value in terms.items()) / total
    one_more = np.minimum(signals.labels + 1, max_needed)
    needed = np.where(surfaced, np.maximum(signals.needed, one_more), signals.needed)
    return Plan(priority=np.round(score + SURFACED_BONUS * surfaced, 6), reasons=reasons, needed=needed)


def _signals(campaign: Campaign, pair_ids: list[int], rows: list[tuple]) -> Signals:
    scores = dict.fromkeys(pair_ids, (np.nan,) * 4)
    if campaign.active_model_id is not None:
        fields = ("pair_id", "entropy", "mutual_info", "shortcut_score", "noise_score")
        for pair_id, *values in PairScore.objects.filter(run_id=campaign.active_model_id).values_list(*fields):
            scores[pair_id] = tuple(np.nan if v is None else v for v in values)
    matrix = np.array([scores[pair_id] for pair_id in pair_ids], dtype=float).reshape(len(pair_ids), 4)
    labels = np.array([row[4] for row in rows], dtype=float)
    agreement = np.array([1.0 if row[5] is None else row[5] for row in rows], dtype=float)
    return Signals(
        entropy=matrix[:, 0],
        mutual_info=matrix[:, 1],
        shortcut=matrix[:, 2],
        noise=matrix[:, 3],
        labels=labels,
        agreement=np.where(labels >= 2, agreement, 1.0),
        needed=np.array([row[1] for row in rows], dtype=int),
        gold=np.array([bool(row[2]) for row in rows], dtype=bool),
    )


def priorities_update(*, campaign: Campaign) -> dict[str, int]:
    """Recompute every pair's priority, reasons and needed labels from the active model and the labels.

    Return how many pairs each reason surfaced, and how many complete pairs were reopened.
    """
    rows = list(
        Pair.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("id", "needed_labels", "gold_answer", "status", "labels_count", "consensus__agreement")
    )
    pair_ids = [row[0] for row in rows]
    plan = priorities_compute(
        _signals(campaign, pair_ids, rows),
        weights=campaign.priority_weights,
        thresholds=campaign.surface_thresholds,
        max_needed=campaign.overlap + campaign.max_extra_labels,
    )
    _apply(pair_ids, plan)
    counts = {reason: sum(reason in r for r in plan.reasons) for reason in REASONS}
    counts["surfaced"] = sum(bool(r) for r in plan.reasons)
    counts["reopened"] = sum(
        1 for row, needed in zip(rows, plan.needed, strict=True) if row[3] == Pair.Status.COMPLETE and needed > row[1]
    )
    return counts


# Needed labels only grow; a pair that now needs more than it has reopens (gold pairs never close).
SET_PRIORITIES = """
    priority = new.priority,
    surfaced = new.surfaced,
    needed_labels = GREATEST(t.needed_labels, new.needed),
    status = CASE WHEN t.gold_answer = '' AND t.labels_count < GREATEST(t.needed_labels, new.needed)
                  THEN 'open' ELSE t.status END
"""


def _apply(pair_ids: list[int], plan: Plan) -> None:
    rows = (
        (pair_id, float(plan.priority[i]), json.dumps(plan.reasons[i]), int(plan.needed[i]))
        for i, pair_id in enumerate(pair_ids)
    )
    columns = [("id", "bigint"), ("priority", "double precision"), ("surfaced", "jsonb"), ("needed", "integer")]
    staged_update(table=Pair._meta.db_table, columns=columns, rows=rows, set_sql=SET_PRIORITIES)
