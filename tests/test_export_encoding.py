"""A snapshot's bytes do not depend on how its rows are read and written (issue 16's faster exports).

Snapshots read rows with psycopg alone (`annotate.exports.stream`) and write them with orjson
(`annotate.exports.jsontext`); before, the ORM read them and `json.dumps` wrote them. These tests hold
the new path to the old one's output: every line is what `json.dumps(..., ensure_ascii=False,
separators=(",", ":"))` writes for the values the ORM reads, on the values where orjson and the standard
library part ways (floats below 1e-4, integers past 64 bits, NaN) and those where a reader could slip
(timestamps with and without microseconds, non-ASCII and control characters, JSON in JSON columns).
"""

from __future__ import annotations

import json
import math
import random
import zipfile
from datetime import UTC, datetime

import pytest
from django.db import connection

from annotate.exports.jsontext import dumps_line, loads
from annotate.models import Annotation, Campaign, Item, ModelRun, PairScore
from tests.test_exports import export, label, make_item, textured_image

AWKWARD_FLOATS = [
    1e-05, -1e-05, 1.5e-7, 9.99e-5, 1e-4, 2.5e-300, 5e-324, 0.0, -0.0, 1e16, 1.2345678901234567e-6, 0.1, 1 / 3,
    123456.789, 1e22, 6.02e23, -7.0,
]  # fmt: skip
AWKWARD_INTS = [0, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64, 10**30, -(10**25)]
AWKWARD_TEXTS = [
    "", "plain", "é ü 中文 🙂", "quote \" backslash \\ slash /", "tab\tnew\nline\rcr", "\x00\x01\x1f\x7f",
    "\u2028\u2029", "looks like 0.00001 or 1e-5 or 3e-07", "scene-0000001", "e-1", "<b>markup</b> & co",
]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0):
    """A JSON-like value mixing the awkward cases, nested a few levels."""
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(AWKWARD_FLOATS) * rng.choice([1, 1, 3.7, -0.5])
    if kind == 1:
        return rng.choice(AWKWARD_INTS)
    if kind == 2:
        return rng.choice(AWKWARD_TEXTS) + rng.choice(AWKWARD_TEXTS)
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return rng.uniform(-1, 1) * 10 ** rng.randint(-12, 18)
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(AWKWARD_TEXTS) + str(n): random_value(rng, depth + 1) for n in range(rng.randrange(4))}


def stdlib_line(value) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def test_dumps_line_writes_exactly_what_json_dumps_writes():
    rng = random.Random(16)
    for _ in range(3000):
        row = {f"k{n}": random_value(rng) for n in range(rng.randrange(1, 8))}
        assert dumps_line(row) == stdlib_line(row), row
    for special in (math.nan, math.inf, -math.inf):
        row = {"score": special, "strength": None}  # a NaN score: the standard library writes NaN, not null
        assert dumps_line(row) == stdlib_line(row) == f'{{"score":{json.dumps(special)},"strength":null}}\n'.encode()
    assert dumps_line({"counts": {1: "one"}}) == stdlib_line({"counts": {1: "one"}})  # a key that is not a string


def test_dumps_line_refuses_what_json_dumps_refuses():
    for value in (datetime(2025, 1, 6, tzinfo=UTC), {1, 2}, b"bytes"):
        with pytest.raises(TypeError):
            stdlib_line({"value": value})
        with pytest.raises(TypeError):
            dumps_line({"value": value})


@pytest.mark.django_db
def test_loads_reads_jsonb_as_postgresql_writes_it_as_json_loads_does():
    rng = random.Random(61)
    values = [random_value(rng) for _ in range(400)] + [{"big": 2**70, "small": 1e-9, "many": 0.12345678901234567}]
    with connection.cursor() as cursor:
        for value in values:
            # jsonb keeps numbers as numerics and orders keys its own way: the text a snapshot reads back.
            text = json.dumps(value)
            if "\\u0000" in text:
                continue  # jsonb cannot hold NUL
            cursor.execute("SELECT %s::jsonb::text", [text])
            text = cursor.fetchone()[0]
            ours, theirs = loads(text), json.loads(text)
            assert ours == theirs and stdlib_line(ours) == stdlib_line(theirs), text


FACTS = {"count": 2**65, "tiny": 3.5e-06, "ratio": 0.25, "caption": "Deux tasses \u2014 «café»\n\t", "nested": [1e-05]}


@pytest.mark.django_db
def test_snapshot_lines_hold_the_values_the_orm_reads_written_as_json_dumps_writes(campaign):
    pairs = make_item(
        campaign, "scene-é", textured_image(3), ("Two cups.", 'Three "cups" \\ \u2028.'), facts=FACTS, meta={"k": -1}
    )
    pair = pairs[0]
    label(pair, "ann1", "b", 3)
    label(pair, "ann2", "b", 2)
    stamps = [datetime(2025, 3, 1, 8, 30, 5, tzinfo=UTC), datetime(2025, 3, 1, 8, 30, 5, 120, tzinfo=UTC)]
    for annotation, stamp in zip(Annotation.objects.order_by("id"), stamps, strict=True):
        Annotation.objects.filter(pk=annotation.pk).update(created_at=stamp)
    run = ModelRun.objects.create(campaign=campaign, trigger="lead", status="succeeded")
    scores = dict(p_a_better=0.999999, entropy=2.2e-05, mutual_info=7e-08, text_only_p_a_better=0.5,
                  shortcut_score=0.0, noise_score=1e-4, weight=0.75)  # fmt: skip
    PairScore.objects.create(run=run, pair=pair, **scores)
    Campaign.objects.filter(pk=campaign.pk).update(active_model=run)
    campaign.refresh_from_db()

    lines = {fmt: snapshot_lines(export(campaign, fmt)) for fmt in ("annotations", "reward")}
    for line in lines["annotations"] + lines["reward"]:
        assert line == stdlib_line(json.loads(line))  # compact, key order kept, floats as repr writes them
    item = Item.objects.get(pk=pair.item_id)
    annotations = [json.loads(line) for line in lines["annotations"]]
    assert [row["created_at"] for row in annotations] == [
        annotation.created_at.isoformat() for annotation in Annotation.objects.order_by("id")
    ]  # with and without microseconds, as Python writes them
    assert all(row["facts"] == item.facts == FACTS and row["meta"] == {"k": -1} for row in annotations)
    assert annotations[0]["b"]["text"] == 'Three "cups" \\ \u2028.'
    (reward,) = [json.loads(line) for line in lines["reward"]]
    assert {name: reward[name] for name in scores if name != "weight"} == {
        name: value for name, value in scores.items() if name != "weight"
    }
    assert reward["weight"] == 0.75 and reward["facts"]["count"] == 2**65


def snapshot_lines(snapshot) -> list[bytes]:
    assert snapshot.status == "succeeded", snapshot.error
    with zipfile.ZipFile(snapshot.file.path) as archive:
        names = [name for name in ("train.jsonl", "test.jsonl") if name in archive.namelist()]
        return [line + b"\n" for name in names for line in archive.read(name).splitlines()]
