"""A worker tells the database it is alive, which queues it reads and on what device it trains.

Training goes to the `gpu` queue only while a GPU worker is seen (`training_queue`), and leads see
the workers online beside their model runs. Every beat (REWARDLAB_WORKER_BEAT_SECONDS) also queues again
the jobs whose worker was lost (`jobs_reap_lost`) and sends the queued jobs that never reached the broker
(`jobs_send_unsent`), so a retrain, an export or an import asked for during a broker outage, or cut short
by a dead worker, starts within one beat, labels or not; and it asks for the consensus refresh of campaigns
whose stored consensus missed their last labels (`consensus_send_stale`).
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

logger = logging.getLogger(__name__)

_stop = threading.Event()


def _record(hostname: str, queues: list[str], *, starting: bool) -> None:
    """Say this worker is alive; queue again jobs whose worker was lost; send what the broker never got."""
    from django.db import connection

    from annotate.services.jobs import jobs_reap_lost, jobs_send_unsent, worker_seen
    from annotate.services.quality import consensus_send_stale
    from workers.training import device_default

    try:
        worker_seen(hostname=hostname, queues=queues, device=device_default(), starting=starting)
        jobs_reap_lost()
        jobs_send_unsent()
        consensus_send_stale()
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
