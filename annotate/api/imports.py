"""Import packages over REST: upload (lead) and job status."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import PagePagination, paginated
from annotate.api.serializers import ImportJobOutput
from annotate.services.imports import import_job_create


class CampaignImportsApi(APIView):
    """GET the campaign's import jobs; POST a package (.zip, .jsonl, .json, .parquet) to import in the background."""

    pagination_class = PagePagination
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()

    @extend_schema(responses={200: ImportJobOutput(many=True)}, operation_id="campaign_imports_list")
    def get(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
        return paginated(
            view=self, request=request, queryset=campaign.import_jobs.all(), serializer_class=ImportJobOutput
        )

    @extend_schema(request=InputSerializer, responses={202: ImportJobOutput}, operation_id="campaign_imports_create")
    def post(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = import_job_create(campaign=campaign, upload=serializer.validated_data["file"], created_by=request.user)
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobDetailApi(APIView):
    """An import job's status, progress and, when it failed, every error with its line."""

    @extend_schema(responses={200: ImportJobOutput})
    def get(self, request, job_id: int):
        return Response(ImportJobOutput(access.import_job_for(request.user, job_id)).data)
