"""Output shapes shared by several endpoints; each API view keeps its own input serializer.

The pair representation is API.md's. What an annotator may see is decided here once: facts only when
the campaign shows them, and never gold, label counts, consensus, priority, surfacing or scores.
"""

from __future__ import annotations

from rest_framework import serializers

from annotate.models import Campaign, ImportJob, Membership, Pair
from annotate.selectors import majority_consensus
from annotate.views.images import image_url

# Fields only leads and researchers see on a pair (API.md: "an annotator never sees ...").
PRIVILEGED_PAIR_FIELDS = ("is_gold", "labels", "consensus", "priority", "surfaced", "score", "status")


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


class ConsensusOutput(serializers.Serializer):
    more_hallucinated = serializers.CharField(allow_null=True)
    strength = serializers.IntegerField(allow_null=True)
    agreement = serializers.FloatField()


class PairOutput(serializers.Serializer):
    """A pair; `context={"annotator_view": True, "show_facts": ...}` trims it to what an annotator may see."""

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

    def get_consensus(self, pair: Pair) -> ConsensusOutput | None:
        return majority_consensus(pair.annotations.all())

    def get_score(self, pair: Pair) -> dict | None:
        # Model scores arrive with the reward-model loop; until a run has scored a pair it has none.
        return None

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.context.get("annotator_view"):
            for name in PRIVILEGED_PAIR_FIELDS:
                fields.pop(name)
        return fields

    def to_representation(self, pair: Pair) -> dict:
        data = super().to_representation(pair)
        if self.context.get("annotator_view") and not self.context.get("show_facts"):
            data["item"].pop("facts")
        return data


class CampaignOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "instructions", "status", "overlap", "strength_scale", "strength_labels",
            "show_facts", "gold_share", "rationale_required", "lease_seconds", "retrain_every",
            "max_extra_labels", "priority_weights", "created_at", "role", "counts",
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
            "pairs_created", "errors", "created_at", "finished_at",
        ]  # fmt: skip
