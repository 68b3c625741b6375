"""Logins and users: token exchange (throttled) and user creation by staff."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.schema import CONFLICT
from annotate.api.serializers import ErrorOutput, StrictInput
from annotate.services.campaigns import user_create
from annotate.throttles import AUTH_THROTTLES


class TokenCreateApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Per address and username, and per address alone (annotate/throttles.py); the login form shares them.
    throttle_classes = list(AUTH_THROTTLES)

    class InputSerializer(StrictInput, AuthTokenSerializer):
        """DRF's username and password check, refusing any other key like every body here (API.md)."""

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            429: OpenApiResponse(ErrorOutput, description="Too many attempts; `detail` says when to retry."),
        },
        operation_id="auth_token_create",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response(self.OutputSerializer({"token": token.key}).data)


class UserCreateApi(APIView):
    permission_classes = [IsAdminUser]

    class InputSerializer(StrictInput):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(write_only=True)
        email = serializers.EmailField(required=False, default="")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        # Not an EmailField: the schema would then promise an address, and a user created without one has "".
        email = serializers.CharField(help_text="The email address; empty when none was given.")

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 409: CONFLICT})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_create(**serializer.validated_data)
        return Response(self.OutputSerializer(user).data, status=status.HTTP_201_CREATED)
