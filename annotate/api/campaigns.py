"""Campaigns and their members."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import access
from annotate.api.pagination import PagePagination, paginated
from annotate.api.permissions import StaffMayWrite
from annotate.api.schema import CONFLICT
from annotate.api.serializers import CampaignOutput, MembershipOutput, StrictInput
from annotate.models import Campaign, Membership
from annotate.selectors import campaign_counts
from annotate.services.campaigns import (
    MAX_EDIT_WINDOW_MINUTES,
    MAX_EXTRA_LABELS,
    MAX_STRENGTH_LABEL_LENGTH,
    campaign_create,
    campaign_status_set,
    campaign_update,
    membership_set,
)


class CampaignSettingsInput(StrictInput):
    """Every setting a lead may set; all optional so PATCH can send a few."""

    name = serializers.CharField(max_length=200, required=False)
    instructions = serializers.CharField(allow_blank=True, required=False)
    status = serializers.ChoiceField(choices=Campaign.Status.choices, required=False)
    overlap = serializers.IntegerField(min_value=1, max_value=50, required=False)
    strength_scale = serializers.IntegerField(min_value=2, max_value=10, required=False)
    strength_labels = serializers.ListField(
        child=serializers.CharField(max_length=MAX_STRENGTH_LABEL_LENGTH), required=False
    )
    show_facts = serializers.BooleanField(required=False)
    gold_share = serializers.FloatField(min_value=0, max_value=1, required=False)
    rationale_required = serializers.BooleanField(required=False)
    spans = serializers.ChoiceField(choices=Campaign.Spans.choices, required=False)
    gold_feedback = serializers.BooleanField(required=False)
    lease_seconds = serializers.IntegerField(min_value=30, max_value=86400, required=False)
    edit_window_minutes = serializers.IntegerField(min_value=0, max_value=MAX_EDIT_WINDOW_MINUTES, required=False)
    retrain_every = serializers.IntegerField(min_value=1, required=False)
    max_extra_labels = serializers.IntegerField(min_value=0, max_value=MAX_EXTRA_LABELS, required=False)
    priority_weights = serializers.DictField(child=serializers.FloatField(), required=False)
    surface_thresholds = serializers.DictField(child=serializers.FloatField(), required=False)


class CampaignCreateInput(CampaignSettingsInput):
    name = serializers.CharField(max_length=200)


def _campaign_response(campaign: Campaign, request, *, code: int = status.HTTP_200_OK) -> Response:
    role = "staff" if request.user.is_staff else access.role_of(request.user, campaign)
    context = {"roles": {campaign.pk: role}, "counts": {campaign.pk: campaign_counts(campaign)}}
    return Response(CampaignOutput(campaign, context=context).data, status=code)


class CampaignsApi(APIView):
    """GET lists the user's campaigns; POST (staff) creates one, its creator becoming lead."""

    pagination_class = PagePagination
    permission_classes = [IsAuthenticated, StaffMayWrite]

    @extend_schema(responses={200: CampaignOutput(many=True)}, operation_id="campaigns_list")
    def get(self, request):
        campaigns = access.campaigns_visible_to(request.user).distinct().order_by("-created_at", "-id")
        roles = dict(Membership.objects.filter(user=request.user).values_list("campaign_id", "role"))
        return paginated(
            view=self,
            request=request,
            queryset=campaigns,
            serializer_class=CampaignOutput,
            context={"roles": roles},
        )

    @extend_schema(
        request=CampaignCreateInput, responses={201: CampaignOutput, 409: CONFLICT}, operation_id="campaigns_create"
    )
    def post(self, request):
        serializer = CampaignCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = campaign_create(created_by=request.user, **serializer.validated_data)
        return _campaign_response(campaign, request, code=status.HTTP_201_CREATED)


class CampaignDetailApi(APIView):
    """GET a campaign's settings and live counts (members); PATCH its settings (lead)."""

    @extend_schema(responses={200: CampaignOutput}, operation_id="campaigns_retrieve")
    def get(self, request, campaign_id: int):
        return _campaign_response(access.campaign_for(request.user, campaign_id), request)

    @extend_schema(
        request=CampaignSettingsInput, responses={200: CampaignOutput, 409: CONFLICT}, operation_id="campaigns_update"
    )
    def patch(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
        serializer = CampaignSettingsInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "status" in changes:  # who may reopen a closed campaign is the service's rule (staff only)
            campaign = campaign_status_set(campaign=campaign, status=changes.pop("status"), by=request.user)
        if changes:
            campaign = campaign_update(campaign=campaign, **changes)
        return _campaign_response(campaign, request)


class CampaignMembersApi(APIView):
    """GET the members (lead); POST adds a user with a role or changes their role (lead)."""

    pagination_class = PagePagination

    class InputSerializer(StrictInput):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Membership.Role.choices)

    @extend_schema(responses={200: MembershipOutput(many=True)}, operation_id="campaign_members_list")
    def get(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
        members = campaign.memberships.select_related("user").order_by("id")
        return paginated(view=self, request=request, queryset=members, serializer_class=MembershipOutput)

    @extend_schema(
        request=InputSerializer, responses={201: MembershipOutput, 409: CONFLICT}, operation_id="campaign_members_set"
    )
    def post(self, request, campaign_id: int):
        campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = membership_set(campaign=campaign, **serializer.validated_data)
        return Response(MembershipOutput(membership).data, status=status.HTTP_201_CREATED)
