"""Reading a query's rows for a snapshot: psycopg's own decoding, through a server-side cursor.

Django's row iteration adds its converters (a `json.loads` per JSON value, a Python time-zone loader per
timestamp) and a few generator layers to every row; at a million rows that is most of an export's time.
Here the queryset only writes the SQL. Rows come back as psycopg decodes them: JSON columns as their text,
timestamps through psycopg's C loader as aware datetimes in the session's time zone (UTC, which Django
sets), everything else as the ORM would give it.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection
from django.db.models import QuerySet
from psycopg.types.datetime import TimestamptzLoader

CHUNK = 2000  # rows per round trip: a few MB of wide rows at most


def query_rows(queryset: QuerySet, *, chunk: int = CHUNK) -> Iterator[tuple]:
    """Yield the rows of a `values_list` queryset, `chunk` at a time from the server; memory holds one chunk."""
    sql, params = queryset.query.sql_with_params()
    with connection.chunked_cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(chunk):
            yield from rows
