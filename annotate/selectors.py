"""Reads: the querysets and summaries that pages and endpoints show (STYLE.md, habit 1)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from annotate import access
from annotate.exceptions import NotFoundError
from annotate.models import (
    Annotation,
    Assignment,
    Campaign,
    Choice,
    Membership,
    ModelRun,
    Pair,
    PairScore,
    PriorLabel,
    Side,
)
from annotate.spans import on_side

PREFERENCE = {Choice.A, Choice.B}


def pseudonym(*, user_id: int, campaign_id: int) -> str:
    """Return a stable id for an annotator within one campaign that cannot be linked across campaigns."""
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, f"{campaign_id}:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"ann-{digest[:10]}"


ANY_REASON = "any"
# A pair's human labels, oldest first, with only what the pair list and surfaced pairs show of them (votes, spans).
SHOWN_LABELS = Annotation.objects.only("pair_id", "annotator_id", "more_hallucinated", "spans").order_by("id")


def pair_list(
    *,
    campaign: Campaign,
    status: str = "",
    surfaced: str = "",
    gold: bool | None = None,
    min_entropy: float | None = None,
) -> QuerySet[Pair]:
    """Return the campaign's pairs with what the pair representation needs: active scores and human labels prefetched.

    `surfaced` is a reason (`uncertain`, `shortcut`, `suspected_noise`, `disagreement`) or `any`;
    `min_entropy` keeps pairs the active model scored at least that uncertain.
    """
    active_scores = PairScore.objects.filter(run_id=campaign.active_model_id)
    qs = (
        Pair.objects.filter(campaign=campaign)
        .select_related("item__image", "a", "b")
        .prefetch_related(Prefetch("scores", queryset=active_scores, to_attr="active_scores"))
        .prefetch_related(Prefetch("annotations", queryset=SHOWN_LABELS, to_attr="shown_labels"))
    )
    if status:
        qs = qs.filter(status=status)
    if surfaced == ANY_REASON:
        qs = qs.exclude(surfaced=[])
    elif surfaced:
        qs = qs.filter(surfaced__contains=[surfaced])
    if gold is not None:
        qs = qs.exclude(gold_answer="") if gold else qs.filter(gold_answer="")
    if min_entropy is not None:
        qs = qs.filter(Exists(active_scores.filter(pair=OuterRef("pk"), entropy__gte=min_entropy)))
    return qs


def pair_spans(pair: Pair) -> list[dict]:
    """Return every human label's spans on the pair from `pair_list`'s prefetch, each with its annotator's pseudonym.

    For leads and researchers only (the pair list and surfaced pairs): an annotator never sees another's spans.
    """
    return [
        {**span, "annotator": pseudonym(user_id=label.annotator_id, campaign_id=pair.campaign_id)}
        for label in pair.shown_labels
        for span in label.spans
    ]


def pair_active_score(pair: Pair) -> PairScore | None:
    """The active model's scores of a pair from `pair_list`'s prefetch; None before the first run."""
    scores = getattr(pair, "active_scores", None)
    return scores[0] if scores else None


def model_runs_of(campaign: Campaign) -> QuerySet[ModelRun]:
    """The campaign's runs, newest first, with who asked for each."""
    return campaign.model_runs.select_related("requested_by").order_by("-id")


def model_run_for(user: AbstractBaseUser, run_id: int, roles: Iterable[str]) -> ModelRun:
    """Return a run if the user holds one of `roles` in its campaign."""
    runs = ModelRun.objects.select_related("campaign", "requested_by")
    return access.campaign_object_for(user, runs, run_id, roles, what="model run")


@dataclass(frozen=True)
class CurvePoint:
    """One succeeded run on the learning curve: held-out quality against how many human labels it had."""

    run: int
    finished_at: datetime
    human_labels: int
    samples: int
    accuracy: float | None
    ece: float | None
    text_only_accuracy: float | None
    gold_accuracy: float | None


def learning_curve(campaign: Campaign) -> list[CurvePoint]:
    """Return the campaign's succeeded runs, oldest first, with their held-out metrics."""
    runs = campaign.model_runs.filter(status=ModelRun.Status.SUCCEEDED).order_by("id")
    points = []
    for run in runs.only("id", "campaign_id", "finished_at", "labels_at_request", "metrics"):
        held_out = run.metrics.get("labels", {})
        points.append(
            CurvePoint(
                run=run.pk,
                finished_at=run.finished_at,
                human_labels=run.labels_at_request,
                samples=run.metrics.get("samples", 0),
                accuracy=held_out.get("accuracy"),
                ece=held_out.get("ece"),
                text_only_accuracy=held_out.get("text_only_accuracy"),
                gold_accuracy=run.metrics.get("gold", {}).get("accuracy"),
            )
        )
    return points


def annotation_list(*, campaign: Campaign) -> QuerySet[Annotation]:
    return (
        Annotation.objects.filter(pair__campaign=campaign)
        .select_related("pair__item", "pair__a", "pair__b")
        .order_by("id")
    )


def annotation_before(*, campaign: Campaign, annotator: AbstractBaseUser, before: int | None) -> Annotation:
    """Return the annotator's label given just before the label `before` (their latest when None), to edit it."""
    labels = Annotation.objects.select_related(
        "assignment__pair__item__image", "assignment__pair__a", "assignment__pair__b"
    ).filter(pair__campaign=campaign, annotator=annotator)
    if before is not None:
        labels = labels.filter(pk__lt=before)
    annotation = labels.order_by("-pk").first()
    if annotation is None:
        raise NotFoundError("You have no earlier label in this campaign to go back to.")
    return annotation


def annotator_done_count(*, campaign: Campaign, user_id: int) -> int:
    return Annotation.objects.filter(pair__campaign=campaign, annotator_id=user_id).count()


def campaign_counts(campaign: Campaign) -> dict[str, int]:
    """Return the live counts shown with a campaign."""
    pairs = Pair.objects.filter(campaign=campaign).aggregate(
        pairs=Count("id"),
        complete=Count("id", filter=Q(status=Pair.Status.COMPLETE)),
        gold=Count("id", filter=~Q(gold_answer="")),
    )
    return {
        "items": campaign.items.count(),
        **pairs,
        "annotations": Annotation.objects.filter(pair__campaign=campaign).count(),
        "open_leases": Assignment.objects.filter(pair__campaign=campaign, status=Assignment.Status.LEASED).count(),
        "members": Membership.objects.filter(campaign=campaign).count(),
    }


STAFF_ROLE_LABEL = "Staff"


@dataclass(frozen=True)
class CampaignRow:
    campaign: Campaign
    role_label: str
    can_label: bool
    can_manage: bool
    can_read_data: bool


def _count_per_campaign(queryset, field: str, aggregate) -> Subquery:
    """A correlated subquery of one aggregate over `queryset`, grouped by its `field` campaign."""
    grouped = queryset.filter(**{field: OuterRef("pk")}).order_by().values(field).annotate(n=aggregate)
    return Coalesce(Subquery(grouped.values("n"), output_field=IntegerField()), 0)


def campaign_rows(user: AbstractBaseUser) -> list[CampaignRow]:
    """Return the campaigns the user sees, newest first, with their role, own label count and totals."""
    my_role = Membership.objects.filter(campaign=OuterRef("pk"), user=user).values("role")[:1]
    campaigns = access.campaigns_visible_to(user).annotate(
        my_role=Subquery(my_role),
        my_done=_count_per_campaign(Annotation.objects.filter(annotator=user), "pair__campaign", Count("pk")),
        pairs_total=_count_per_campaign(Pair.objects.all(), "campaign", Count("pk")),
        labels_total=_count_per_campaign(Pair.objects.all(), "campaign", Sum("labels_count")),
    )
    return [
        CampaignRow(
            campaign=campaign,
            role_label=Membership.Role(campaign.my_role).label if campaign.my_role else STAFF_ROLE_LABEL,
            can_label=access.user_can(user, campaign, access.LABEL),
            can_manage=access.user_can(user, campaign, access.MANAGE),
            can_read_data=access.user_can(user, campaign, access.READ_DATA),
        )
        for campaign in campaigns
    ]


def assignment_of_annotator(*, assignment_id: int, campaign: Campaign, annotator: AbstractBaseUser) -> Assignment:
    """Return the annotator's own assignment in this campaign, with what the label panel shows."""
    assignment = (
        Assignment.objects.select_related("pair__item__image", "pair__a", "pair__b")
        .filter(pk=assignment_id, annotator=annotator, pair__campaign=campaign)
        .first()
    )
    if assignment is None:
        raise NotFoundError(f"No assignment {assignment_id} of yours in campaign {campaign.pk}.")
    return assignment


# The lead's model pages: the active model's numbers and the pairs it surfaced -----------------------


@dataclass(frozen=True)
class QtypeAccuracy:
    """Held-out accuracy on one question type: shortcut-prone types (existence, counting) stand out here."""

    name: str
    accuracy: float | None
    n: int


@dataclass(frozen=True)
class ModelCard:
    """The active model's held-out numbers as the model page shows them; a metric not recorded is None."""

    run: ModelRun
    accuracy: float | None
    ece: float | None
    log_loss: float | None
    text_only_accuracy: float | None
    held_out_n: int | None
    gold_accuracy: float | None
    gold_n: int | None
    by_qtype: list[QtypeAccuracy]
    calibration: list[dict]
    surfaced: list[tuple[str, int]]
    surfaced_total: int | None
    reopened: int | None


# Keys of `metrics["surfaced"]` that are totals, not reasons (services.priorities.priorities_update).
SURFACED_TOTALS = ("surfaced", "reopened")


def model_card(campaign: Campaign) -> ModelCard | None:
    """Return the campaign's active model with its metrics unpacked, or None before the first good run.

    Metrics are JSON written by the worker and older runs may lack newer keys, so every read has a default.
    """
    if campaign.active_model_id is None:
        return None
    run = ModelRun.objects.select_related("requested_by").filter(pk=campaign.active_model_id).first()
    if run is None:
        return None
    held_out = run.metrics.get("labels") or {}
    gold = run.metrics.get("gold") or {}
    surfaced = run.metrics.get("surfaced") or {}
    return ModelCard(
        run=run,
        accuracy=held_out.get("accuracy"),
        ece=held_out.get("ece"),
        log_loss=held_out.get("log_loss"),
        text_only_accuracy=held_out.get("text_only_accuracy"),
        held_out_n=held_out.get("n"),
        gold_accuracy=gold.get("accuracy"),
        gold_n=gold.get("n"),
        by_qtype=[
            QtypeAccuracy(name=name, accuracy=values.get("accuracy"), n=values.get("n", 0))
            for name, values in sorted((held_out.get("accuracy_by_qtype") or {}).items())
        ],
        calibration=list(held_out.get("calibration") or []),
        surfaced=[(reason, n) for reason, n in surfaced.items() if reason not in SURFACED_TOTALS],
        surfaced_total=surfaced.get("surfaced"),
        reopened=surfaced.get("reopened"),
    )


def model_run_live(campaign: Campaign) -> ModelRun | None:
    """Return the campaign's queued or running run (there is at most one), with who asked for it."""
    return model_runs_of(campaign).filter(status__in=ModelRun.ACTIVE_STATUSES).first()


def surfaced_pairs(*, campaign: Campaign, reason: str = "") -> QuerySet[Pair]:
    """Return the pairs the model surfaced (for one reason, or any), most urgent first, with prior labels.

    Built on `pair_list`, whose labels give the votes and spans: a page of rows costs a fixed number of
    queries whatever its length.
    """
    return (
        pair_list(campaign=campaign, surfaced=reason or ANY_REASON)
        .prefetch_related("prior_labels")
        .order_by("-priority", "id")
    )


@dataclass(frozen=True)
class PairReview:
    """One surfaced pair as a lead reviews it: the model's scores beside what humans (and priors) said."""

    pair: Pair
    score: PairScore | None
    votes: list[tuple[str, int]]  # (choice, how many humans said it is more hallucinated), in Choice order
    consensus: dict | None  # the stored one (`Pair.consensus`), with its method; None before a refresh
    priors: list[PriorLabel]
    model_more_hallucinated: str | None  # the side the model finds worse; None when it cannot tell
    spans: list[dict]  # every label's spans on either answer (`pair_spans`)

    @property
    def spans_a(self) -> list[dict]:
        return on_side(self.spans, Side.A)

    @property
    def spans_b(self) -> list[dict]:
        return on_side(self.spans, Side.B)

    @property
    def model_agrees(self) -> bool | None:
        """Tell whether the model's side matches the humans' consensus; None when either has no side."""
        human = (self.consensus or {}).get("more_hallucinated")
        if human not in PREFERENCE or self.model_more_hallucinated is None:
            return None
        return human == self.model_more_hallucinated


def _model_side(score: PairScore | None) -> str | None:
    """Return the side the model thinks more hallucinated: p_a_better is the chance that a is the better one."""
    if score is None or score.p_a_better == 0.5:
        return None
    return Choice.B if score.p_a_better > 0.5 else Choice.A


def pair_reviews(pairs: Iterable[Pair]) -> list[PairReview]:
    """Return a review row per pair of `surfaced_pairs`, reading only what it prefetched."""
    rows = []
    for pair in pairs:
        counts = Counter(label.more_hallucinated for label in pair.shown_labels)
        score = pair_active_score(pair)
        rows.append(
            PairReview(
                pair=pair,
                score=score,
                votes=[(choice.value, counts[choice.value]) for choice in Choice],
                consensus=pair.consensus or None,
                priors=list(pair.prior_labels.all()),
                model_more_hallucinated=_model_side(score),
                spans=pair_spans(pair),
            )
        )
    return rows


def campaign_members(campaign: Campaign) -> list[Membership]:
    """Return the campaign's members, leads first, then by name, each with `labels`: the labels they gave here."""
    given = (
        Annotation.objects.filter(pair__campaign=campaign, annotator=OuterRef("user"))
        .order_by()
        .values("annotator")
        .annotate(n=Count("pk"))
        .values("n")
    )
    members = campaign.memberships.select_related("user").annotate(
        labels=Coalesce(Subquery(given, output_field=IntegerField()), 0)
    )
    roles = list(Membership.Role.values)
    return sorted(members, key=lambda m: (roles.index(m.role), m.user.get_username().lower()))
