"""Faults as tests (issue 7): the broker stops, a worker is killed, PostgreSQL drops its connections, leases run out.

Every part is the real one: a Redis server of the test's own that the test stops and starts, Celery worker
processes the test SIGKILLs, PostgreSQL sessions the test terminates, and the web reached over HTTP the way
annotators' browsers and researchers' scripts reach it: pytest-django's live server (a threaded WSGI server
in this process), or gunicorn where what is under test is a server process that keeps its connections.
"""

from __future__ import annotations

import hashlib
import io
import re
import signal
import subprocess
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from PIL import Image as PILImage
from rest_framework.authtoken.models import Token

from annotate import clock
from annotate.models import (
    Annotation,
    Assignment,
    Campaign,
    ExportSnapshot,
    Image,
    ImportJob,
    Item,
    ModelRun,
    Pair,
    PriorLabel,
    Response,
    Worker,
)
from annotate.services.campaigns import campaign_update, membership_set
from annotate.services.exports import export_snapshot_create
from annotate.services.jobs import jobs_reap_lost
from rewardlab.synthetic import SyntheticConfig, write_package
from tests.conftest import CHILD_APPLICATION_NAME, RedisServer, wait_for
from tests.factories import image_stored, make_pairs
from tests.test_loop_worker import RUN_TIMEOUT, _finished_run

# A worker beat every second, so what waits for one (a send after the broker's return, a reap) waits little.
FAST_BEAT = {"REWARDLAB_WORKER_BEAT_SECONDS": "1"}
# Scenes of the exported campaigns: a 4 MB mdpo zip, so a write stepped past its first dozen images is far from done.
EXPORT_SCENES = 300


class Api:
    """A REST client of the served app, signed in by token, as a researcher's script or a labeling tool is."""

    def __init__(self, base: str, username: str) -> None:
        token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username=username))
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token.key}"

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=30)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.base + path, timeout=30, **kwargs)

    def label_next(self, campaign: Campaign, choice: str = "b") -> int:
        """Lease the next pair and label it; return the assignment, asserting both answers were successes."""
        lease = self.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/")
        assert lease.status_code == 200, lease.text
        assignment = lease.json()["assignment"]
        saved = self.post(
            "/api/v1/annotations/", json={"assignment": assignment, "more_hallucinated": choice, "strength": 2}
        )
        assert saved.status_code == 201, saved.text
        assert saved.json()["assignment"] == assignment
        return assignment


class Page:
    """A browser's session on the served pages (plain form POSTs, no JavaScript).

    It is signed in by Django's test client, in the sessions table the server reads: the server checks
    passwords with the real hashers, the test process makes users with a fast one that the server lacks.
    """

    def __init__(self, base: str, username: str) -> None:
        signed_in = Client()
        signed_in.force_login(get_user_model().objects.get(username=username))
        self.base = base
        self.session = requests.Session()
        self.session.cookies.set(settings.SESSION_COOKIE_NAME, signed_in.cookies[settings.SESSION_COOKIE_NAME].value)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=30)

    def label_next(self, campaign: Campaign) -> int:
        """Open the label page and label its pair (left more hallucinated); return the assignment."""
        page = self.get(f"/campaigns/{campaign.pk}/label/")
        assert page.status_code == 200, page.text
        assignment = int(re.search(r'name="assignment" value="(\d+)"', page.text).group(1))
        saved = self.session.post(
            f"{self.base}/campaigns/{campaign.pk}/label/submit/",
            data={
                "csrfmiddlewaretoken": _csrf(page.text),
                "assignment": assignment,
                "more_hallucinated": "left",
                "strength": 3,
            },
            allow_redirects=False,
            timeout=30,
        )
        # Saved, the form redirects to the next pair; a refused label renders the form again (422).
        assert saved.status_code == 302 and saved.headers["Location"].endswith("/label/"), saved.text
        return assignment


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def _labels_stored_once(campaign: Campaign, acknowledged: list[int]) -> None:
    """Every acknowledged label is in PostgreSQL exactly once, and nothing else is."""
    stored = list(Annotation.objects.filter(pair__campaign=campaign).values_list("assignment_id", flat=True))
    assert sorted(stored) == sorted(acknowledged)
    assert len(set(acknowledged)) == len(acknowledged)


def _drop_database_connections() -> int:
    """Terminate the sessions of the test's server and worker processes, as a failover does; return how many.

    Only theirs (`subprocess_env` names them): this process's own, the live server's and other threads' stay.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [CHILD_APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


# ---------------------------------------------------------------------------------------------------------
# Redis stops while annotators label


@dataclass
class Stack:
    """The web (the live server) and a worker, both on the test's own Redis server."""

    redis: RedisServer
    url: str
    worker: subprocess.Popen


@pytest.fixture
def stack_on_private_redis(private_broker, live_server, start_worker) -> Stack:
    worker = start_worker(env_extra={"CELERY_BROKER_URL": private_broker.url, **FAST_BEAT})
    wait_for(Worker.objects.exists, what="the worker to say it is alive")
    return Stack(private_broker, live_server.url, worker)


@pytest.mark.django_db(transaction=True)
def test_labels_land_while_redis_is_down_and_the_retrain_they_ask_for_runs_when_it_returns(
    campaign, stack_on_private_redis
):
    campaign_update(campaign=campaign, retrain_every=3)
    make_pairs(campaign, 6)
    stack = stack_on_private_redis
    api, page = Api(stack.url, "ann1"), Page(stack.url, "ann2")
    acknowledged = [api.label_next(campaign, "a")]

    stack.redis.stop()  # SIGKILL: the broker is gone mid-session, with no goodbye to anyone
    acknowledged += [page.label_next(campaign), api.label_next(campaign, "a")]  # the third label asks for a retrain
    run = ModelRun.objects.get(campaign=campaign)
    assert (run.trigger, run.status, run.dispatched_at) == ("labels", "queued", None), "asked for, never sent"
    acknowledged += [page.label_next(campaign)]
    _labels_stored_once(campaign, acknowledged)
    assert ModelRun.objects.get(campaign=campaign).dispatched_at is None

    stack.redis.start()  # the same port, and empty: whatever it held is lost
    # No label comes now: the worker's beat (every second) sends the waiting run.
    wait_for(lambda: ModelRun.objects.get(pk=run.pk).dispatched_at, timeout=30, what="a beat to send the run")
    done = wait_for(lambda: _finished_run(campaign), timeout=RUN_TIMEOUT, what="the retrain after Redis returned")
    assert done.pk == run.pk and done.status == "succeeded", done.error
    assert done.dispatched_at is not None and done.labels_at_request == 3
    _labels_stored_once(campaign, acknowledged)
    assert api.label_next(campaign, "a") and page.label_next(campaign)  # and labeling goes on
    assert stack.worker.poll() is None, "the worker rode out the outage; nothing restarted it"


def _import_finished(api: Api, job_id: int) -> dict | None:
    body = api.get(f"/api/v1/imports/{job_id}/").json()
    return body if body["status"] in {"succeeded", "failed"} else None


@pytest.mark.django_db(transaction=True)
def test_an_import_uploaded_while_redis_is_down_is_sent_when_it_returns(campaign, stack_on_private_redis, tmp_path):
    stack = stack_on_private_redis
    package = write_package(SyntheticConfig(n_items=5, seed=31), tmp_path / "late.zip")
    lead = Api(stack.url, "lead")

    stack.redis.stop()
    with package.open("rb") as upload:
        created = lead.post(f"/api/v1/campaigns/{campaign.pk}/imports/", files={"file": ("late.zip", upload)})
    assert created.status_code == 202 and created.json()["status"] == "queued", created.text

    stack.redis.start()
    back = clock.now()
    # A full beat after the broker's return has sent what waited; five items then import in a second or two.
    wait_for(lambda: Worker.objects.filter(seen_at__gt=back).exists(), what="a worker beat after Redis returned")
    first = Worker.objects.get().seen_at
    wait_for(lambda: Worker.objects.filter(seen_at__gt=first).exists(), what="a second worker beat")
    job = wait_for(lambda: _import_finished(lead, created.json()["id"]), timeout=8, what="the late import")
    assert job["status"] == "succeeded" and job["items_created"] == 5, job["errors"]


# ---------------------------------------------------------------------------------------------------------
# A worker is killed, or loses its database connection, mid-export


def _scenes(campaign: Campaign, n: int) -> None:
    """Add n items, each with its own 48x48 image and one pair with a prior label (exported `with_priors`)."""
    images = []
    for index in range(n):
        noise = hashlib.shake_256(f"scene-{index}".encode()).digest(48 * 48 * 3)
        buffer = io.BytesIO()
        PILImage.frombytes("RGB", (48, 48), noise).save(buffer, format="PNG")
        images.append(image_stored(buffer.getvalue(), save=False))
    Image.objects.bulk_create(images)
    items = Item.objects.bulk_create(
        Item(campaign=campaign, external_id=f"scene-{i:04d}", image=image, prompt=f"What is in scene {i}?")
        for i, image in enumerate(images)
    )
    responses = Response.objects.bulk_create(
        Response(item=item, external_id=f"r{side}", text=f"Answer {side} about {item.external_id}.", model="m")
        for item in items
        for side in range(2)
    )
    pairs = Pair.objects.bulk_create(
        Pair(campaign=campaign, item=item, a=responses[2 * i], b=responses[2 * i + 1], needed_labels=2)
        for i, item in enumerate(items)
    )
    PriorLabel.objects.bulk_create(
        PriorLabel(pair=pair, more_hallucinated="b", strength=2, source="rlaif-v") for pair in pairs
    )


MDPO_WITH_PRIORS = {"format": "mdpo", "filters": {"labels": "with_priors", "test_share": 0}}


def _export_folder(campaign: Campaign) -> Path:
    return Path(settings.MEDIA_ROOT) / "exports" / f"campaign-{campaign.pk}"


def _being_written(folder: Path, snapshot_id: int) -> Path | None:
    """The temp file of a write of the snapshot in progress, once it holds some images; None before."""
    for temp in folder.glob(f".snapshot-{snapshot_id}-*.tmp/snapshot-{snapshot_id}-*"):
        if temp.stat().st_size > 100_000:  # a dozen images, of 300: well before the end
            return temp
    return None


def _stopped(process: subprocess.Popen) -> bool:
    """Tell whether the process is stopped (state T): a SIGSTOP is delivered soon after it is sent, not at once."""
    return Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def _freeze(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGSTOP)
    wait_for(lambda: _stopped(process), interval=0.005, what="the worker to stop")


def _step_until(worker: subprocess.Popen, condition, *, what: str):
    """Let a stopped worker run in short bursts until `condition()` holds; return its value, the worker stopped.

    Stepping instead of watching a running worker catches the moment however fast or slow the machine is.
    """
    pause = threading.Event()  # never set: its wait() is one burst

    def step():
        worker.send_signal(signal.SIGCONT)
        pause.wait(0.02)
        _freeze(worker)
        return condition()

    return wait_for(step, interval=0, what=what)


def _freeze_mid_write(worker: subprocess.Popen, folder: Path, snapshot_id: int) -> Path:
    """Step a stopped worker into the middle of writing the snapshot; return the temp file it is writing."""
    temp = _step_until(worker, lambda: _being_written(folder, snapshot_id), what="the worker to be writing")
    assert ExportSnapshot.objects.get(pk=snapshot_id).status == "running"
    assert not list(folder.glob(f"snapshot-{snapshot_id}-*")), "nothing half written has the file's name"
    return temp


def _idle_worker(start_worker, hostname: str, *, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a worker, wait until it is ready, and stop it (SIGSTOP) before it takes any task."""
    worker = start_worker(hostname, env_extra=env_extra)
    wait_for(lambda: Worker.objects.filter(hostname=hostname).exists(), what=f"{hostname} to be ready")
    _freeze(worker)
    return worker


@dataclass
class Downloads:
    """A researcher polling a snapshot: every answer before success must refuse the download (409)."""

    api: Api
    snapshot_id: int
    refused: int = 0

    def finished(self) -> tuple[dict, bytes] | None:
        # The download first: a snapshot that succeeds between the two requests is then seen refused, then
        # succeeded, which is what happened; the other order would see it running, then served.
        download = self.api.get(f"/api/v1/exports/{self.snapshot_id}/download/")
        body = self.api.get(f"/api/v1/exports/{self.snapshot_id}/").json()
        if download.status_code == 200:
            assert body["status"] == "succeeded", body
            return body, download.content
        assert download.status_code == 409, download.status_code
        if body["status"] != "succeeded":
            assert body["download_url"] is None and body["status"] != "failed", body
            self.refused += 1
        return None


def _check_snapshot(body: dict, data: bytes, folder: Path) -> None:
    """The downloaded file is whole: its SHA-256 is the recorded one, the zip reads, every row is there."""
    assert hashlib.sha256(data).hexdigest() == body["sha256"] and len(data) == body["size_bytes"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert len(archive.read("train.jsonl").splitlines()) == body["rows"] == EXPORT_SCENES
        assert sum(name.startswith("corrupted/") for name in archive.namelist()) == EXPORT_SCENES
    assert not [path.name for path in folder.iterdir() if path.name.startswith(".")], "no temp file is left"


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_export_leaves_no_partial_file_and_the_next_worker_writes_it(
    campaign, start_worker, live_server, tmp_path
):
    _scenes(campaign, EXPORT_SCENES)
    doomed = _idle_worker(start_worker, "doomed@test")
    researcher = Api(live_server.url, "res")
    created = researcher.post(f"/api/v1/campaigns/{campaign.pk}/exports/", json=MDPO_WITH_PRIORS)
    assert created.status_code == 202, created.text
    snapshot_id = created.json()["id"]
    downloads = Downloads(researcher, snapshot_id)
    folder = _export_folder(campaign)
    temp = _freeze_mid_write(doomed, folder, snapshot_id)
    assert downloads.finished() is None
    # Stalled but alive, the worker still holds the snapshot: a reaper leaves it be.
    assert jobs_reap_lost() == 0 and ExportSnapshot.objects.get(pk=snapshot_id).status == "running"

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert temp.exists(), "the killed worker left its temp file behind"
    assert downloads.finished() is None
    start_worker("next@test", env_extra=FAST_BEAT)  # a worker comes (back): its beat finds the lost snapshot
    body, data = wait_for(downloads.finished, timeout=90, what="the next worker to write the snapshot")
    _check_snapshot(body, data, folder)
    assert downloads.refused >= 3
    assert (folder / f"snapshot-{snapshot_id}-mdpo.zip").read_bytes() == data
    next_log = (tmp_path / "worker-1.log").read_text()
    assert f"Export {snapshot_id} (mdpo, running): The worker doomed@test was lost" in next_log


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_import_leaves_nothing_written_and_the_next_worker_imports_it(
    campaign, start_worker, live_server, tmp_path
):
    package = write_package(SyntheticConfig(n_items=200, seed=4, prior_noise=0.2), tmp_path / "scenes.zip")
    doomed = _idle_worker(start_worker, "doomed@test")
    lead = Api(live_server.url, "lead")
    with package.open("rb") as fp:
        created = lead.post(f"/api/v1/campaigns/{campaign.pk}/imports/", files={"file": ("scenes.zip", fp)})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    _step_until(doomed, lambda: ImportJob.objects.get(pk=job_id).progress > 0, what="the worker to be importing")
    assert jobs_reap_lost() == 0, "stalled but alive, the worker still holds the job"

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert ImportJob.objects.get(pk=job_id).status == "running" and not Item.objects.filter(campaign=campaign).exists()
    start_worker("next@test", env_extra=FAST_BEAT)  # its beat finds the lost job

    def finished() -> dict | None:
        body = lead.get(f"/api/v1/imports/{job_id}/").json()
        return body if body["status"] in {"succeeded", "failed"} else None

    body = wait_for(finished, timeout=90, what="the next worker to import the package")
    assert body["status"] == "succeeded" and body["items_created"] == 200, body["errors"]
    assert Item.objects.filter(campaign=campaign).count() == 200 and ImportJob.objects.get(pk=job_id).attempts == 2
    assert f"Import {job_id} (running): The worker doomed@test was lost" in (tmp_path / "worker-1.log").read_text()


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_database_connection_drops_mid_export_retries_and_writes_it(campaign, start_worker, tmp_path):
    _scenes(campaign, EXPORT_SCENES)
    # The default beat (20 s): no reaper runs meanwhile, so the recovery is the task's own retry.
    worker = _idle_worker(start_worker, "exporter@test")
    snapshot = export_snapshot_create(
        campaign=campaign, created_by=campaign.created_by, format="mdpo", filters=MDPO_WITH_PRIORS["filters"]
    )
    folder = _export_folder(campaign)
    _freeze_mid_write(worker, folder, snapshot.pk)

    dropped = _drop_database_connections()
    worker.send_signal(signal.SIGCONT)
    assert dropped >= 1, "the worker's session was open mid-task"

    def written() -> ExportSnapshot | None:
        snapshot.refresh_from_db()
        return snapshot if snapshot.status in {"succeeded", "failed"} else None

    wait_for(written, what="the export's retry")
    assert snapshot.status == "succeeded", snapshot.error
    assert worker.poll() is None, "the same worker process recovered; nothing restarted"
    log = (tmp_path / "worker-0.log").read_text()
    assert "retry: Retry in 1s" in log and "OperationalError" in log
    data = Path(snapshot.file.path).read_bytes()
    _check_snapshot({"sha256": snapshot.sha256, "size_bytes": snapshot.size_bytes, "rows": snapshot.rows}, data, folder)


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL drops every connection while the web serves


@pytest.mark.django_db(transaction=True)
def test_the_web_serves_on_without_a_restart_after_postgresql_drops_its_connections(campaign, start_web):
    make_pairs(campaign, 6)
    web = start_web(threads=2)
    api, page, lead = Api(web.url, "ann1"), Page(web.url, "ann2"), Page(web.url, "lead")
    lead_api = Api(web.url, "lead")
    acknowledged: list[int] = []

    def serve() -> None:
        """One of each: an API lease and label, a page label, the dashboard, an API list; all must succeed."""
        acknowledged.append(api.label_next(campaign))
        acknowledged.append(page.label_next(campaign))
        assert lead.get(f"/campaigns/{campaign.pk}/dashboard/").status_code == 200
        listed = lead_api.get(f"/api/v1/campaigns/{campaign.pk}/pairs/")
        assert listed.status_code == 200 and listed.json()["count"] == 6

    serve()
    serve()  # both server threads have a persistent connection now (CONN_MAX_AGE)
    workers = web.worker_pids()
    assert _drop_database_connections() >= 1, "the server held its connections between requests"
    serve()
    serve()
    assert web.worker_pids() == workers, "gunicorn's worker served on; it was not restarted"
    _labels_stored_once(campaign, acknowledged)


# ---------------------------------------------------------------------------------------------------------
# Leases expire while many annotators lease at once

LEASE_SECONDS = 2  # below what a lead may set (30): expiry is what is under test, and the test cannot wait long


@dataclass
class Outcomes:
    """What the server answered each annotator; appended from many threads (list.append is atomic)."""

    created: list[tuple[str, int, int]] = field(default_factory=list)  # (annotator, assignment, annotation)
    repeated: list[tuple[int, int]] = field(default_factory=list)  # (assignment, annotation) of a resubmit
    refused: list[tuple[str, int]] = field(default_factory=list)  # (annotator, assignment) answered 409
    abandoned: list[tuple[str, int, int]] = field(default_factory=list)  # (annotator, assignment, pair)
    errors: list[str] = field(default_factory=list)


def _submit(api: Api, assignment: int) -> requests.Response:
    body = {"assignment": assignment, "more_hallucinated": "a", "strength": 1, "duration_ms": 500}
    return api.post("/api/v1/annotations/", json=body)


def _steady(api: Api, name: str, campaign: Campaign, outcomes: Outcomes, deadline: float) -> None:
    """Label until the campaign is complete; on 204 (what is left is leased to others) ask again shortly."""
    pause = threading.Event()  # never set: its wait() is the pause between two asks
    count = 0
    while clock.now().timestamp() < deadline:
        lease = api.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/")
        if lease.status_code == 204:
            complete = not Pair.objects.filter(campaign=campaign).exclude(status="complete").exists()
            connection.close()  # this thread's own session; the test database is flushed after the test
            if complete:
                return
            pause.wait(0.1)
            continue
        if lease.status_code != 200:
            outcomes.errors.append(f"{name} next-pair {lease.status_code}: {lease.text}")
            return
        assignment = lease.json()["assignment"]
        saved = _submit(api, assignment)
        if saved.status_code == 201:
            outcomes.created.append((name, assignment, saved.json()["id"]))
            count += 1
            if count % 3 == 0:  # a double click: the same label again must return the first one
                again = _submit(api, assignment)
                if again.status_code == 200:
                    outcomes.repeated.append((assignment, again.json()["id"]))
                else:
                    outcomes.errors.append(f"{name} resubmit {again.status_code}: {again.text}")
        elif saved.status_code == 409:  # leased, then slow past expiry while others took the pair
            outcomes.refused.append((name, assignment))
        else:
            outcomes.errors.append(f"{name} submit {saved.status_code}: {saved.text}")
    outcomes.errors.append(f"{name} ran out of time")


def _abandon(api: Api, name: str, campaign: Campaign, outcomes: Outcomes) -> None:
    """Lease a pair and walk away from it."""
    lease = api.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/")
    if lease.status_code != 200:
        outcomes.errors.append(f"{name} next-pair {lease.status_code}: {lease.text}")
        return
    outcomes.abandoned.append((name, lease.json()["assignment"], lease.json()["pair"]["id"]))


@pytest.mark.django_db(transaction=True)
def test_expired_leases_return_to_the_pool_under_contention_and_no_pair_is_over_labeled(
    campaign, make_user, live_server
):
    steady = [f"steady{n}" for n in range(6)]
    walkers = [f"walker{n}" for n in range(3)]
    for username in steady + walkers:
        make_user(username)
        membership_set(campaign=campaign, username=username, role="annotator")
    make_pairs(campaign, 16)
    Campaign.objects.filter(pk=campaign.pk).update(lease_seconds=LEASE_SECONDS)
    # The live server answers each request in a thread of its own, with a database session of its own.
    apis = {name: Api(live_server.url, name) for name in steady + walkers}
    outcomes = Outcomes()
    deadline = clock.now().timestamp() + 30

    threads = [threading.Thread(target=_abandon, args=(apis[n], n, campaign, outcomes)) for n in walkers]
    threads += [threading.Thread(target=_steady, args=(apis[n], n, campaign, outcomes, deadline)) for n in steady]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not outcomes.errors, outcomes.errors
    assert len(outcomes.abandoned) == 3
    pairs = Pair.objects.filter(campaign=campaign)
    assert all(pair.status == "complete" and pair.labels_count == pair.needed_labels == 2 for pair in pairs)
    labels_per_pair = {pair.pk: pair.annotations.count() for pair in pairs}
    assert set(labels_per_pair.values()) == {2}, "no pair has more labels than its overlap"
    pairs_by_annotator = list(Annotation.objects.filter(pair__campaign=campaign).values_list("annotator", "pair"))
    assert len(pairs_by_annotator) == len(set(pairs_by_annotator)) == 32, "no annotator labels a pair twice"

    stored = dict(Annotation.objects.filter(pair__campaign=campaign).values_list("assignment_id", "id"))
    created = {assignment: annotation for _, assignment, annotation in outcomes.created}
    assert created == stored, "every acknowledged label is stored once, and nothing unacknowledged is"
    assert outcomes.repeated and all(stored[assignment] == again for assignment, again in outcomes.repeated)
    assert not Annotation.objects.filter(assignment_id__in=[a for _, a in outcomes.refused]).exists()

    # A walker's live lease held one of its pair's two places: the pair got two labels from others only
    # because the lease ran out and the place went back to the pool.
    assert not Annotation.objects.filter(annotator__username__in=walkers).exists()
    for name, assignment, _ in outcomes.abandoned:
        assert _expired(assignment) and Assignment.objects.get(pk=assignment).status == "leased"
        late = _submit(apis[name], assignment)  # the walker comes back and labels it after all: too late
        assert late.status_code == 409 and "expired" in late.json()["detail"], late.text
    assert Annotation.objects.filter(pair__campaign=campaign).count() == 32


def _expired(assignment_id: int) -> bool:
    return Assignment.objects.get(pk=assignment_id).expires_at < clock.now()


@pytest.mark.django_db(transaction=True)
def test_a_label_on_an_expired_lease_is_kept_while_its_pair_has_room_and_refused_once_others_filled_it(
    campaign, make_user, live_server
):
    make_user("ann3")
    membership_set(campaign=campaign, username="ann3", role="annotator")
    make_pairs(campaign, 2)
    Campaign.objects.filter(pk=campaign.pk).update(lease_seconds=LEASE_SECONDS)
    ann1, ann2, ann3 = (Api(live_server.url, name) for name in ("ann1", "ann2", "ann3"))

    # ann1 leases the first pair and lets the lease run out; ann2 and ann3 then take both its places.
    first = ann1.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assert datetime.fromisoformat(first["expires_at"]) > clock.now()
    wait_for(lambda: _expired(first["assignment"]), timeout=LEASE_SECONDS + 5, what="ann1's lease to expire")
    others = [api.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json() for api in (ann2, ann3)]
    assert [lease["pair"]["id"] for lease in others] == [first["pair"]["id"]] * 2, "the expired place is served again"
    late = _submit(ann1, first["assignment"])
    assert late.status_code == 409 and "expired" in late.json()["detail"], late.text
    assert not Annotation.objects.filter(assignment_id=first["assignment"]).exists()
    for api, lease in zip((ann2, ann3), others, strict=True):
        assert _submit(api, lease["assignment"]).status_code == 201

    # ann1's lease on the second pair runs out too, but nobody needed its place: the label is kept, once.
    second = ann1.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assert second["pair"]["id"] != first["pair"]["id"]
    wait_for(lambda: _expired(second["assignment"]), timeout=LEASE_SECONDS + 5, what="ann1's second lease to expire")
    kept = _submit(ann1, second["assignment"])
    assert kept.status_code == 201, kept.text
    again = _submit(ann1, second["assignment"])
    assert again.status_code == 200 and again.json()["id"] == kept.json()["id"]
    assert Annotation.objects.filter(assignment_id=second["assignment"]).count() == 1
    assert Pair.objects.get(pk=second["pair"]["id"]).labels_count == 1
