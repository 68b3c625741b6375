"""A worker tells the database it is alive, which queues it reads and on what device it trains.

Training goes to the `gpu` queue only while a GPU worker is seen (`training_queue`), and leads see
the workers online beside their model runs. A worker that starts under the name of one that was
running a model run was killed mid-run: that run is failed at once instead of waiting to go stale.
Every beat (REWARDLAB_WORKER_BEAT_SECONDS) also sends queued runs, export snapshots and import jobs that
never reached the broker, so a retrain, an export or an import asked for during a broker outage starts
within one beat of the broker's return, labels or not.
Before that it queues again the export snapshots whose worker was lost mid-write (`exports_reap_lost`).
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

logger = logging.getLogger(__name__)

_stop = threading.Event()


def _record(hostname: str, queues: list[str], *, starting: bool) -> None:
    """Say this worker is alive; queue again exports whose worker was lost; send what the broker never got."""
    from django.db import connection

    from annotate.services.exports import exports_dispatch_pending, exports_reap_lost
    from annotate.services.imports import imports_dispatch_pending
    from annotate.services.model_runs import runs_dispatch_pending, worker_seen
    from annotate.services.training import device_default

    try:
        worker_seen(hostname=hostname, queues=queues, device=device_default(), starting=starting)
        runs_dispatch_pending()
        exports_reap_lost()
        exports_dispatch_pending()
        imports_dispatch_pending()
    except Exception:
        logger.exception("Worker %s could not record that it is alive.", hostname)
    finally:
        connection.close()


def _keep_seen(hostname: str, queues: list[str]) -> None:
    from django.conf import settings

    while not _stop.wait(settings.REWARDLAB_WORKER_BEAT_SECONDS):
        _record(hostname, queues, starting=False)


@worker_ready.connect
def _on_ready(sender, **_: object) -> None:
    hostname = sender.hostname
    queues = sorted(queue.name for queue in sender.task_consumer.queues)
    _record(hostname, queues, starting=True)
    threading.Thread(target=_keep_seen, args=(hostname, queues), name="worker-presence", daemon=True).start()


@worker_shutdown.connect
def _on_shutdown(sender, **_: object) -> None:
    from annotate.models import Worker

    _stop.set()
    try:
        Worker.objects.filter(hostname=sender.hostname).delete()
    except Exception:
        logger.exception("Worker %s could not record that it stopped.", sender.hostname)
