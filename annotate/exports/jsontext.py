"""JSON exactly as the standard library writes it (compact, UTF-8), at orjson's speed.

A snapshot's SHA-256 is its identity: a rerun must write the same bytes, and a faster encoder must not
change one. orjson agrees byte for byte with `json.dumps(value, ensure_ascii=False, separators=(",", ":"))`
except on three kinds of value: floats below 1e-4 in magnitude (orjson writes 0.00001 and 1e-7, the
standard library 1e-05 and 1e-07), integers past 64 bits (orjson refuses to write them, and reads them as
floats), and NaN or infinity (orjson writes null). A line holding one of them is written by the standard
library; the others, nearly all, by orjson, several times faster.
"""

from __future__ import annotations

import json
import math
import re

import orjson

# In orjson's output: a float it writes otherwise than the standard library, 0.0000… or a digit then
# e-digit (1.5e-7). Text that merely looks like one sends its line to the standard library, slower but
# never wrong. The pattern starts with a literal, which `re` scans for quickly.
_EXPONENT = re.compile(rb"e-\d")
_DIGITS = b"0123456789"
# In JSON text: an integer too long for 64 bits (or a float's long mantissa, which costs nothing to read slowly).
_LONG_NUMBER = re.compile(r"\d{19}")
# orjson would write dates and dataclasses, which the standard library refuses: it must refuse them too.
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def loads(text: str):
    """Parse JSON text (a jsonb column as PostgreSQL writes it); integers past 64 bits keep their value."""
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    return orjson.loads(text)


def dumps_line(row: dict) -> bytes:
    """Return `row` as a line of JSON Lines: what `json.dumps(row, ensure_ascii=False, separators=(",", ":"))` writes.

    Its nested values are JSON read back (`loads`), which cannot hold NaN: only its own values are checked for it.
    """
    try:
        line = orjson.dumps(row, option=_OPTIONS)
    except TypeError:  # an integer past 64 bits, a key not a string, or a type the standard library refuses too
        return _stdlib_line(row)
    if _small_float(line) or (b"null" in line and not _finite(row)):
        return _stdlib_line(row)
    return line


def _small_float(line: bytes) -> bool:
    """Whether orjson may have written a float below 1e-4 in the line (as 0.00001 or 1.5e-7)."""
    return b"0.0000" in line or any(line[match.start() - 1] in _DIGITS for match in _EXPONENT.finditer(line))


def _stdlib_line(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _finite(row: dict) -> bool:
    """Whether none of the row's own floats is NaN or infinite (orjson writes those as null)."""
    return all(math.isfinite(value) for value in row.values() if type(value) is float)
