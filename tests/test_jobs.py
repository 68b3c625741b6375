"""The one job lifecycle (`annotate.services.jobs`) for every kind: taken under a lock, reaped when the lock
is free, failed after MAX_ATTEMPTS. A second database session stands for a live worker; the SIGKILLed
workers of `test_faults.py` and `test_loop_worker.py` show the same with real processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.files.base import ContentFile
from django.db import connection

from annotate.models import ExportSnapshot, ImportJob, Job, ModelRun
from annotate.services.jobs import MAX_ATTEMPTS, job_lock, job_taken, jobs_reap_lost

pytestmark = pytest.mark.django_db(transaction=True)  # a second session must see the rows


def _import_job(campaign, **fields) -> ImportJob:
    job = ImportJob(campaign=campaign, filename="p.jsonl", **fields)
    job.file.save("p.jsonl", ContentFile(b"{}\n"), save=False)
    job.save()
    return job


def _export(campaign, **fields) -> ExportSnapshot:
    return ExportSnapshot.objects.create(campaign=campaign, format="reward", **fields)


def _run(campaign, **fields) -> ModelRun:
    return ModelRun.objects.create(campaign=campaign, trigger="lead", **fields)


KINDS = {"import": _import_job, "export": _export, "model run": _run}


@pytest.fixture(params=list(KINDS))
def make_job(request, campaign):
    return lambda **fields: KINDS[request.param](campaign, **fields)


@contextmanager
def held_by_another_session(job: Job) -> Iterator[None]:
    """Hold the job's lock from another thread's database session, as a live worker does."""
    held, release = threading.Event(), threading.Event()

    def worker() -> None:
        try:
            with job_lock(job) as free:
                assert free
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_a_running_job_whose_lock_is_free_goes_back_to_the_queue_unsent(make_job):
    job = make_job(status="running", worker="w@lost", progress=0.4, attempts=1)
    assert jobs_reap_lost() == 1
    job.refresh_from_db()
    assert job.status == "queued" and job.dispatched_at is None and job.progress == 0.0
    assert job.error == "The worker w@lost was lost at 40%; it is queued to run again (attempt 2 of 3)."
    assert jobs_reap_lost() == 0


def test_a_job_a_live_worker_holds_is_neither_reaped_nor_taken(make_job):
    job = make_job(status="running", worker="w@live", attempts=1)
    with held_by_another_session(job):
        assert jobs_reap_lost() == 0
        with job_taken(type(job), job.pk, worker="second") as taken:
            assert taken is None
    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == ("running", "w@live", 1)


def test_a_job_lost_on_its_last_attempt_fails_and_says_why(make_job):
    job = make_job(status="running", worker="w@lost", progress=0.5, attempts=MAX_ATTEMPTS)
    assert jobs_reap_lost() == 1
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    assert job.error == "The worker w@lost was lost at 50%, on attempt 3 of 3; it is not tried again."


def test_taking_a_job_counts_an_attempt_and_a_finished_job_is_not_taken(make_job):
    job = make_job()
    with job_taken(type(job), job.pk, worker="w@here") as taken:
        assert (taken.status, taken.worker, taken.attempts) == ("running", "w@here", 1)
        assert taken.started_at is not None
    type(job).objects.filter(pk=job.pk).update(status="succeeded")
    with job_taken(type(job), job.pk, worker="w@here") as taken:
        assert taken is None
