"""What a snapshot keeps: the filters of `POST /api/v1/campaigns/{id}/exports/`, checked in one place.

The API and the exports page parse their input into typed values; `ExportFilters.errors` says what is out
of range, per field, for both. A snapshot stores `as_json()` with every default filled in, so its record
says exactly what it kept even when the defaults change later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

GOLD_CHOICES = ("include", "exclude", "only")  # gold pairs in, out, or alone
LABEL_CHOICES = ("human", "with_priors")  # human labels only, or prior labels where no human label exists
DEFAULT_TEST_SHARE = 0.1
MAX_TEST_SHARE = 0.5  # a larger test split would leave less to train on than to test
DATE_FIELDS = ("labeled_from", "labeled_to")


@dataclass(frozen=True)
class ExportFilters:
    """The filters of one snapshot; every field has a default, so `{}` asks for everything labeled."""

    min_agreement: float = 0.0  # a pair's agreement (consensus probability or vote share) at least this
    min_labels: int = 1  # labels behind the pair's label (human, or prior where priors count) at least this
    exclude_suspected_noise: bool = False  # drop pairs the model run flags as suspected noise
    gold: str = "include"  # one of GOLD_CHOICES
    labels: str = "human"  # one of LABEL_CHOICES
    labeled_from: date | None = None  # human labels given on or after this day (UTC)
    labeled_to: date | None = None  # human labels given on or before this day (UTC)
    test_share: float = DEFAULT_TEST_SHARE  # share of images (so items, never pairs) in the test split
    images: bool = True  # a .zip with the images; False gives a bare .jsonl that names them

    def errors(self) -> dict[str, str]:
        """Return what is out of range, per field; empty when the filters can be used."""
        errors = {}
        if not 0.0 <= self.min_agreement <= 1.0:
            errors["min_agreement"] = f"Expected a number from 0 to 1, got {self.min_agreement}."
        if self.min_labels < 0:
            errors["min_labels"] = f"Expected 0 or more, got {self.min_labels}."
        if self.gold not in GOLD_CHOICES:
            errors["gold"] = f"Expected one of {', '.join(GOLD_CHOICES)}, got {self.gold!r}."
        if self.labels not in LABEL_CHOICES:
            errors["labels"] = f"Expected one of {', '.join(LABEL_CHOICES)}, got {self.labels!r}."
        if self.labeled_from and self.labeled_to and self.labeled_from > self.labeled_to:
            errors["labeled_to"] = f"The range ends ({self.labeled_to}) before it starts ({self.labeled_from})."
        if not 0.0 <= self.test_share <= MAX_TEST_SHARE:
            errors["test_share"] = f"Expected a share from 0 to {MAX_TEST_SHARE}, got {self.test_share}."
        return errors

    def as_json(self) -> dict[str, Any]:
        """Return the filters as stored on the snapshot: every field, days as ISO strings."""
        data = asdict(self)
        for name in DATE_FIELDS:
            data[name] = data[name].isoformat() if data[name] else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportFilters:
        """Read filters stored by `as_json`."""
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for name in DATE_FIELDS:
            if values.get(name):
                values[name] = date.fromisoformat(values[name])
        return cls(**values)
