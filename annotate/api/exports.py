"""Export snapshots over REST (leads, researchers): ask for one, follow it, download its file.

A snapshot is written by a worker; POST answers 202 with the queued job. The download streams the file
with its length, its SHA-256 as ETag and a file name, and answers 409 until the snapshot has succeeded.
"""

from __future__ import annotations

from django.http import FileResponse
from django.urls import reverse
from django.utils.cache import get_conditional_response
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import PagePagination, paginated
from annotate.api.serializers import ErrorOutput, StrictInput
from annotate.exports.filters import DEFAULT_TEST_SHARE, GOLD_CHOICES, LABEL_CHOICES, MAX_TEST_SHARE
from annotate.models import ExportSnapshot
from annotate.services.exports import (
    MEDIA_TYPES,
    download_name,
    export_snapshot_create,
    export_snapshot_file,
    export_snapshot_for,
    exports_of,
    media_type,
)


class ExportFiltersInput(StrictInput):
    """The filters of a snapshot; every one is optional (annotate.exports.filters)."""

    min_agreement = serializers.FloatField(
        min_value=0, max_value=1, required=False, help_text="Keep pairs whose label agreement is at least this."
    )
    min_labels = serializers.IntegerField(
        min_value=0, required=False, help_text="Keep pairs with at least this many labels behind their label."
    )
    exclude_suspected_noise = serializers.BooleanField(
        required=False, help_text="Leave out pairs the snapshot's model run flags as suspected noise."
    )
    gold = serializers.ChoiceField(choices=GOLD_CHOICES, required=False, help_text="Gold pairs in, out, or alone.")
    labels = serializers.ChoiceField(
        choices=LABEL_CHOICES,
        required=False,
        help_text="Human labels only, or also prior labels on pairs no human labeled (weighted by the prior trust).",
    )
    labeled_from = serializers.DateField(required=False, allow_null=True, help_text="Human labels from this day.")
    labeled_to = serializers.DateField(required=False, allow_null=True, help_text="Human labels up to this day.")
    test_share = serializers.FloatField(
        min_value=0,
        max_value=MAX_TEST_SHARE,
        required=False,
        help_text=f"Share of images in the test split (default {DEFAULT_TEST_SHARE}); no image is in both splits.",
    )
    images = serializers.BooleanField(
        required=False, help_text="A .zip with the images and a dataset card (default), or a bare .jsonl."
    )


class ExportSnapshotOutput(serializers.ModelSerializer):
    """A snapshot: its job state, and once written its row count, size, SHA-256 and download URL."""

    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportSnapshot
        fields = [
            "id", "campaign", "format", "container", "filters", "status", "progress", "rows", "sha256", "size_bytes",
            "model_run", "campaign_settings", "cutoff", "code_version", "error", "attempts", "created_by",
            "created_at", "finished_at", "download_url",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field({"type": "string", "format": "uri-reference", "nullable": True})
    def get_download_url(self, snapshot: ExportSnapshot) -> str | None:
        if snapshot.status != ExportSnapshot.Status.SUCCEEDED:
            return None
        return reverse("api-export-download", args=[snapshot.pk])


def _flat_errors(errors: dict, prefix: str = "") -> dict[str, list[str]]:
    """Name nested fields with dots (`filters.min_agreement`), as the service's own errors do."""
    flat = {}
    for key, value in errors.items():
        if isinstance(value, dict):
            flat.update(_flat_errors(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = [str(message) for message in value]
    return flat


class CampaignExportsApi(APIView):
    """GET the campaign's snapshots, newest first; POST asks for a new one, written by a worker (202)."""

    pagination_class = PagePagination

    class InputSerializer(StrictInput):
        format = serializers.ChoiceField(choices=ExportSnapshot.Format.choices)
        filters = ExportFiltersInput(required=False)
        container = serializers.ChoiceField(
            choices=ExportSnapshot.Container.choices,
            default=ExportSnapshot.Container.JSONL,
            help_text="jsonl: a .zip of JSONL and images (a bare .jsonl without images); parquet: a .zip laid out "
            "as a Hugging Face dataset repository, images embedded.",
        )

    @extend_schema(responses={200: ExportSnapshotOutput(many=True)}, operation_id="campaign_exports_list")
    def get(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
        return paginated(
            view=self, request=request, queryset=exports_of(campaign), serializer_class=ExportSnapshotOutput
        )

    @extend_schema(
        request=InputSerializer, responses={202: ExportSnapshotOutput}, operation_id="campaign_exports_create"
    )
    def post(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
        serializer = self.InputSerializer(data=request.data)
        if not serializer.is_valid():
            raise ValidationError(_flat_errors(serializer.errors))
        data = serializer.validated_data
        snapshot = export_snapshot_create(
            campaign=campaign,
            format=data["format"],
            filters=dict(data.get("filters", {})),
            container=data["container"],
            created_by=request.user,
        )
        return Response(ExportSnapshotOutput(snapshot).data, status=status.HTTP_202_ACCEPTED)


class ExportSnapshotDetailApi(APIView):
    """A snapshot's status, progress, and what it records: filters, model run, settings, cutoff, checksum."""

    @extend_schema(responses={200: ExportSnapshotOutput}, operation_id="exports_retrieve")
    def get(self, request, export_id: int):
        return Response(ExportSnapshotOutput(export_snapshot_for(request.user, export_id)).data)


class ExportSnapshotDownloadApi(APIView):
    """The snapshot's file, streamed; the same bytes every time (ETag = its SHA-256). 409 until it succeeded."""

    @extend_schema(
        responses={
            **{(200, kind): OpenApiResponse(OpenApiTypes.BINARY) for kind in MEDIA_TYPES.values()},
            304: OpenApiResponse(description="Not modified: If-None-Match names this file's ETag."),
            409: OpenApiResponse(
                ErrorOutput, description="The snapshot is not written yet (`status` says where it is)."
            ),
        },
        operation_id="exports_download",
    )
    def get(self, request, export_id: int):
        snapshot = export_snapshot_for(request.user, export_id)
        path = export_snapshot_file(snapshot)
        etag = f'"{snapshot.sha256}"'
        unchanged = get_conditional_response(request, etag=etag)
        if unchanged is not None:
            return unchanged
        response = FileResponse(
            path.open("rb"), as_attachment=True, filename=download_name(snapshot), content_type=media_type(snapshot)
        )
        response["ETag"] = etag
        return response
