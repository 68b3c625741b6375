"""A campaign's quality numbers over REST (API.md: `GET /campaigns/{id}/stats/`), the dashboard's numbers.

Annotators appear under their pseudonymous id, as in the annotations endpoint; leads (and staff) also get
each one's username beside it, as their dashboard shows names (API.md), researchers never do.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import access
from annotate.api.serializers import ConsensusOutput
from annotate.quality.bias import FLAG_MIN_EFFECT, FLAG_P_VALUE
from annotate.quality.consensus import METHOD_DAWID_SKENE, METHOD_MAJORITY
from annotate.stats import campaign_stats

CONSENSUS_METHODS = [METHOD_DAWID_SKENE, METHOD_MAJORITY]


class DayOutput(serializers.Serializer):
    date = serializers.DateField()
    labels = serializers.IntegerField()
    cumulative = serializers.IntegerField()


class ProgressOutput(serializers.Serializer):
    pairs = serializers.IntegerField()
    complete = serializers.IntegerField()
    open = serializers.IntegerField()
    gold = serializers.IntegerField()
    human_labels = serializers.IntegerField()
    share_complete = serializers.FloatField(
        allow_null=True, help_text="Complete pairs among the non-gold ones (gold pairs stay open for everyone)."
    )
    labels_per_day = DayOutput(many=True, source="days", help_text="Every day (UTC) from the first label on.")


class AlphaOutput(serializers.Serializer):
    value = serializers.FloatField(allow_null=True, help_text="Krippendorff's alpha; null when undefined.")
    pairs = serializers.IntegerField(help_text="Pairs with two or more values, which alpha is computed on.")


class VotesOutput(serializers.Serializer):
    a = serializers.IntegerField()
    b = serializers.IntegerField()
    both = serializers.IntegerField()
    neither = serializers.IntegerField()


class StatsConsensusOutput(ConsensusOutput):
    method = serializers.ChoiceField(choices=CONSENSUS_METHODS)


class DisagreedPairOutput(serializers.Serializer):
    pair = serializers.IntegerField(source="pair_id")
    external_id = serializers.CharField()
    votes = VotesOutput()
    consensus = StatsConsensusOutput()


class AgreementOutput(serializers.Serializer):
    alpha_choice = AlphaOutput(help_text="Nominal, on more_hallucinated.")
    alpha_strength = AlphaOutput(help_text="Ordinal, on the signed strength: a is −strength, b +strength, else 0.")
    method = serializers.ChoiceField(
        choices=CONSENSUS_METHODS, help_text="How consensus is reached now: dawid-skene once labels allow."
    )
    multi_labeled = serializers.IntegerField(help_text="Pairs with two or more human labels.")
    threshold = serializers.FloatField(
        help_text="A pair is disputed when its most common answer has at most this share of the votes."
    )
    disagreements = serializers.IntegerField()
    disagreed = DisagreedPairOutput(many=True, help_text="The most disputed pairs, most disputed first.")


class ShareTestOutput(serializers.Serializer):
    k = serializers.IntegerField()
    n = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True, help_text="Two-sided exact binomial test against 0.5.")
    flagged = serializers.BooleanField()


class TimingOutput(serializers.Serializer):
    n = serializers.IntegerField(help_text="Labels with a recorded duration.")
    median_s = serializers.FloatField(allow_null=True)
    p90_s = serializers.FloatField(allow_null=True)


class GoldOutput(serializers.Serializer):
    answered = serializers.IntegerField()
    correct = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)


class AnnotatorOutput(serializers.Serializer):
    """One annotator's row; `username` only with `context={"show_usernames": True}` (the reader leads the campaign)."""

    annotator = serializers.CharField(source="pseudonym")
    username = serializers.CharField(required=False, help_text="Present for the campaign's leads only.")
    labels = serializers.IntegerField()
    gold = GoldOutput()
    gold_failing = serializers.BooleanField(help_text="Judged on enough gold answers and below the minimum.")
    paused = serializers.BooleanField()
    paused_reason = serializers.CharField()
    agreement = serializers.FloatField(allow_null=True, help_text="Share of labels matching the consensus.")
    agreement_n = serializers.IntegerField()
    reliability = serializers.FloatField(allow_null=True, help_text="Dawid–Skene's estimated accuracy.")
    alpha_choice = AlphaOutput(help_text="Against the others' leave-one-out consensus.")
    alpha_strength = AlphaOutput()
    time = TimingOutput()
    position_bias = ShareTestOutput(source="position", help_text="Flagged the answer shown on the left.")
    length_bias = ShareTestOutput(source="length", help_text="Preferred the longer answer.")

    def to_representation(self, row) -> dict:
        data = super().to_representation(row)
        if not self.context.get("show_usernames"):
            data.pop("username")
        return data


class BiasesOutput(serializers.Serializer):
    position_bias = ShareTestOutput(source="position")
    length_bias = ShareTestOutput(source="length")
    time = TimingOutput()


class ModelRoundOutput(serializers.Serializer):
    run = serializers.IntegerField()
    finished_at = serializers.DateTimeField(allow_null=True)
    human_labels = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True, help_text="Held-out pairwise accuracy.")
    ece = serializers.FloatField(allow_null=True)
    text_only_accuracy = serializers.FloatField(allow_null=True)
    gold_accuracy = serializers.FloatField(allow_null=True)


class RulesOutput(serializers.Serializer):
    min_gold_accuracy = serializers.FloatField(source="campaign.min_gold_accuracy")
    gold_min_answered = serializers.IntegerField(source="campaign.gold_min_answered")
    flag_p_value = serializers.SerializerMethodField()
    flag_min_effect = serializers.SerializerMethodField()

    def get_flag_p_value(self, stats) -> float:
        return FLAG_P_VALUE

    def get_flag_min_effect(self, stats) -> float:
        return FLAG_MIN_EFFECT


class CampaignStatsApi(APIView):
    """Progress, agreement, annotator quality, biases and model rounds of a campaign (leads, researchers)."""

    class OutputSerializer(serializers.Serializer):
        campaign = serializers.IntegerField(source="campaign.pk")
        progress = ProgressOutput()
        agreement = AgreementOutput()
        annotators = AnnotatorOutput(many=True)
        biases = BiasesOutput()
        model_rounds = ModelRoundOutput(many=True, source="rounds")
        rules = RulesOutput(source="*")

    @extend_schema(responses={200: OutputSerializer}, operation_id="campaign_stats")
    def get(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
        # `campaign_for` read the caller's role already (staff act as every role).
        context = {"show_usernames": request.user.is_staff or campaign.my_role in access.MANAGE}
        return Response(self.OutputSerializer(campaign_stats(campaign), context=context).data)
