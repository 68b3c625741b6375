"""RewardLab's own error hierarchy: services raise these, the DRF handler and the page views map them to 4xx."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

# Database errors that may pass (the database restarting, a dropped connection): a job retries on them.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class ApplicationError(Exception):
    """A request the domain refuses; the message says what state made it fail."""

    status_code = 400

    def __init__(self, message: str, *, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class NotFoundError(ApplicationError):
    """The object does not exist or the user may not know it exists (other campaigns' ids answer this)."""

    status_code = 404


class PermissionDeniedError(ApplicationError):
    """The user is a member of the campaign but their role does not allow this action."""

    status_code = 403


class ConflictError(ApplicationError):
    """The object's current state does not allow the action (closed campaign, expired lease, ...)."""

    status_code = 409


class ImportRejectedError(ApplicationError):
    """An import package failed validation; `errors` lists each bad line and why, and nothing was written."""

    def __init__(self, errors: list[dict]) -> None:
        first = errors[0]
        where = import_error_where(first) if first.get("line") or first.get("row") else "the package"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"Import rejected: {where}: {first['reason']}{more}", extra={"errors": errors})
        self.errors = errors


def import_error_where(error: dict) -> str:
    """Where an import error is: "line 3", "row 3" (of a JSON array or Parquet file), "test.jsonl, line 3" when
    the package names its files, or "package"."""
    unit = "row" if error.get("row") else "line"
    if not error.get(unit):
        return "package"
    return f"{error['file']}, {unit} {error[unit]}" if error.get("file") else f"{unit} {error[unit]}"
