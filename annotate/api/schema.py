"""OpenAPI generation: component names for the nested serializers that STYLE.md habit 4 gives every view."""

from __future__ import annotations

from drf_spectacular import openapi


class AutoSchema(openapi.AutoSchema):
    """Name a nested serializer after its view: `UserCreateApi.InputSerializer` becomes `UserCreateInput`.

    Every view has an `InputSerializer` or `OutputSerializer`; named by class alone they would all be one
    component, and the schema would describe one view's body under another's.
    """

    def get_serializer_name(self, serializer, direction) -> str:
        owner, _, name = type(serializer).__qualname__.rpartition(".")
        return owner.removesuffix("Api") + name.removesuffix("Serializer")
