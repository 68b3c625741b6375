"""OpenAPI generation: component names for the nested serializers that STYLE.md habit 4 gives every view,
and the error responses every operation can give."""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import AllowAny

from annotate.api.pagination import PAGING_PARAMETERS
from annotate.api.serializers import ErrorOutput

# PAGING_PARAMETERS page through a list rather than filter it: a bad page is a 404, a bad page size is ignored.

BAD_REQUEST = OpenApiResponse(ErrorOutput, description="The input is not valid; `fields` names each bad field.")
UNAUTHENTICATED = OpenApiResponse(ErrorOutput, description="No valid credentials were sent.")
FORBIDDEN = OpenApiResponse(ErrorOutput, description="Your role here, or your account, does not allow this.")
NOT_FOUND = OpenApiResponse(
    ErrorOutput,
    description="No such object or page; objects of campaigns you are not in answer the same.",
)
CONFLICT = OpenApiResponse(ErrorOutput, description="The object's current state does not allow this.")
UNSUPPORTED_MEDIA_TYPE = OpenApiResponse(ErrorOutput, description="The body is not of a media type listed here.")


class AutoSchema(openapi.AutoSchema):
    """Name a nested serializer after its view: `UserCreateApi.InputSerializer` becomes `UserCreateInput`.

    Every view has an `InputSerializer` or `OutputSerializer`; named by class alone they would all be one
    component, and the schema would describe one view's body under another's.

    Every operation also documents the errors it can answer (annotate.api.errors gives them all one body):
    400 when it reads a body or filters, 415 when it reads a body, 401 and 403 unless anyone may call it,
    404 when it names an object in its path or pages through a list. A view declares the rest (409, 429, a
    404 for an id in the body) in its `extend_schema(responses=...)`, which also wins over these.
    """

    def get_serializer_name(self, serializer, direction) -> str:
        owner, _, name = type(serializer).__qualname__.rpartition(".")
        return owner.removesuffix("Api") + name.removesuffix("Serializer")

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        reads_body = "requestBody" in operation
        errors = {}
        if reads_body or any(p["in"] == "query" and p["name"] not in PAGING_PARAMETERS for p in parameters):
            errors["400"] = BAD_REQUEST
        if not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            errors["401"] = UNAUTHENTICATED
            errors["403"] = FORBIDDEN
        if any(p["in"] == "path" or p["name"] in {"page", "cursor"} for p in parameters):
            errors["404"] = NOT_FOUND
        if reads_body:
            errors["415"] = UNSUPPORTED_MEDIA_TYPE
        responses = operation["responses"]
        for code, response in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code)
        operation["responses"] = dict(sorted(responses.items()))
        return operation
