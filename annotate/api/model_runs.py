"""Reward-model runs over REST: list and start a campaign's retrains (leads), follow one run (leads, researchers)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import PagePagination, paginated
from annotate.api.serializers import ModelRunOutput
from annotate.selectors import model_run_for, model_runs_of
from annotate.services.model_runs import model_run_request_by_lead


class CampaignModelRunsApi(APIView):
    """GET the campaign's runs, newest first; POST starts a retrain, refused (409) while one is queued or running."""

    pagination_class = PagePagination

    class ConflictSerializer(serializers.Serializer):
        detail = serializers.CharField()
        run = serializers.IntegerField(help_text="The run already queued or running.")

    @extend_schema(responses={200: ModelRunOutput(many=True)}, operation_id="campaign_models_list")
    def get(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
        return paginated(
            view=self,
            request=request,
            queryset=model_runs_of(campaign),
            serializer_class=ModelRunOutput,
            context={"active_model_id": campaign.active_model_id},
        )

    @extend_schema(
        request=None,
        responses={
            202: ModelRunOutput,
            409: OpenApiResponse(ConflictSerializer, description="A run is already queued or running."),
        },
        operation_id="campaign_models_create",
    )
    def post(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
        run = model_run_request_by_lead(campaign=campaign, requested_by=request.user)
        output = ModelRunOutput(run, context={"active_model_id": campaign.active_model_id})
        return Response(output.data, status=status.HTTP_202_ACCEPTED)


class ModelRunDetailApi(APIView):
    """A run's status, stage, progress, metrics and artifact checksum, and whether it is the campaign's model."""

    @extend_schema(responses={200: ModelRunOutput}, operation_id="models_retrieve")
    def get(self, request, run_id: int):
        run = model_run_for(request.user, run_id, access.READ_DATA)
        return Response(ModelRunOutput(run, context={"active_model_id": run.campaign.active_model_id}).data)
