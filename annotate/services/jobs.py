"""Work a Celery worker does for a row (an import job, a model run, an export snapshot), sent so that a
broker outage delays it and loses nothing.

The row is written before its task is sent. With the broker down the send is logged and the row stays
queued; rows that record `dispatched_at` are found again by `jobs_unsent` (never sent, or sent long ago
and never taken: a lost message) and sent by a live worker's next beat (`workers.presence`). Duplicate
messages are harmless: each task leaves a row that has finished.

A worker may also hold its row's job lock (`job_lock`, a PostgreSQL advisory lock of its database session)
while it works on the row, as export snapshots do. PostgreSQL drops the lock the moment that session ends,
so a worker killed mid-job (SIGKILL, out of memory, a lost host) frees it at once: `jobs_reap_lost` finds
running rows whose lock nobody holds, with no heartbeat to wait on going stale, and a second delivery of a
message that a live worker is still working on finds the lock taken and leaves the row alone.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from celery import Task
from django.db import DatabaseError, connection
from django.db.models import Model, Q, QuerySet
from kombu.exceptions import OperationalError

from annotate import clock

logger = logging.getLogger(__name__)

# A queued row sent this long ago that no worker took is sent again (its message may have been lost).
RESEND_AFTER_SECONDS = 600


def task_send(task: Task, *args: object, queue: str, what: str) -> bool:
    """Send a task; return False, logged, when the broker is unreachable (the caller's row stays queued)."""
    try:
        task.apply_async(args, queue=queue)
    except OperationalError:
        logger.exception("%s was not sent: the broker is unreachable.", what)
        return False
    return True


def job_send(job_model: type[Model], pk: int, task: Task, *, queue: str, record: dict | None = None) -> bool:
    """Send a queued row's task; once the broker took it, write when, and the fields of `record` (the queue)."""
    if not task_send(task, pk, queue=queue, what=f"{job_model._meta.verbose_name} {pk}"):
        return False
    queued = job_model.objects.filter(pk=pk, status=job_model.Status.QUEUED)
    queued.update(dispatched_at=clock.now(), **(record or {}))
    return True


def _resend_before():
    return clock.now() - timedelta(seconds=RESEND_AFTER_SECONDS)


def is_unsent(job: Model) -> bool:
    """Tell whether a queued row's task never reached the broker, or reached it so long ago it was lost."""
    return job.dispatched_at is None or job.dispatched_at < _resend_before()


def jobs_unsent(job_model: type[Model]) -> QuerySet:
    """The queued rows `is_unsent` is true of."""
    unsent = Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=_resend_before())
    return job_model.objects.filter(unsent, status=job_model.Status.QUEUED)


def job_update(job: Model, **fields: object) -> None:
    """Write fields unless the job already succeeded: a redelivered run racing the first must not undo it."""
    type(job).objects.filter(pk=job.pk).exclude(status=job.Status.SUCCEEDED).update(**fields)
    job.refresh_from_db()


def _lock_key(job: Model) -> int:
    """Return the advisory lock key of a row: its table's CRC-32 and its id in one bigint (unique below 2**32 ids)."""
    return (zlib.crc32(job._meta.db_table.encode()) & 0x7FFFFFFF) << 32 | (job.pk & 0xFFFFFFFF)


@contextmanager
def job_lock(job: Model) -> Iterator[bool]:
    """Hold the row's job lock on this thread's database session while the block runs; yield whether it was free.

    Taken by a worker for as long as it works on the row; a lock someone else holds means a live process is
    working on it. The lock belongs to the session, not to a transaction, so the work may commit as it goes.
    Only workers take these locks, and each needs a session of its own: behind a pooler in transaction mode
    (pgbouncer), point the workers' DATABASE_URL at PostgreSQL itself. Without PostgreSQL (the SQLite demo)
    there are no such locks: every row is free, and `jobs_reap_lost` reaps nothing.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    key = _lock_key(job)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s::bigint)", [key])
        taken = cursor.fetchone()[0]
    try:
        yield taken
    finally:
        if taken:
            _unlock(key)


def _unlock(key: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s::bigint)", [key])
    except DatabaseError:
        # The session is gone (that is how the block failed, most likely), and its locks went with it.
        logger.info("Job lock %s was not released: the database session had ended already.", key)


def jobs_reap_lost(job_model: type[Model], reap: Callable[[Model], None]) -> int:
    """Call `reap` on each running row that no live process works on (its lock is free); return how many.

    `reap` runs while this session holds the row's lock, on a row still running, so no worker can take the
    row meanwhile and two reapers never reap one row twice. Does nothing without PostgreSQL (see `job_lock`).
    """
    if connection.vendor != "postgresql":
        return 0
    running = job_model.Status.RUNNING
    reaped = 0
    for job in job_model.objects.filter(status=running):
        with job_lock(job) as free:
            if free and job_model.objects.filter(pk=job.pk, status=running).exists():
                reap(job)
                reaped += 1
    return reaped
