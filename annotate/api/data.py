"""Pairs with their labels, for leads and researchers."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import paginated
from annotate.api.serializers import PairOutput
from annotate.models import Pair
from annotate.selectors import pair_list

ORDERINGS = {"-priority": ("-priority", "id"), "priority": ("priority", "id"), "id": ("id",), "-id": ("-id",)}


class CampaignPairsApi(APIView):
    """The campaign's pairs with label counts, consensus, model scores and surfacing reasons."""

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Pair.Status.choices, required=False)
        surfaced = serializers.CharField(required=False, max_length=40)
        is_gold = serializers.BooleanField(required=False, allow_null=True, default=None)
        ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default="id")

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=Pair.Status.values),
            OpenApiParameter("surfaced", OpenApiTypes.STR),
            OpenApiParameter("is_gold", OpenApiTypes.BOOL),
            OpenApiParameter("ordering", OpenApiTypes.STR, enum=list(ORDERINGS)),
        ],
        responses={200: PairOutput(many=True)},
    )
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
        ).order_by(*ORDERINGS[options["ordering"]])
        return paginated(view=self, request=request, queryset=pairs, serializer_class=PairOutput)
