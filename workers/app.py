"""The Celery application, configured from Django's settings (the CELERY_* names)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

app = Celery("rewardlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {"workers.tasks.*": {"queue": "cpu"}}
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)

import workers.presence  # noqa: E402,F401  (connects the worker_ready and worker_shutdown handlers)


@app.on_after_configure.connect
def _make_broker_folders(sender: Celery, **_: object) -> None:
    """Create the embedded broker's folders; kombu's filesystem transport expects them to exist."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            os.makedirs(options[key], exist_ok=True)
