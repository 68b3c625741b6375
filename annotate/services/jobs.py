"""The one life of every job a Celery worker does for a row (`models.Job`: import jobs, model runs, export
snapshots): sent, taken, reported on, finished, and found again when its message or its worker was lost.

Sending. The row is written before its task is sent, by name (`task_send`), so neither side imports the
other. With the broker down the send is logged and the row stays queued; `jobs_send_unsent` finds the rows
never sent (or sent long ago and never taken: a lost message) and a live worker's next beat sends them
(`workers.presence`). Duplicate messages are harmless: a job is taken under its lock, once.

Liveness, one rule for all kinds. A worker holds the row's job lock (`job_lock`, a PostgreSQL advisory lock
of its database session) for as long as it works on the row (`job_taken`). PostgreSQL drops the lock the
moment that session ends, so a worker killed mid-job (SIGKILL, out of memory, a lost host) frees it at once:
`jobs_reap_lost`, on every worker's beat, queues each running row whose lock nobody holds again, with no
heartbeat to wait on going stale, until it has been taken MAX_ATTEMPTS times; then it fails, so a job that
kills every worker that tries it stops. Every kind's work may be redone from the start: an import writes
in one transaction, a run switches the campaign's model only at its end, an export renames its file into
place only when whole.

Where work goes. Training goes to `gpu` while a worker with a GPU listens there (`training_queue`); imports,
exports and campaign-wide work that needs no model go to `cpu`.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, connection
from django.db.models import F, Q, QuerySet
from kombu.exceptions import OperationalError

from annotate import clock
from annotate.models import ExportSnapshot, ImportJob, Job, ModelRun, Worker
from workers.app import app

logger = logging.getLogger(__name__)

GPU_QUEUE, CPU_QUEUE = "gpu", "cpu"
# Campaign-wide tasks that need no model: they never wait behind training on a GPU worker.
CPU_TASKS = {"priorities_refresh", "consensus_refresh"}
# A worker that has not said it is alive for this long is taken as gone when choosing a queue.
WORKER_SEEN_SECONDS = 60
# A queued row sent this long ago that no worker took is sent again (its message may have been lost).
RESEND_AFTER_SECONDS = 600
# A job whose worker was lost this many times fails instead of going back to the queue.
MAX_ATTEMPTS = 3
# A job's progress is written to its row when it moved by this much (or reached the end).
PROGRESS_STEP = 0.02

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class JobKind:
    """How a kind of job is sent: its task in `workers.tasks`, the queue, what a queued row looks like."""

    task: str
    queue: Callable[[], str]
    queued_fields: dict[str, object] = field(default_factory=dict)


def training_queue() -> str:
    """Send training to `gpu` when a worker with a GPU listens there; otherwise to `cpu`."""
    gpu_workers = workers_online().filter(device__startswith="cuda").values_list("queues", flat=True)
    return GPU_QUEUE if any(GPU_QUEUE in queues for queues in gpu_workers) else CPU_QUEUE


KINDS: dict[type[Job], JobKind] = {
    ImportJob: JobKind("import_job_run", lambda: CPU_QUEUE),
    ExportSnapshot: JobKind("export_snapshot_run", lambda: CPU_QUEUE),
    ModelRun: JobKind("model_run_train", training_queue, queued_fields={"stage": ModelRun.Stage.QUEUED}),
}


# Workers and queues.


def worker_seen(*, hostname: str, queues: list[str], device: str, starting: bool = False) -> None:
    """Record that a worker is alive, with its queues and device (where training goes, what leads see)."""
    now = clock.now()
    defaults = {"queues": queues, "device": device, "seen_at": now, **({"started_at": now} if starting else {})}
    Worker.objects.update_or_create(
        hostname=hostname, defaults=defaults, create_defaults={**defaults, "started_at": now}
    )


def workers_online() -> QuerySet[Worker]:
    """The workers that said they are alive within WORKER_SEEN_SECONDS, by name."""
    recent = clock.now() - timedelta(seconds=WORKER_SEEN_SECONDS)
    return Worker.objects.filter(seen_at__gte=recent).order_by("hostname")


def task_send(task_name: str, *args: object, queue: str, what: str) -> bool:
    """Send a task of `workers.tasks` by name; return False, logged, when the broker is unreachable."""
    try:
        app.send_task(f"workers.tasks.{task_name}", args, queue=queue)
    except OperationalError:
        logger.exception("%s was not sent: the broker is unreachable.", what)
        return False
    return True


def campaign_work_send(task_name: str, *, campaign_id: int) -> bool:
    """Send campaign-wide work (model work to `training_queue`, CPU_TASKS to `cpu`).

    Returns False when the broker is down; that work is only a head start (the next retrain does it all).
    """
    queue = CPU_QUEUE if task_name in CPU_TASKS else training_queue()
    return task_send(task_name, campaign_id, queue=queue, what=f"{task_name} of campaign {campaign_id}")


# Sending jobs.


def job_send(job: Job) -> bool:
    """Send a queued row's task; once the broker took it, write when, and to which queue."""
    kind = KINDS[type(job)]
    queue = kind.queue()
    if not task_send(kind.task, job.pk, queue=queue, what=str(job)):
        return False
    type(job).objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(dispatched_at=clock.now(), queue=queue)
    return True


def resend_before() -> datetime:
    """Queued jobs sent before this are taken as lost by the broker and sent again."""
    return clock.now() - timedelta(seconds=RESEND_AFTER_SECONDS)


def is_unsent(job: Job) -> bool:
    """Tell whether a queued row's task never reached the broker, or reached it so long ago it was lost."""
    return job.dispatched_at is None or job.dispatched_at < resend_before()


def jobs_send_unsent() -> int:
    """Send every queued job, of every kind, that `is_unsent`; return how many were sent."""
    unsent = Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=resend_before())
    return sum(
        job_send(job) for job_model in KINDS for job in job_model.objects.filter(unsent, status=Job.Status.QUEUED)
    )


# A worker's side of a job.


@contextmanager
def job_taken(job_model: type[Job], pk: int, *, worker: str, **fields: object) -> Iterator[Job | None]:
    """Take a job for this worker and hold its lock while the block runs; yield None when it is not to be taken.

    A queued job is taken; so is a running one whose lock is free (tasks acknowledge late, so that is a
    redelivery after its worker died). A finished or missing job, or one another live worker holds, is not.
    Taking it counts an attempt and writes `fields` (a run's stage and device).
    """
    job = job_model.objects.filter(pk=pk).first()
    if job is None or job.is_terminal:
        yield None
        return
    with job_lock(job) as free:
        active = job_model.objects.filter(pk=pk, status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
        taken = free and active.update(
            status=Job.Status.RUNNING,
            progress=0.0,
            error="",
            worker=worker,
            started_at=clock.now(),
            attempts=F("attempts") + 1,
            **fields,
        )
        yield job_model.objects.get(pk=pk) if taken else None


def job_update(job: Job, **fields: object) -> None:
    """Write fields unless the job already succeeded: a redelivered job racing the first must not undo it."""
    type(job).objects.filter(pk=job.pk).exclude(status=Job.Status.SUCCEEDED).update(**fields)
    job.refresh_from_db()


def job_succeed(job: Job, **fields: object) -> None:
    """End a job as done, with its results (`fields`) and its end time."""
    job_update(job, status=Job.Status.SUCCEEDED, progress=1.0, finished_at=clock.now(), **fields)


def job_fail(job: Job, reason: str, **fields: object) -> None:
    """End a job as failed, saying why in words its owner can act on."""
    job_update(job, status=Job.Status.FAILED, error=reason, finished_at=clock.now(), **fields)


def job_requeue(job: Job, *, reason: str, **fields: object) -> bool:
    """Put a running job back in the queue, saying why; a job that finished meanwhile stays finished."""
    queued = {"status": Job.Status.QUEUED, "progress": 0.0, "error": reason, **KINDS[type(job)].queued_fields}
    return bool(type(job).objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(**queued, **fields))


class Throttled:
    """Pass a fraction done on to `report` when it moved by `step` since the last one, or reached the end."""

    def __init__(self, report: ProgressCallback, *, step: float = PROGRESS_STEP) -> None:
        self.report = report
        self.step = step
        self.reported = -1.0

    def __call__(self, fraction: float) -> None:
        if fraction < 1.0 and fraction - self.reported < self.step:
            return
        self.reported = fraction
        self.report(fraction)


def job_progress(job: Job, *, most: float = 1.0) -> ProgressCallback:
    """A progress callback writing the job's fraction done (at most `most`) to its row, where pages read it;
    wrap it in `Throttled` so a step of every line does not write every line."""

    def write(fraction: float) -> None:
        type(job).objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(progress=min(fraction, most))

    return write


# Liveness.


def _lock_key(job: Job) -> int:
    """Return the advisory lock key of a row: its table's CRC-32 and its id in one bigint (unique below 2**32 ids)."""
    return (zlib.crc32(job._meta.db_table.encode()) & 0x7FFFFFFF) << 32 | (job.pk & 0xFFFFFFFF)


@contextmanager
def job_lock(job: Job) -> Iterator[bool]:
    """Hold the row's job lock on this thread's database session while the block runs; yield whether it was free.

    A lock someone else holds means a live process is working on the row. The lock belongs to the session,
    not to a transaction, so the work may commit as it goes. Only workers take these locks, and each needs
    a session of its own: behind a pooler in transaction mode (pgbouncer), point the workers' DATABASE_URL
    at PostgreSQL itself.
    """
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


def jobs_reap_lost() -> int:
    """Queue again each running job, of every kind, that no live process works on (its lock is free); fail
    one taken MAX_ATTEMPTS times already. Return how many were reaped.

    Each is reaped while this session holds its lock, on a row still running, so no worker can take it
    meanwhile and two reapers never reap one row twice.
    """
    reaped = 0
    for job_model in KINDS:
        for job in job_model.objects.filter(status=Job.Status.RUNNING):
            with job_lock(job) as free:
                job.refresh_from_db()
                if free and job.status == Job.Status.RUNNING:
                    _lost(job)
                    reaped += 1
    return reaped


def _lost(job: Job) -> None:
    lost = f"The worker {job.worker or '(unknown)'} was lost at {job.progress:.0%}"
    if job.attempts >= MAX_ATTEMPTS:
        reason = f"{lost}, on attempt {job.attempts} of {MAX_ATTEMPTS}; it is not tried again."
        job_fail(job, reason)
    else:
        reason = f"{lost}; it is queued to run again (attempt {job.attempts + 1} of {MAX_ATTEMPTS})."
        job_requeue(job, reason=reason, dispatched_at=None)
    logger.warning("%s: %s", str(job).capitalize(), reason)
