"""Writing many rows at once with PostgreSQL's COPY (a model run writes a score per pair).

A retrain of a 100k-pair campaign writes 100k scores and 100k priorities; row-by-row INSERTs or
Django's CASE-per-row `bulk_update` take minutes there, COPY and one UPDATE … FROM take seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

from django.db import connection, models

BATCH_SIZE = 2000


def _batches(rows: Iterable[Sequence], size: int = BATCH_SIZE):
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def rows_insert(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Insert rows given as tuples in `columns` order (database column names)."""
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    with connection.cursor() as cursor, cursor.copy(f"COPY {model._meta.db_table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def staged_update(
    *,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Iterable[Sequence],
    set_sql: str,
    batch_size: int = BATCH_SIZE,
) -> None:
    """COPY rows into a temporary table, then `UPDATE {table} AS t SET {set_sql}` from it.

    `set_sql` reads the staged values as `new.<column>` and the current row as `t.<column>`.
    `columns` are (name, SQL type); the first is the id matched against `t.id`. Each batch is its own
    transaction so that concurrent `SELECT … FOR UPDATE SKIP LOCKED` readers skip only a batch's rows,
    for milliseconds, never the whole table.
    """
    definition = ", ".join(f"{name} {kind}" for name, kind in columns)
    names = ", ".join(name for name, _ in columns)
    key = columns[0][0]
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS staged_rows ({definition})")
        try:
            for batch in _batches(rows, batch_size):
                cursor.execute("TRUNCATE staged_rows")
                with cursor.copy(f"COPY staged_rows ({names}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                cursor.execute(f"UPDATE {table} AS t SET {set_sql} FROM staged_rows AS new WHERE t.id = new.{key}")
        finally:
            cursor.execute("DROP TABLE IF EXISTS staged_rows")
