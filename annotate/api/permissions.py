"""DRF permission hooks; object-level campaign access is decided in annotate.access."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission


class StaffMayWrite(BasePermission):
    """Any signed-in user may read the collection; only staff may create in it."""

    message = "Only staff may create campaigns."

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or bool(request.user and request.user.is_staff)
