"""Import packages over REST: upload (lead), with a column mapping for a file in no known layout, and job status."""

from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import PagePagination, paginated
from annotate.api.serializers import ImportJobOutput, StrictInput
from annotate.services.imports import import_job_create


@extend_schema_field(OpenApiTypes.STR)
class MappingField(serializers.Field):
    """A column mapping as JSON text (multipart sends text), or the name of a mapping saved for the campaign."""

    default_error_messages = {"invalid": "Expected a JSON object or the name of a saved mapping, got {value}."}

    def to_internal_value(self, data: object) -> dict | str:
        if isinstance(data, dict):
            return data
        text = data.strip() if isinstance(data, str) else ""
        if not text:
            self.fail("invalid", value=json.dumps(data))
        if not text.startswith("{"):
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise serializers.ValidationError(f"Not valid JSON: {exc.msg} at column {exc.colno}.") from exc

    def to_representation(self, value: object) -> object:
        return value


class CampaignImportsApi(APIView):
    """GET the campaign's import jobs; POST a package (.zip, .jsonl, .json, .parquet) to import in the background."""

    pagination_class = PagePagination
    parser_classes = [MultiPartParser]

    class InputSerializer(StrictInput):
        file = serializers.FileField()
        mapping = MappingField(
            required=False,
            help_text=(
                "For a file in no known layout: a column mapping as a JSON object, e.g. "
                '{"id": "qid", "prompt": "question", "image": "img", "answers": ["answer_a", "answer_b"], '
                '"preference": {"column": "winner", "means": "better", "values": {"A": 1, "B": 2}}, '
                '"facts": {"caption": "caption"}, "source": "my-dataset"} (or "chosen"/"rejected" columns in '
                'place of "answers" and "preference"), or the name of a mapping saved for the campaign on the '
                "import page. Every line is read through it; a bad mapping is a 400 naming the field "
                "(`mapping.preference.values`)."
            ),
        )

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
        data = serializer.validated_data
        job = import_job_create(
            campaign=campaign, upload=data["file"], mapping=data.get("mapping"), created_by=request.user
        )
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobDetailApi(APIView):
    """An import job's status, progress and, when it failed, every error with its line."""

    @extend_schema(responses={200: ImportJobOutput})
    def get(self, request, job_id: int):
        return Response(ImportJobOutput(access.import_job_for(request.user, job_id)).data)
