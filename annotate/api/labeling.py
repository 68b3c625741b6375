"""The annotator's loop over REST: lease the next pair, submit a label, skip, and change a label given lately."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import IdCursorPagination, paginated
from annotate.api.schema import CONFLICT, NOT_FOUND
from annotate.api.serializers import AnnotatorPairOutput, StrictInput
from annotate.models import HALLUCINATION_TYPES, Annotation, AnnotationVersion, Choice, Side
from annotate.selectors import annotation_list, pseudonym
from annotate.services.annotation_edits import annotation_edit
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.assignments import assignment_skip, lease_take


class NextPairOutput(serializers.Serializer):
    """The next-pair answer's shape, for the schema: `rewardlab_lease` builds the JSON itself (migration 0011)."""

    assignment = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    left = serializers.ChoiceField(choices=Side.choices)
    pair = AnnotatorPairOutput()


class NextPairApi(APIView):
    """Lease the next pair to label (annotators); 204 when nothing is left for you."""

    @extend_schema(
        responses={200: NextPairOutput, 204: OpenApiResponse(description="Nothing left to label."), 409: CONFLICT},
        operation_id="campaign_next_pair",
    )
    def get(self, request, campaign_id: int):
        lease = lease_take(campaign_id=campaign_id, user_id=request.user.pk)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return HttpResponse(lease.body, content_type="application/json")


class SpanInput(StrictInput):
    response = serializers.ChoiceField(choices=Side.choices)
    start = serializers.IntegerField(min_value=0)
    end = serializers.IntegerField(min_value=1)
    type = serializers.ChoiceField(choices=HALLUCINATION_TYPES, required=False, help_text="Optional: what is wrong.")


class AnnotationOutput(serializers.ModelSerializer):
    annotator = serializers.SerializerMethodField()
    campaign = serializers.IntegerField(source="pair.campaign_id")
    external_id = serializers.CharField(source="pair.item.external_id")
    a = serializers.CharField(source="pair.a.external_id")
    b = serializers.CharField(source="pair.b.external_id")

    class Meta:
        model = Annotation
        fields = [
            "id", "assignment", "pair", "campaign", "external_id", "a", "b", "annotator", "more_hallucinated",
            "strength", "hallucination_types", "spans", "rationale", "shown_left", "duration_ms", "created_at",
        ]  # fmt: skip

    def get_annotator(self, annotation: Annotation) -> str:
        return pseudonym(user_id=annotation.annotator_id, campaign_id=annotation.pair.campaign_id)


class AnnotationVersionOutput(serializers.ModelSerializer):
    replaced_at = serializers.DateTimeField(allow_null=True, help_text="Null for the latest version.")

    class Meta:
        model = AnnotationVersion
        fields = [
            "number", "more_hallucinated", "strength", "hallucination_types", "spans", "rationale", "created_at",
            "replaced_at",
        ]  # fmt: skip


class AnnotationDetailOutput(AnnotationOutput):
    """One label as it is now, with every version it had, oldest first; the last is the label itself."""

    versions = serializers.SerializerMethodField()

    class Meta(AnnotationOutput.Meta):
        fields = [*AnnotationOutput.Meta.fields, "version", "edited_at", "versions"]

    @extend_schema_field(AnnotationVersionOutput(many=True))
    def get_versions(self, annotation: Annotation) -> list[dict]:
        return AnnotationVersionOutput([*annotation.versions.all(), annotation.as_version()], many=True).data


class AnnotationCreateApi(APIView):
    """Submit a label for your assignment; resubmitting returns the first annotation (200), never a second."""

    class InputSerializer(StrictInput):
        assignment = serializers.IntegerField()
        more_hallucinated = serializers.ChoiceField(choices=Choice.choices)
        strength = serializers.IntegerField(required=False, allow_null=True, default=None)
        hallucination_types = serializers.ListField(
            child=serializers.ChoiceField(choices=HALLUCINATION_TYPES), required=False, default=list
        )
        spans = SpanInput(many=True, required=False, default=list)
        rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
        duration_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)

    @extend_schema(
        request=InputSerializer,
        responses={201: AnnotationOutput, 200: AnnotationOutput, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        label = LabelInput(
            more_hallucinated=data["more_hallucinated"],
            strength=data["strength"],
            hallucination_types=tuple(data["hallucination_types"]),
            spans=tuple(dict(span) for span in data["spans"]),
            rationale=data["rationale"],
            duration_ms=data["duration_ms"],
        )
        submitted = annotation_save(assignment_id=data["assignment"], user_id=request.user.pk, label=label)
        code = status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK
        return Response(submitted.body, status=code)


class AnnotationDetailApi(APIView):
    """GET one label with its versions (its annotator, leads, researchers). PATCH changes your own label within
    the campaign's edit window; the version it replaces is kept, and the label stays one label (409 after it)."""

    class InputSerializer(StrictInput):
        more_hallucinated = serializers.ChoiceField(choices=Choice.choices, required=False)
        strength = serializers.IntegerField(required=False, allow_null=True)
        hallucination_types = serializers.ListField(
            child=serializers.ChoiceField(choices=HALLUCINATION_TYPES), required=False
        )
        spans = SpanInput(many=True, required=False)
        rationale = serializers.CharField(required=False, allow_blank=True, max_length=10000)

    @extend_schema(responses={200: AnnotationDetailOutput})
    def get(self, request, annotation_id: int):
        annotation = access.annotation_for(request.user, annotation_id, access.LABEL | access.READ_DATA)
        return Response(AnnotationDetailOutput(annotation).data)

    @extend_schema(request=InputSerializer, responses={200: AnnotationDetailOutput, 409: CONFLICT})
    def patch(self, request, annotation_id: int):
        access.annotation_for(request.user, annotation_id, access.LABEL)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "spans" in changes:
            changes["spans"] = [dict(span) for span in changes["spans"]]
        annotation = annotation_edit(annotation_id=annotation_id, user_id=request.user.pk, changes=changes)
        return Response(AnnotationDetailOutput(annotation).data)


class AssignmentSkipApi(APIView):
    """Give a leased pair back; you will not be shown it again."""

    @extend_schema(request=None, responses={204: None, 409: CONFLICT})
    def post(self, request, assignment_id: int):
        assignment_skip(assignment_id=assignment_id, annotator=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CampaignAnnotationsApi(APIView):
    """Every human label of the campaign (leads, researchers), oldest first, cursor-paginated."""

    pagination_class = IdCursorPagination

    @extend_schema(responses={200: AnnotationOutput(many=True)})
    def get(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
        return paginated(
            view=self,
            request=request,
            queryset=annotation_list(campaign=campaign),
            serializer_class=AnnotationOutput,
        )
