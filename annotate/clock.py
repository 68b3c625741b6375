"""The one clock the services read, so tests can move time (leases expire) without patching Django."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
