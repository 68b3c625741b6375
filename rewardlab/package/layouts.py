"""Parsing the lines of one items.jsonl, in whichever layout the file is in (API.md, "Import package").

A file holds one layout: RewardLab's own lines (`lines`) or one of the public preference layouts (`public`).
The first line that is a JSON object decides which, by the fields only that layout has (`Layout.markers`;
RLAIF-V shares TRL's `chosen` and `rejected`, and `_found` tells the two apart);
every later line must be in the same layout, so a file that drifts into another is refused line by line
instead of being read two ways. Whatever the layout, a line becomes the same `ItemSpec`, and annotate's
import and rewardlab's loader both parse with `ItemSpecParser`, so they accept exactly the same files.
A file in no known layout is read through the lead's column mapping (`mapping`) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewardlab.package.lines import (
    PACKAGE,
    ItemSpec,
    Layout,
    LineError,
    MissingFieldError,
    json_record,
    package_item_spec,
    show_value,
)
from rewardlab.package.mapping import MAPPING_HINT, ColumnMapping
from rewardlab.package.public import (
    LLAVA_RLHF,
    RLAIF_V,
    TRL,
    VL_REWARDBENCH,
    llava_rlhf_item_spec,
    rlaif_v_item_spec,
    trl_item_spec,
    vl_rewardbench_item_spec,
)

CONVERTERS: dict[Layout, Callable[[dict[str, Any]], ItemSpec]] = {
    TRL: trl_item_spec,
    RLAIF_V: rlaif_v_item_spec,
    LLAVA_RLHF: llava_rlhf_item_spec,
    VL_REWARDBENCH: vl_rewardbench_item_spec,
}
LAYOUTS = (PACKAGE, *CONVERTERS)


class ItemSpecParser:
    """Parse the lines of one file into ItemSpecs; make a new parser for each pass over a file."""

    def __init__(self, *, strength_scale: int, mapping: ColumnMapping | None = None) -> None:
        self.strength_scale = strength_scale  # the campaign's: a prior's strength must fit it
        self.layout: Layout | None = None  # the file's, once a line has shown it
        self.mapping = mapping  # the lead's: every line is read through it, whatever its fields

    def __call__(self, data: bytes) -> ItemSpec:
        """Parse and validate one line; raise LineError naming the first problem found."""
        record = json_record(data)
        if self.mapping is not None:
            return package_item_spec(self.mapping.record(record), strength_scale=self.strength_scale)
        layout = self._layout(record)
        try:
            if layout is PACKAGE:
                return package_item_spec(record, strength_scale=self.strength_scale)
            return CONVERTERS[layout](record)
        except MissingFieldError as exc:
            raise MissingFieldError(f"{exc}; or, if the file is in another layout, {MAPPING_HINT}") from exc

    def _layout(self, record: dict[str, Any]) -> Layout:
        """Return the file's layout, fixed by its first line; a line with no marker is read in it."""
        found = _found(record)
        if len(found) > 1:
            mixed = " and ".join(f"{layout.name} fields ({', '.join(_markers(layout, record))})" for layout in found)
            raise LineError(f"the row mixes layouts: it has {mixed}; expected {expected_layouts()}")
        if self.layout is None:
            if not found:
                fields = show_value(sorted(record))
                raise LineError(
                    f"unknown layout: the row has the fields {fields}; expected {expected_layouts()}; or {MAPPING_HINT}"
                )
            self.layout = found[0]
        elif found and found[0] is not self.layout:
            first = self.layout.name
            raise LineError(f"a {found[0].name} row in a file of {first} rows; a file holds one layout")
        return self.layout


def _found(record: dict[str, Any]) -> list[Layout]:
    """Return the layouts whose markers the row has.

    RLAIF-V's answers are named as TRL's (`chosen`, `rejected`): a row with `question` and no `prompt` is
    RLAIF-V; one with both says two things about its prompt and is refused as mixing the layouts.
    """
    found = [layout for layout in LAYOUTS if any(key in record for key in layout.markers)]
    if RLAIF_V in found and TRL in found:
        if "prompt" in record:
            raise LineError(
                "the row mixes layouts: it has RLAIF-V fields (question) and TRL preference fields (prompt); "
                f"expected {expected_layouts()}"
            )
        found.remove(TRL)
    return found


def expected_layouts() -> str:
    """Name every layout with its required fields, for an error about a row in none of them."""
    return "one of: " + "; ".join(f"{layout.name} ({', '.join(layout.fields)})" for layout in LAYOUTS)


def _markers(layout: Layout, record: dict[str, Any]) -> list[str]:
    return [key for key in layout.markers if key in record]
