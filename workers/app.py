"""The Celery application, configured from Django's settings (the CELERY_* names)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
# A worker reports a run's progress on its job; the Hugging Face libraries' own bars ("Loading weights: 100%…")
# would only reach its log, as WARNING lines a reader must wonder about (issue 18: a quiet first run).
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = Celery("rewardlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {"workers.tasks.*": {"queue": "cpu"}}
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)

import workers.presence  # noqa: E402,F401  (connects the worker_ready and worker_shutdown handlers)
