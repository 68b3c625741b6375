"""Writes of label quality: each pair's consensus, and pausing annotators who fail gold (issue 5).

Consensus is campaign-wide (Dawid–Skene weighs every annotator by all their labels), so it is
recomputed for the whole campaign at once and written in bulk; the dashboard and the stats endpoint
compute the same numbers live (`annotate.stats`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import F

from annotate import clock
from annotate.bulk import staged_update
from annotate.models import Campaign, Membership, Pair
from annotate.quality.consensus import consensus
from annotate.services.campaigns import membership_pause
from annotate.services.jobs import campaign_work_send
from annotate.stats import NO_GOLD, GoldScore, gold_failing, gold_scores, label_table

# A request no worker started this long after it was sent is taken as lost, and the next label sends another.
CONSENSUS_LOST_AFTER_SECONDS = 30
# At most one refresh of a campaign starts in this many seconds: the fit is campaign-wide.
CONSENSUS_EVERY_SECONDS = 5
# What a refresh has seen, counted: every new label and every edit of one changes the consensus it fits.
LABEL_CHANGES = F("human_labels") + F("label_edits")


def consensus_request(*, campaign_id: int) -> bool:
    """Ask a worker to refresh the campaign's consensus, after a label changed; return whether this call sent it.

    A label that finds a request still queued joins it instead of sending its own: the worker reads the
    labels only when it starts (`consensus_refresh_start`), so it sees this one too. Within
    CONSENSUS_EVERY_SECONDS of the last refresh's start nothing is sent, so a busy campaign costs a worker
    one campaign-wide fit per few seconds, not one per label; what such a label left stale is sent by the
    next label, or by a worker's beat (`consensus_send_stale`). The stored consensus, which the pair API,
    review pages, priorities and exports all read, thus trails the labels by a few seconds, one beat at
    worst. The claim is one conditional UPDATE, so concurrent labels send one request. A request the
    broker refused, or a message lost with it, blocks nothing for longer than CONSENSUS_LOST_AFTER_SECONDS.
    """
    now = clock.now()
    return consensus_claim(campaign_id=campaign_id, now=now) and consensus_send_claimed(
        campaign_id=campaign_id, claimed_at=now
    )


def consensus_claim(*, campaign_id: int, now: datetime) -> bool:
    """Claim the campaign's next refresh at `now`: one conditional UPDATE (`rewardlab_consensus_claim`).

    `rewardlab_submit` claims with the same function, in the label's own round trip.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT rewardlab_consensus_claim(%s, %s, %s, %s)", [campaign_id, now, *consensus_intervals()])
        return cursor.fetchone()[0]


def consensus_intervals() -> tuple[timedelta, timedelta]:
    """The claim's two intervals: the rest between refreshes, and when a queued request counts as lost."""
    return timedelta(seconds=CONSENSUS_EVERY_SECONDS), timedelta(seconds=CONSENSUS_LOST_AFTER_SECONDS)


def consensus_send_claimed(*, campaign_id: int, claimed_at: datetime) -> bool:
    """Send the refresh claimed at `claimed_at`; a request the broker refused lets go of the claim."""
    if campaign_work_send("consensus_refresh", campaign_id=campaign_id):
        return True
    Campaign.objects.filter(pk=campaign_id, consensus_requested_at=claimed_at).update(consensus_requested_at=None)
    return False


def consensus_send_stale() -> int:
    """Ask for a refresh of every campaign with labels or edits its stored consensus has not seen; return how many.

    A worker's beat calls it, so the last labels of a burst, saved while a refresh had just started, are in
    the stored consensus within one beat even when no label follows them.
    """
    stale = Campaign.objects.filter(consensus_labels__lt=LABEL_CHANGES).values_list("pk", flat=True)
    return sum(consensus_request(campaign_id=campaign_id) for campaign_id in stale)


def consensus_refresh_start(*, campaign: Campaign) -> int:
    """Run a requested refresh: release the request first, so a label saved from now on asks for the next one."""
    Campaign.objects.filter(pk=campaign.pk).update(consensus_requested_at=None)
    return consensus_refresh(campaign=campaign)


def consensus_refresh(*, campaign: Campaign) -> int:
    """Recompute the consensus of every pair with human labels and store it on the pairs; return how many.

    What it starts from is recorded first (when, and the count of human labels and edits), so labels saved or
    changed while it runs leave the campaign stale for the next one."""
    Campaign.objects.filter(pk=campaign.pk).update(consensus_started_at=clock.now(), consensus_labels=LABEL_CHANGES)
    table = label_table(campaign)
    result = consensus(table)
    values = [(int(pair_id), result.as_json(i)) for i, pair_id in enumerate(table.pair_ids)]
    staged_update(
        table=Pair._meta.db_table,
        columns=[("id", "bigint"), ("consensus", "jsonb")],
        rows=((pair_id, json.dumps(value)) for pair_id, value in values),
        set_sql="consensus = new.consensus",
    )
    return len(values)


def gold_reason(campaign: Campaign, score: GoldScore) -> str:
    """Say why an annotator was paused, in the words the annotator and the lead both read.

    >>> gold_reason(Campaign(min_gold_accuracy=0.7), GoldScore(answered=5, correct=2))
    "gold accuracy 40% (2 of 5) is below this campaign's minimum of 70%"
    """
    return (
        f"gold accuracy {score.accuracy:.0%} ({score.correct} of {score.answered}) "
        f"is below this campaign's minimum of {campaign.min_gold_accuracy:.0%}"
    )


def gold_check(*, campaign: Campaign, annotator: AbstractBaseUser) -> GoldScore:
    """Judge the annotator's accuracy on gold pairs; pause them from the campaign when it is below the minimum.

    Judged only once they answered `gold_min_answered` gold pairs (since a lead last resumed them), and never
    when the minimum is 0. Someone already paused keeps the first reason; returns the score either way.
    """
    membership = Membership.objects.filter(campaign=campaign, user=annotator, role=Membership.Role.ANNOTATOR).first()
    since = membership.gold_since if membership is not None else None
    score = gold_scores(campaign, annotator_ids=[annotator.pk], since=since).get(annotator.pk, NO_GOLD)
    if membership is not None and membership.paused_at is None and gold_failing(campaign, score):
        membership_pause(membership=membership, reason=gold_reason(campaign, score))
    return score
