"""A campaign's quality numbers: what the dashboard draws and `GET /api/v1/campaigns/{id}/stats/` returns.

Everything is read with a fixed number of queries whatever the campaign's size: the labels come as one
`values_list` into numpy arrays (`annotate.quality`), counts are aggregated in SQL, and no model instance
is built per label. Consensus is computed here from the labels as they are now, so the page never shows
a stale `Pair.consensus` (`services.quality.consensus_refresh` writes the same numbers to the pairs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q
from django.db.models.functions import Length, TruncDate

from annotate.models import Annotation, Campaign, Membership, Pair
from annotate.quality import agreement, bias
from annotate.quality.agreement import Alpha
from annotate.quality.bias import ShareTest, Timing
from annotate.quality.consensus import METHOD_DAWID_SKENE, METHOD_MAJORITY, Consensus, consensus
from annotate.quality.table import CHOICES, CODE, LabelTable
from annotate.selectors import CurvePoint, learning_curve, pseudonym
from annotate.services.priorities import DEFAULT_THRESHOLDS

LABEL_COLUMNS = ("pair_id", "annotator_id", "more_hallucinated", "strength")
CONTEXT_COLUMNS = ("shown_left", "duration_ms", Length("pair__a__text"), Length("pair__b__text"))
LABELS_CHUNK = 5000  # rows per database round trip when labels are streamed
DISAGREED_SHOWN = 10  # the most disputed pairs listed by name; the count covers them all


@dataclass(frozen=True)
class CampaignLabels:
    """Every human label of a campaign, with what the bias diagnostics read beside the label itself."""

    table: LabelTable
    shown_left: np.ndarray  # (n,) A or B: the canonical side shown on the left
    duration_ms: np.ndarray  # (n,) float, NaN where not recorded
    len_a: np.ndarray  # (n,) characters of answer a
    len_b: np.ndarray


def _label_columns(campaign: Campaign, *extra) -> list[tuple]:
    """Return the campaign's labels column by column (one query, tuples only)."""
    rows = Annotation.objects.filter(pair__campaign=campaign).order_by().values_list(*LABEL_COLUMNS, *extra)
    return list(zip(*rows, strict=True)) or [()] * (len(LABEL_COLUMNS) + len(extra))


def label_table(campaign: Campaign) -> LabelTable:
    """Return the campaign's human labels as arrays: what consensus needs (streamed, for big campaigns)."""
    rows = Annotation.objects.filter(pair__campaign=campaign).order_by().values_list(*LABEL_COLUMNS)
    return LabelTable.from_rows(rows.iterator(chunk_size=LABELS_CHUNK))


def campaign_labels(campaign: Campaign) -> CampaignLabels:
    """Return the campaign's human labels with side shown, duration and answer lengths."""
    columns = _label_columns(campaign, *CONTEXT_COLUMNS)
    shown_left, duration_ms, len_a, len_b = columns[len(LABEL_COLUMNS) :]
    return CampaignLabels(
        table=LabelTable.from_columns(*columns[: len(LABEL_COLUMNS)]),
        shown_left=np.array([CODE[side] for side in shown_left], dtype=np.int64),
        duration_ms=np.array([np.nan if d is None else d for d in duration_ms], dtype=float),
        len_a=np.array(len_a, dtype=np.int64),
        len_b=np.array(len_b, dtype=np.int64),
    )


@dataclass(frozen=True)
class GoldScore:
    answered: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None


NO_GOLD = GoldScore(answered=0, correct=0)


def gold_scores(
    campaign: Campaign, *, annotator_ids: Iterable[int] | None = None, since: datetime | None = None
) -> dict[int, GoldScore]:
    """Return per annotator id how many gold pairs they answered (since `since`) and how many were right."""
    labels = Annotation.objects.filter(pair__campaign=campaign).exclude(pair__gold_answer="")
    if annotator_ids is not None:
        labels = labels.filter(annotator_id__in=list(annotator_ids))
    if since is not None:
        labels = labels.filter(created_at__gte=since)
    rows = (
        labels.order_by()
        .values("annotator_id")
        .annotate(answered=Count("id"), correct=Count("id", filter=Q(more_hallucinated=F("pair__gold_answer"))))
    )
    return {row["annotator_id"]: GoldScore(row["answered"], row["correct"]) for row in rows}


# The stats themselves ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    date: date
    labels: int
    cumulative: int


@dataclass(frozen=True)
class Progress:
    pairs: int
    complete: int
    open: int
    gold: int
    human_labels: int
    share_complete: float | None  # of the pairs that can complete: gold pairs stay open for every annotator
    days: list[Day]


@dataclass(frozen=True)
class DisagreedPair:
    pair_id: int
    external_id: str
    votes: dict[str, int]
    consensus: dict


@dataclass(frozen=True)
class AgreementStats:
    alpha_choice: Alpha
    alpha_strength: Alpha
    method: str  # dawid-skene once the labels allow it (quality.consensus), majority before
    multi_labeled: int  # pairs with two or more labels
    threshold: float  # share of votes for the most common answer at or below which a pair is disputed
    disagreements: int
    disagreed: list[DisagreedPair]


@dataclass(frozen=True)
class AnnotatorStats:
    user_id: int
    username: str
    pseudonym: str
    labels: int
    gold: GoldScore
    gold_failing: bool  # judged (enough gold answers) and below the campaign's minimum
    paused: bool
    paused_reason: str
    agreement: float | None  # share of labels matching the consensus, on pairs with two or more labels
    agreement_n: int
    reliability: float | None  # Dawid–Skene's estimated accuracy; None while consensus is a majority
    alpha_choice: Alpha
    alpha_strength: Alpha
    time: Timing
    position: ShareTest  # flagged the answer shown on the left
    length: ShareTest  # preferred the longer answer

    @property
    def flagged(self) -> bool:
        return self.gold_failing or self.position.flagged or self.length.flagged


@dataclass(frozen=True)
class Biases:
    position: ShareTest
    length: ShareTest
    time: Timing


@dataclass(frozen=True)
class CampaignStats:
    campaign: Campaign
    progress: Progress
    agreement: AgreementStats
    annotators: list[AnnotatorStats]
    biases: Biases
    rounds: list[CurvePoint]


def _days(campaign: Campaign) -> list[Day]:
    """Return labels per calendar day (UTC), every day from the first label to the last, with running totals."""
    per_day = dict(
        Annotation.objects.filter(pair__campaign=campaign)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    if not per_day:
        return []
    first, last = min(per_day), max(per_day)
    days, total = [], 0
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        total += per_day.get(day, 0)
        days.append(Day(date=day, labels=per_day.get(day, 0), cumulative=total))
    return days


def _progress(campaign: Campaign, labels: int) -> Progress:
    counts = Pair.objects.filter(campaign=campaign).aggregate(
        pairs=Count("id"),
        complete=Count("id", filter=Q(status=Pair.Status.COMPLETE)),
        gold=Count("id", filter=~Q(gold_answer="")),
    )
    can_complete = counts["pairs"] - counts["gold"]
    return Progress(
        pairs=counts["pairs"],
        complete=counts["complete"],
        open=counts["pairs"] - counts["complete"],
        gold=counts["gold"],
        human_labels=labels,
        share_complete=counts["complete"] / can_complete if can_complete else None,
        days=_days(campaign),
    )


def _disagreed(table: LabelTable, votes: np.ndarray, result: Consensus, pairs: np.ndarray) -> list[DisagreedPair]:
    """Describe the given pair indices: their votes and consensus, with the item's external id."""
    ids = [int(table.pair_ids[i]) for i in pairs]
    names = dict(Pair.objects.filter(pk__in=ids).values_list("id", "item__external_id"))
    return [
        DisagreedPair(
            pair_id=pair_id,
            external_id=names.get(pair_id, ""),
            votes=dict(zip(CHOICES, votes[i].tolist(), strict=True)),
            consensus=result.as_json(i),
        )
        for pair_id, i in zip(ids, pairs, strict=True)
    ]


def _agreement(campaign: Campaign, table: LabelTable, result: Consensus) -> AgreementStats:
    """Return alpha and the disputed pairs, most disputed first.

    A pair is disputed when its most common answer has at most the campaign's disagreement threshold's share
    of the votes: the rule `services.priorities` surfaces pairs for disagreement by.
    """
    threshold = (DEFAULT_THRESHOLDS | campaign.surface_thresholds)["disagreement"]
    votes, per_pair = table.votes(), table.labels_per_pair()
    top_share = votes.max(axis=1, initial=0) / np.maximum(per_pair, 1)
    disputed = np.flatnonzero((per_pair >= 2) & (top_share <= threshold))
    order = np.lexsort((result.agreement[disputed], top_share[disputed]))
    return AgreementStats(
        alpha_choice=agreement.campaign_alpha(table, level="nominal", scale=campaign.strength_scale),
        alpha_strength=agreement.campaign_alpha(table, level="ordinal", scale=campaign.strength_scale),
        method=METHOD_DAWID_SKENE if result.fit is not None else METHOD_MAJORITY,
        multi_labeled=int(np.count_nonzero(per_pair >= 2)),
        threshold=threshold,
        disagreements=len(disputed),
        disagreed=_disagreed(table, votes, result, disputed[order][:DISAGREED_SHOWN]),
    )


def _reliability(result: Consensus) -> np.ndarray | None:
    """Return each annotator's estimated accuracy under Dawid–Skene: Σ_k p_k · π_j[k, k]."""
    if result.fit is None:
        return None
    return np.einsum("k,jkk->j", result.fit.prior, result.fit.confusion)


def _people(campaign: Campaign, label_authors: np.ndarray) -> list[dict]:
    """Return the campaign's annotators and everyone who labeled in it (a removed member's labels stay)."""
    members = {
        row["user_id"]: row
        for row in Membership.objects.filter(campaign=campaign)
        .filter(Q(role=Membership.Role.ANNOTATOR) | Q(user_id__in=label_authors.tolist()))
        .values("user_id", "user__username", "paused_at", "paused_reason")
    }
    strangers = set(label_authors.tolist()) - set(members)
    for user_id, username in get_user_model().objects.filter(pk__in=strangers).values_list("id", "username"):
        members[user_id] = {"user_id": user_id, "user__username": username, "paused_at": None, "paused_reason": ""}
    return list(members.values())


def gold_failing(campaign: Campaign, score: GoldScore) -> bool:
    """Tell whether a gold score is judged (enough answers) and below the campaign's minimum (0 never fails)."""
    return (
        campaign.min_gold_accuracy > 0
        and score.answered >= campaign.gold_min_answered
        and score.correct < campaign.min_gold_accuracy * score.answered
    )


@dataclass(frozen=True)
class _Diagnostics:
    """The bias tests and timings, each as (per annotator index, overall)."""

    position: tuple[list[ShareTest], ShareTest]
    length: tuple[list[ShareTest], ShareTest]
    time: tuple[list[Timing], Timing]


def _diagnostics(labels: CampaignLabels) -> _Diagnostics:
    table = labels.table
    n = table.n_annotators
    return _Diagnostics(
        position=bias.position_bias(table.annotator, table.choice, labels.shown_left, n_annotators=n),
        length=bias.length_bias(table.annotator, table.choice, labels.len_a, labels.len_b, n_annotators=n),
        time=bias.label_times(table.annotator, labels.duration_ms, n_annotators=n),
    )


NO_ALPHA = Alpha(None, 0)
NO_SHARE = bias.share_test(0, 0)
NO_TIME = Timing(0, None, None)


def _annotators(
    campaign: Campaign, table: LabelTable, result: Consensus, diagnostics: _Diagnostics
) -> list[AnnotatorStats]:
    """Return a row per annotator, most labels first; members without labels get empty figures."""
    index = {int(user_id): i for i, user_id in enumerate(table.annotator_ids)}
    matched, comparable = agreement.consensus_agreement(table, result.choice)
    reliability = _reliability(result)
    alpha_choice = agreement.annotator_alphas(table, level="nominal", scale=campaign.strength_scale)
    alpha_strength = agreement.annotator_alphas(table, level="ordinal", scale=campaign.strength_scale)
    per_label = np.bincount(table.annotator, minlength=table.n_annotators)
    gold = gold_scores(campaign)
    rows = []
    for person in _people(campaign, table.annotator_ids):
        user_id, i = person["user_id"], index.get(person["user_id"])
        score = gold.get(user_id, NO_GOLD)
        labeled = i is not None
        rows.append(
            AnnotatorStats(
                user_id=user_id,
                username=person["user__username"],
                pseudonym=pseudonym(user_id=user_id, campaign_id=campaign.pk),
                labels=int(per_label[i]) if labeled else 0,
                gold=score,
                gold_failing=gold_failing(campaign, score),
                paused=person["paused_at"] is not None,
                paused_reason=person["paused_reason"],
                agreement=float(matched[i] / comparable[i]) if labeled and comparable[i] else None,
                agreement_n=int(comparable[i]) if labeled else 0,
                reliability=float(reliability[i]) if labeled and reliability is not None else None,
                alpha_choice=alpha_choice[i] if labeled else NO_ALPHA,
                alpha_strength=alpha_strength[i] if labeled else NO_ALPHA,
                time=diagnostics.time[0][i] if labeled else NO_TIME,
                position=diagnostics.position[0][i] if labeled else NO_SHARE,
                length=diagnostics.length[0][i] if labeled else NO_SHARE,
            )
        )
    return sorted(rows, key=lambda row: (-row.labels, row.pseudonym))


def campaign_stats(campaign: Campaign) -> CampaignStats:
    """Return progress, agreement, the annotator table, biases and model rounds of a campaign."""
    labels = campaign_labels(campaign)
    result = consensus(labels.table)
    diagnostics = _diagnostics(labels)
    return CampaignStats(
        campaign=campaign,
        progress=_progress(campaign, len(labels.table.choice)),
        agreement=_agreement(campaign, labels.table, result),
        annotators=_annotators(campaign, labels.table, result, diagnostics),
        biases=Biases(position=diagnostics.position[1], length=diagnostics.length[1], time=diagnostics.time[1]),
        rounds=learning_curve(campaign),
    )
