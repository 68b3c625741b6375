"""Celery tasks: each takes ids, re-fetches rows and calls one annotate service (STYLE.md, habit 7)."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=3600, time_limit=3700)
def import_job_run(job_id: int) -> None:
    """Run an uploaded import package; safe to run twice (a finished job is left as it is)."""
    from annotate.services.imports import import_job_run as run

    run(job_id=job_id)
