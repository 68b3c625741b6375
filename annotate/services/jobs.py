"""Work a Celery worker does for a row (an import job, a model run, an export snapshot), sent so that a
broker outage delays it and loses nothing.

The row is written before its task is sent. With the broker down the send is logged and the row stays
queued; rows that record `dispatched_at` are found again by `jobs_unsent` (never sent, or sent long ago
and never taken: a lost message) and sent by a live worker's next beat (`workers.presence`). Duplicate
messages are harmless: each task takes only a row that is still queued.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task
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
