"""Writing many rows at once with PostgreSQL's COPY (a model run writes a score per pair, an import its rows).

A retrain of a 100k-pair campaign writes 100k scores and 100k priorities; row-by-row INSERTs or
Django's CASE-per-row `bulk_update` take minutes there, COPY and one UPDATE … FROM take seconds.
COPY returns no ids, so a writer whose rows point at each other takes ids first (`ids_reserve`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

from django.db import connection, models, transaction

BATCH_SIZE = 2000


def _batches(rows: Iterable[Sequence], size: int = BATCH_SIZE):
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def rows_insert(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Insert rows given as tuples in `columns` order (database column names).

    A row breaking a constraint raises Django's IntegrityError, as an ORM insert would: psycopg's own
    errors pass through `cursor.copy` unwrapped.
    """
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.copy(f"COPY {model._meta.db_table} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def ids_reserve(model: type[models.Model], count: int) -> list[int]:
    """Take `count` ids from the table's own sequence, for rows COPY then writes with explicit ids.

    The ids come from `nextval`, as an INSERT's would: an import running beside this one gets others, and
    later ORM inserts never collide with them. They are increasing but not always consecutive.
    """
    if count <= 0:
        return []
    with connection.cursor() as cursor:
        # The sequence's name is looked up once: pg_get_serial_sequence in the SELECT list runs per row, 6x slower.
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, model._meta.pk.column])
        sequence = cursor.fetchone()[0]
        cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [sequence, count])
        return [row[0] for row in cursor.fetchall()]


def staged_select(
    *, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence], sql: str, params: Sequence = ()
) -> list[tuple]:
    """COPY rows into a temporary table `staged_rows`, run `sql` (with `params`) reading it, return its rows.

    For a statement COPY cannot be, such as `INSERT … SELECT … ON CONFLICT … RETURNING`, fed at COPY's
    speed instead of as parameters (psycopg dumps list parameters in Python, about 4 µs a value).
    `columns` are (name, SQL type).
    """
    definition = ", ".join(f"{name} {kind}" for name, kind in columns)
    names = ", ".join(name for name, _ in columns)
    # In a transaction (or savepoint) of its own, a failure takes the temporary table with it: no cleanup that
    # would run in an aborted transaction and hide the first error.
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE staged_rows ({definition})")
        with cursor.copy(f"COPY staged_rows ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(sql, params)
        result = cursor.fetchall()
        cursor.execute("DROP TABLE staged_rows")
    return result


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
