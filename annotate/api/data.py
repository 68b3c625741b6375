"""Pairs with their labels, for leads and researchers."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import PagePagination, paginated
from annotate.api.serializers import PairOutput, StrictQuery
from annotate.models import Pair
from annotate.selectors import ANY_REASON, pair_list
from annotate.services.priorities import REASONS

ORDERINGS = {"-priority": ("-priority", "id"), "priority": ("priority", "id"), "id": ("id",), "-id": ("-id",)}


class CampaignPairsApi(APIView):
    """The campaign's pairs with label counts, consensus, model scores and surfacing reasons."""

    pagination_class = PagePagination

    class FilterSerializer(StrictQuery):
        status = serializers.ChoiceField(choices=Pair.Status.choices, required=False)
        surfaced = serializers.ChoiceField(
            choices=[*REASONS, ANY_REASON],
            required=False,
            help_text=f"Pairs surfaced for this reason, or for any reason with `{ANY_REASON}`.",
        )
        min_entropy = serializers.FloatField(
            min_value=0,
            max_value=1,
            required=False,
            help_text="Pairs whose entropy under the active model is at least this (bits); none before a run.",
        )
        is_gold = serializers.BooleanField(required=False, allow_null=True, default=None)
        ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default="id")

    @extend_schema(parameters=[FilterSerializer], responses={200: PairOutput(many=True)})
    def get(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        options = filters.validated_data
        pairs = pair_list(
            campaign=campaign,
            status=options.get("status", ""),
            surfaced=options.get("surfaced", ""),
            gold=options["is_gold"],
            min_entropy=options.get("min_entropy"),
        ).order_by(*ORDERINGS[options["ordering"]])
        return paginated(view=self, request=request, queryset=pairs, serializer_class=PairOutput)
