"""Leasing: overlap, never twice to one annotator, expiry, random sides, gold share, under concurrency."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from annotate import clock
from annotate.exceptions import ConflictError
from annotate.models import Annotation, Assignment, ModelRun, Pair
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.assignments import assignment_next, assignment_skip, lease_take
from annotate.services.campaigns import campaign_update, membership_set
from tests.factories import make_pairs

LABEL = LabelInput(more_hallucinated="b", strength=3)


def _label_everything(campaign, username: str, results: list, errors: list) -> None:
    """One annotator's loop: lease, label, repeat until nothing is left."""
    try:
        user = get_user_model().objects.get(username=username)
        while (lease := assignment_next(campaign=campaign, annotator=user)) is not None:
            if lease.created:
                results.append((lease.assignment.pair_id, username))
            annotation_save(assignment_id=lease.assignment.pk, user_id=user.pk, label=LABEL)
    except Exception as exc:  # reported to the main thread, which fails the test
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_never_exceed_overlap_or_repeat(campaign, make_user):
    campaign_update(campaign=campaign, retrain_every=7)
    pairs = make_pairs(campaign, 30)
    annotators = [f"worker{n}" for n in range(12)]
    for username in annotators:
        make_user(username)
        membership_set(campaign=campaign, username=username, role="annotator")
    results: list = []
    errors: list = []
    threads = [
        threading.Thread(target=_label_everything, args=(campaign, name, results, errors))
        for name in annotators
        for _ in range(2)  # two browser tabs per annotator, racing each other too
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    per_pair = Counter(pair_id for pair_id, _ in results)
    assert set(per_pair.values()) == {campaign.overlap}, "every pair is labeled exactly k times"
    assert len(per_pair) == len(pairs)
    assert len(set(results)) == len(results), "no annotator got the same pair twice"
    assert Annotation.objects.count() == campaign.overlap * len(pairs)
    assert not Pair.objects.filter(status=Pair.Status.OPEN).exists()
    campaign.refresh_from_db()
    assert campaign.human_labels == Annotation.objects.count(), "no label is lost from the retrain counter"
    assert ModelRun.objects.filter(campaign=campaign).count() == 1, "racing triggers make one retrain, not several"


def _label_by_statements(campaign_id: int, user_id: int, barrier: threading.Barrier, out: dict) -> None:
    """One tab of the API's loop, one statement per call: lease, then submit twice (a double click)."""
    try:
        barrier.wait(timeout=30)
        while (lease := lease_take(campaign_id=campaign_id, user_id=user_id)) is not None:
            shown = json.loads(lease.body)
            out["leases"].append((user_id, shown["pair"]["id"], lease.assignment_id, lease.created))
            for _ in range(2):
                saved = annotation_save(assignment_id=lease.assignment_id, user_id=user_id, label=LABEL)
                out["saves"].append((lease.assignment_id, saved.annotation_id, saved.created))
    except Exception as exc:  # reported to the main thread, which fails the test
        out["errors"].append(exc)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_the_one_statement_paths_keep_overlap_leases_and_idempotency_under_24_threads(campaign, make_user):
    """`rewardlab_lease` and `rewardlab_submit` as the API calls them: 12 annotators with two tabs each, at once."""
    campaign_update(campaign=campaign, overlap=3, gold_share=0.2, retrain_every=10**6)
    pairs = make_pairs(campaign, 40, gold=5)
    users = [make_user(f"tab{n}") for n in range(12)]
    for user in users:
        membership_set(campaign=campaign, username=user.username, role="annotator")
    out: dict[str, list] = {"leases": [], "saves": [], "errors": []}
    barrier = threading.Barrier(24)
    threads = [
        threading.Thread(target=_label_by_statements, args=(campaign.pk, user.pk, barrier, out))
        for user in users
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert out["errors"] == [] and not any(thread.is_alive() for thread in threads)
    created = [(user, pair) for user, pair, _, was_created in out["leases"] if was_created]
    assert len(created) == len(set(created)), "no annotator was leased the same pair twice"
    per_pair = Counter(Annotation.objects.values_list("pair_id", flat=True))
    gold_ids = {pair.pk for pair in pairs if pair.is_gold}
    assert all(per_pair[pair.pk] == 3 for pair in pairs if not pair.is_gold), "every pair gets exactly k labels"
    assert all(per_pair[pair_id] <= len(users) for pair_id in gold_ids)
    firsts = {assignment: annotation for assignment, annotation, was_created in out["saves"] if was_created}
    assert len(firsts) == Annotation.objects.count(), "each assignment was saved once, however often it was sent"
    assert all(firsts[assignment] == annotation for assignment, annotation, _ in out["saves"]), "resubmits agree"
    assert not Assignment.objects.filter(status=Assignment.Status.LEASED).exists(), "no lease is left hanging"
    for pair in Pair.objects.filter(campaign=campaign):
        assert pair.labels_count == per_pair[pair.pk], "the pair's counter matches its labels"
    campaign.refresh_from_db()
    assert campaign.human_labels == Annotation.objects.count(), "no label is lost from the retrain counter"


@pytest.mark.django_db
def test_open_lease_is_resumed_not_duplicated(campaign):
    make_pairs(campaign, 3)
    ann1 = get_user_model().objects.get(username="ann1")
    first = assignment_next(campaign=campaign, annotator=ann1)
    again = assignment_next(campaign=campaign, annotator=ann1)
    assert first.created and not again.created
    assert again.assignment.pk == first.assignment.pk
    assert Assignment.objects.count() == 1


@pytest.mark.django_db
def test_expired_lease_returns_pair_to_pool(campaign, make_user, monkeypatch):
    campaign.overlap = 1
    campaign.save()
    (pair,) = make_pairs(campaign, 1)
    ann1, ann2 = (get_user_model().objects.get(username=name) for name in ("ann1", "ann2"))
    stale = assignment_next(campaign=campaign, annotator=ann1).assignment
    assert assignment_next(campaign=campaign, annotator=ann2) is None, "the only slot is leased"

    later = clock.now() + timedelta(seconds=campaign.lease_seconds + 1)
    monkeypatch.setattr(clock, "now", lambda: later)
    fresh = assignment_next(campaign=campaign, annotator=ann2)
    assert fresh.assignment.pair_id == pair.pk
    assert assignment_next(campaign=campaign, annotator=ann1) is None, "never the same pair twice"
    with pytest.raises(ConflictError, match="expired"):
        annotation_save(assignment_id=stale.pk, user_id=ann1.pk, label=LABEL)
    annotation_save(assignment_id=fresh.assignment.pk, user_id=ann2.pk, label=LABEL)
    assert Annotation.objects.count() == 1


@pytest.mark.django_db
def test_late_label_is_kept_while_the_pair_has_room(campaign, monkeypatch):
    make_pairs(campaign, 1)
    ann1 = get_user_model().objects.get(username="ann1")
    lease = assignment_next(campaign=campaign, annotator=ann1).assignment
    later = clock.now() + timedelta(seconds=campaign.lease_seconds + 1)
    monkeypatch.setattr(clock, "now", lambda: later)
    saved = annotation_save(assignment_id=lease.pk, user_id=ann1.pk, label=LABEL)
    annotation = Annotation.objects.get(pk=saved.annotation_id)
    assert saved.created and annotation.pair_id == lease.pair_id


@pytest.mark.django_db
def test_skipped_pair_goes_to_others_not_back_to_skipper(campaign):
    campaign.overlap = 1
    campaign.save()
    make_pairs(campaign, 1)
    ann1, ann2 = (get_user_model().objects.get(username=name) for name in ("ann1", "ann2"))
    lease = assignment_next(campaign=campaign, annotator=ann1).assignment
    assignment_skip(assignment_id=lease.pk, annotator=ann1)
    assert assignment_next(campaign=campaign, annotator=ann1) is None
    assert assignment_next(campaign=campaign, annotator=ann2).assignment.pair_id == lease.pair_id
    with pytest.raises(ConflictError, match="skipped"):
        annotation_save(assignment_id=lease.pk, user_id=ann1.pk, label=LABEL)


@pytest.mark.django_db
def test_left_side_is_random_per_assignment(campaign, make_user):
    campaign.overlap = 1
    campaign.save()
    make_pairs(campaign, 200)
    ann1 = get_user_model().objects.get(username="ann1")
    sides = []
    while (lease := assignment_next(campaign=campaign, annotator=ann1)) is not None:
        sides.append(lease.assignment.left)
        annotation_save(assignment_id=lease.assignment.pk, user_id=ann1.pk, label=LABEL)
    share_a = sides.count("a") / len(sides)
    assert len(sides) == 200 and 0.35 < share_a < 0.65


@pytest.mark.django_db
def test_gold_pairs_mixed_in_at_the_campaign_share(campaign):
    campaign.overlap = 1
    campaign.gold_share = 0.25
    campaign.save()
    make_pairs(campaign, 400, gold=100)
    ann1 = get_user_model().objects.get(username="ann1")
    drawn = []
    for _ in range(160):
        lease = assignment_next(campaign=campaign, annotator=ann1)
        drawn.append(lease.assignment.pair.is_gold)
        annotation_save(assignment_id=lease.assignment.pk, user_id=ann1.pk, label=LABEL)
    assert 0.15 < sum(drawn) / len(drawn) < 0.35


@pytest.mark.django_db
def test_gold_pairs_have_no_overlap_cap(campaign):
    campaign.overlap = 1
    campaign.gold_share = 1.0
    campaign.save()
    (gold,) = make_pairs(campaign, 1, gold=1)
    for name in ("ann1", "ann2"):
        user = get_user_model().objects.get(username=name)
        lease = assignment_next(campaign=campaign, annotator=user)
        assert lease.assignment.pair_id == gold.pk
        annotation_save(assignment_id=lease.assignment.pk, user_id=user.pk, label=LABEL)
    gold.refresh_from_db()
    assert gold.labels_count == 2 and gold.status == Pair.Status.OPEN


@pytest.mark.django_db
def test_paused_campaign_hands_out_nothing(campaign):
    make_pairs(campaign, 1)
    campaign.status = "paused"
    campaign.save()
    with pytest.raises(ConflictError, match="paused"):
        assignment_next(campaign=campaign, annotator=get_user_model().objects.get(username="ann1"))
