"""Output shapes shared by several endpoints, and the base of every input serializer (`StrictInput`).

The pair representation is API.md's. What an annotator may see is decided here once: facts only when
the campaign shows them, and never gold, label counts, consensus, priority, surfacing, scores or spans.
"""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.api.pagination import PAGING_PARAMETERS
from annotate.models import Campaign, ImportJob, Membership, ModelRun, Pair, PairScore
from annotate.quality.consensus import CONSENSUS_METHODS
from annotate.selectors import pair_active_score, pair_spans
from annotate.views.images import image_url


def _one_of(values: list[str]) -> str:
    """Return `a, b or c`: the valid values, as an error message lists them."""
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _say_valid_choices(field: serializers.Field) -> None:
    """Make a choice field's refusal list the valid values (API.md): `"all" is not a valid choice; expected
    human or with_priors.` rather than DRF's bare `"all" is not a valid choice.`; a list's items too."""
    if isinstance(field, serializers.ListField):
        field = field.child
    if isinstance(field, serializers.ChoiceField):
        # The message is a format string (DRF fills in `{input}`), so braces in a choice are doubled.
        valid = _one_of([str(value).replace("{", "{{").replace("}", "}}") for value in field.choices])
        field.error_messages["invalid_choice"] = f'"{{input}}" is not a valid choice; expected {valid}.'


class StrictInput(serializers.Serializer):
    """A request body that refuses keys it does not know (API.md): a misspelt option must not be ignored."""

    # Its choice fields name the valid values when they refuse one (get_fields); said here rather than in the
    # docstring, which the schema shows as every input's description.

    # Keys that are not fields but are still read, by someone else (StrictQuery: the paginator's).
    known_elsewhere: frozenset[str] = frozenset()

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            _say_valid_choices(field)
        return fields

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = [name for name, field in self.fields.items() if not field.read_only]
            unknown = sorted(set(data) - set(writable) - self.known_elsewhere)
            if unknown:
                expected = ", ".join([*writable, *sorted(self.known_elsewhere)])
                raise serializers.ValidationError({key: [f"Unknown field; expected {expected}."] for key in unknown})
        return super().to_internal_value(data)


class StrictQuery(StrictInput):
    """A list's query-string filters, refusing parameters it does not know but the paginator's."""

    known_elsewhere = PAGING_PARAMETERS


class ErrorOutput(serializers.Serializer):
    """Every error's body (annotate.api.errors); some errors add keys of their own, such as an import's `errors`."""

    detail = serializers.CharField(help_text="What went wrong, in the state the server found.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid input: the messages of each field that was wrong.",
    )


class ResponseOutput(serializers.Serializer):
    id = serializers.CharField(source="external_id")
    text = serializers.CharField()
    model = serializers.CharField()


class ItemOutput(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    image_url = serializers.SerializerMethodField()
    prompt = serializers.CharField()
    facts = serializers.JSONField()

    def get_image_url(self, item) -> str:
        return image_url(item.image)


class AnnotatorItemOutput(ItemOutput):
    """An item as an annotator sees it: `facts` only when `context={"show_facts": True}` (the campaign's setting)."""

    facts = serializers.JSONField(required=False, help_text="Present only when the campaign shows facts to annotators.")

    def to_representation(self, item) -> dict:
        data = super().to_representation(item)
        if not self.context.get("show_facts"):
            data.pop("facts")
        return data


class ConsensusOutput(serializers.Serializer):
    """A pair's stored consensus (`Pair.consensus`), the verdict exports use, and how it was reached."""

    more_hallucinated = serializers.CharField(allow_null=True)
    strength = serializers.IntegerField(allow_null=True)
    agreement = serializers.FloatField()
    method = serializers.ChoiceField(choices=CONSENSUS_METHODS)


class PairScoreOutput(serializers.ModelSerializer):
    """The active model's scores of a pair (API.md, "Model scores on a pair"); `model` is the run's id."""

    model = serializers.IntegerField(source="run_id")

    class Meta:
        model = PairScore
        fields = [
            "p_a_better", "entropy", "mutual_info", "text_only_p_a_better", "shortcut_score", "noise_score",
            "weight", "model",
        ]  # fmt: skip
        read_only_fields = fields  # an output: every field is always present, so the schema marks it required


class MarkedSpanOutput(serializers.Serializer):
    """A span one annotator marked (API.md, "Labels"), in the response's own text, with who marked it."""

    response = serializers.ChoiceField(choices=["a", "b"])
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    type = serializers.CharField(required=False, help_text="The hallucination type, when the annotator gave one.")
    annotator = serializers.CharField(help_text="The annotator's pseudonym in this campaign.")


class AnnotatorPairOutput(serializers.Serializer):
    """A pair as an annotator sees it (API.md: "an annotator never sees" its gold flag, counts, consensus, scores)."""

    id = serializers.IntegerField()
    item = AnnotatorItemOutput()
    a = ResponseOutput()
    b = ResponseOutput()


class PairOutput(serializers.Serializer):
    """A pair as leads and researchers see it, with its labels, consensus, priority, surfacing and model scores."""

    id = serializers.IntegerField()
    item = ItemOutput()
    a = ResponseOutput()
    b = ResponseOutput()
    is_gold = serializers.BooleanField()
    status = serializers.CharField()
    labels = serializers.IntegerField(source="labels_count")
    consensus = serializers.SerializerMethodField()
    priority = serializers.FloatField()
    surfaced = serializers.ListField(child=serializers.CharField())
    score = serializers.SerializerMethodField()
    spans = serializers.SerializerMethodField()

    @extend_schema_field(ConsensusOutput(allow_null=True))
    def get_consensus(self, pair: Pair) -> dict | None:
        return pair.consensus or None  # {} until a worker refreshed it after the first label

    @extend_schema_field(PairScoreOutput(allow_null=True))
    def get_score(self, pair: Pair) -> dict | None:
        # Read from `pair_list`'s prefetch, so a page of pairs costs no query per pair; null before the first run.
        score = pair_active_score(pair)
        return None if score is None else PairScoreOutput(score).data

    @extend_schema_field(MarkedSpanOutput(many=True))
    def get_spans(self, pair: Pair) -> list[dict]:
        # Every human label's spans, from `pair_list`'s prefetch; the pair list is for leads and researchers only.
        return pair_spans(pair)


class CampaignOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "instructions", "status", "overlap", "strength_scale", "strength_labels",
            "show_facts", "gold_share", "rationale_required", "spans", "lease_seconds", "edit_window_minutes",
            "retrain_every",
            "max_extra_labels", "priority_weights", "surface_thresholds", "gold_feedback", "active_model",
            "created_at", "role", "counts",
        ]  # fmt: skip

    def get_role(self, campaign: Campaign) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(campaign.pk)

    def get_counts(self, campaign: Campaign) -> dict | None:
        counts = self.context.get("counts", {})
        return counts.get(campaign.pk)


class MembershipOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]


class ImportJobOutput(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = [
            "id", "campaign", "filename", "status", "progress", "lines_total", "items_created",
            "pairs_created", "errors", "error", "attempts", "created_at", "finished_at", "mapping",
        ]  # fmt: skip


class ModelRunOutput(serializers.ModelSerializer):
    """A reward-model run; `context={"active_model_id": ...}` tells which run is the campaign's model now."""

    requested_by = serializers.CharField(source="requested_by.username", allow_null=True)
    is_active = serializers.SerializerMethodField()

    class Meta:
        model = ModelRun
        fields = [
            "id", "campaign", "status", "stage", "progress", "trigger", "requested_by", "labels_at_request",
            "queue", "worker", "device", "error", "attempts", "metrics", "artifact_sha256", "is_active",
            "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_is_active(self, run: ModelRun) -> bool:
        return run.pk == self.context["active_model_id"]
