"""Logins and users: token exchange (throttled) and user creation by staff."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from annotate.api.schema import CONFLICT
from annotate.api.serializers import ErrorOutput
from annotate.services.campaigns import user_create


class AuthThrottle(SimpleRateThrottle):
    """Limit password guesses per client address and per username tried."""

    scope = "auth"

    def get_cache_key(self, request, view):
        data = getattr(request, "data", None)
        # The body may be any JSON, a list too; the serializer, not the throttle, says why it is not valid.
        username = str(data.get("username", ""))[:150] if isinstance(data, Mapping) else ""
        # Hashed: a cache key must stay short and printable whatever was typed (memcached refuses the rest).
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": f"{self.get_ident(request)}:{digest}"}


class TokenCreateApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthThrottle]

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        request=AuthTokenSerializer,
        responses={
            200: OutputSerializer,
            429: OpenApiResponse(ErrorOutput, description="Too many attempts; `detail` says when to retry."),
        },
        operation_id="auth_token_create",
    )
    def post(self, request):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response(self.OutputSerializer({"token": token.key}).data)


class UserCreateApi(APIView):
    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
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
