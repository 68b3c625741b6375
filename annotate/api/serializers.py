"""Output shapes shared by several endpoints, and the base of every input serializer (`StrictInput`).

The pair representation is API.md's. What an annotator may see is decided here once: facts only when
the campaign shows them, and never gold, label counts, consensus, priority, surfacing or scores.
"""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.models import Campaign, ImportJob, Membership, ModelRun, Pair, PairScore
from annotate.quality.consensus import CONSENSUS_METHODS
from annotate.selectors import pair_active_score
from annotate.views.images import image_url


class StrictInput(serializers.Serializer):
    """A request body that refuses keys it does not know (API.md): a misspelt option must not be ignored."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                expected = ", ".join(self.fields)
                raise serializers.ValidationError({key: [f"Unknown field; expected {expected}."] for key in unknown})
        return super().to_internal_value(data)


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

    @extend_schema_field(ConsensusOutput(allow_null=True))
    def get_consensus(self, pair: Pair) -> dict | None:
        return pair.consensus or None  # {} until a worker refreshed it after the first label

    @extend_schema_field(PairScoreOutput(allow_null=True))
    def get_score(self, pair: Pair) -> dict | None:
        # Read from `pair_list`'s prefetch, so a page of pairs costs no query per pair; null before the first run.
        score = pair_active_score(pair)
        return None if score is None else PairScoreOutput(score).data


class CampaignOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "instructions", "status", "overlap", "strength_scale", "strength_labels",
            "show_facts", "gold_share", "rationale_required", "lease_seconds", "edit_window_minutes", "retrain_every",
            "max_extra_labels", "priority_weights", "surface_thresholds", "active_model", "created_at", "role",
            "counts",
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
