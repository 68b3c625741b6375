"""Load benchmark of the annotator loop over REST: next-pair + submit under 1, 8 and 32 annotators.

Run with `make bench-web` or `.venv/bin/python bench/web.py [--seconds 10] [--quick]`. It prints one JSON
document on stdout (progress goes to stderr) and writes it to bench/out/web.json.

What it does, top to bottom:
1. create a fresh PostgreSQL database `rewardlab_bench` on the server DATABASE_URL names and migrate it;
2. per level, seed a new campaign (P pairs, overlap k, gold pairs) and N new annotators with tokens,
   so no level starts on a pool an earlier level drained;
3. serve the app with gunicorn (gthread, DEBUG off) as a child process, loopback only;
4. per level, run N annotator threads, each with its own keep-alive connection and token, looping
   next-pair -> submit for a fixed time; calls that start inside the warm-up are left out of the stats;
5. reconcile against the database: no over-assigned pair, no (pair, annotator) labelled twice, and the
   submits the server acknowledged equal the Annotation rows exactly (nothing lost, nothing doubled).

The annotators are closed-loop with no think time by default (`--think-ms 0`): each thread sends its next
request as soon as the last one returns, so at N annotators the server always has N requests in flight and
the latencies measure the server at saturation (Little's law: latency ~ N / throughput), not a human pace.
The client threads share the machine's cores with gunicorn and PostgreSQL; the JSON says how many there are.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/rewardlab"
BENCH_DB_NAME = "rewardlab_bench"
DEFAULT_OUT = ROOT / "bench" / "out" / "web.json"

GOAL_P99_MS = 50.0
GOAL_AT_ANNOTATORS = 32
CLIENT_TIMEOUT_S = 30.0  # one stuck request must not hang the run
CONNECT_RETRIES = 3  # a connection dropped before any response is retried; submit is idempotent per assignment
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_GRACE_S = 10.0
ERROR_BACKOFF_S = 0.05  # after an error answer, so a failing server is not hammered in a tight loop
CHOICES = ("a", "b", "both", "neither")
CHOICE_WEIGHTS = (0.4, 0.4, 0.1, 0.1)


def log(message: str) -> None:
    print(f"[bench-web] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Database


def bench_database_url(server_url: str, name: str = BENCH_DB_NAME) -> str:
    """Return DATABASE_URL with its database name replaced by the bench's own; refuse anything but PostgreSQL."""
    parts = urlsplit(server_url)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit(f"the benches need a PostgreSQL DATABASE_URL (they measure row locks), not {parts.scheme!r}")
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate_database(url: str) -> str:
    """Drop and create the database `url` names through the server's `postgres` database; return the server version."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    conninfo = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "dbname": "postgres",
    }
    if parts.password:
        conninfo["password"] = parts.password
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        name = sql.Identifier(parts.path.lstrip("/"))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
        return conn.execute("SHOW server_version").fetchone()[0]


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


# ---------------------------------------------------------------------------------------------------------
# Seeding, through Django in this process (a small django.setup() block; services where they exist)


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


@dataclass
class Seeded:
    campaign_id: int
    tokens: list[str]
    pairs: int
    gold_pairs: int
    seconds: float


def seed_level(
    *, level: int, annotators: int, pairs: int, overlap: int, gold_share: float, rng: random.Random
) -> Seeded:
    """Create a campaign with `pairs` pairs and `annotators` new annotators with tokens; return their tokens."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from rest_framework.authtoken.models import Token

    from annotate.models import Item, Pair, Response
    from annotate.services.campaigns import campaign_create, membership_set

    started = time.perf_counter()
    User = get_user_model()
    gold_pairs = max(1, round(pairs * gold_share)) if gold_share > 0 else 0
    with transaction.atomic():
        lead = User.objects.create(username=f"bench-lead-{level}", password=make_password(None))
        campaign = campaign_create(
            created_by=lead,
            name=f"bench level {level}: {annotators} annotators",
            overlap=overlap,
            gold_share=gold_share,
        )
        # Passwords are unusable on purpose: hashing 41 of them would cost more than the level; tokens are the login.
        users = User.objects.bulk_create(
            [User(username=f"bench-{level}-ann-{i:03d}", password=make_password(None)) for i in range(annotators)]
        )
        for user in users:
            membership_set(campaign=campaign, username=user.username, role="annotator")
        tokens = Token.objects.bulk_create([Token(key=Token.generate_key(), user=user) for user in users])

        image = _bench_image()
        items = Item.objects.bulk_create(
            [
                Item(
                    campaign=campaign,
                    external_id=f"bench-{index:06d}",
                    image=image,
                    prompt=f"How many red balls are in scene {index}?",
                    meta={"qtype": "counting"},
                )
                for index in range(pairs)
            ],
            batch_size=1000,
        )
        responses = Response.objects.bulk_create(
            [
                Response(item=item, external_id=f"r{side}", text=_answer_text(rng), model=f"bench-model-{side}")
                for item in items
                for side in (0, 1)
            ],
            batch_size=2000,
        )
        Pair.objects.bulk_create(
            [
                Pair(
                    campaign=campaign,
                    item=item,
                    a=responses[2 * index],
                    b=responses[2 * index + 1],
                    needed_labels=overlap,
                    gold_answer="b" if index < gold_pairs else "",
                    priority=rng.random(),
                )
                for index, item in enumerate(items)
            ],
            batch_size=1000,
        )
    with connection.cursor() as cursor:
        # Fresh rows, fresh statistics: the planner should see the tables as a live deployment's would be.
        cursor.execute("ANALYZE")
    connection.close()
    return Seeded(campaign.pk, [token.key for token in tokens], pairs, gold_pairs, time.perf_counter() - started)


def _bench_image():
    """Return the one image every bench item shows, stored once by SHA-256 as an import would."""
    import hashlib
    import io

    from django.core.files.base import ContentFile
    from PIL import Image as PILImage

    from annotate.models import Image

    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    image = Image.objects.filter(sha256=sha).first()
    if image is None:
        image = Image(sha256=sha, width=64, height=48, format="PNG", size_bytes=len(data))
        image.file.save(f"{sha[:2]}/{sha}.png", ContentFile(data), save=False)
        image.save()
    return image


def _answer_text(rng: random.Random) -> str:
    count = rng.choice(("two", "three", "four"))
    filler = " It sits next to a blue box on a wooden table, under soft light." * rng.randint(0, 4)
    return f"There are {count} red balls in the image.{filler}"


# ---------------------------------------------------------------------------------------------------------
# The server


def _terminate_with_parent() -> None:
    """Ask Linux to SIGTERM gunicorn's master if this process dies, even by SIGKILL (no atexit then)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: try/finally and atexit still stop it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving annotate.wsgi on loopback, as a child in its own process group; stop() is idempotent."""

    def __init__(
        self, *, app: str, port: int, workers: int, threads: int, keep_alive: int, env: dict[str, str], log_path: Path
    ):
        self.port = port
        self.log_path = log_path
        self.argv = [
            str(VENV_BIN / "gunicorn"),
            app,
            "-b",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            str(keep_alive),
            "--timeout",
            "60",
            "--graceful-timeout",
            str(int(SERVER_STOP_GRACE_S)),
            "--log-level",
            "warning",
        ]
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self, probe_token: str) -> None:
        self.log_file = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/api/v1/campaigns/", headers={"Authorization": f"Token {probe_token}"})
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
                raise SystemExit(f"gunicorn answered {status} to the readiness probe; see {self.log_path}")
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"gunicorn did not answer within {SERVER_START_TIMEOUT_S:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the master stops its workers gracefully
        try:
            process.wait(SERVER_STOP_GRACE_S + 5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group is ours: start_new_session above
            process.wait()
        self.log_file.close()

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


# ---------------------------------------------------------------------------------------------------------
# The annotators


@dataclass
class Call:
    kind: str  # "next_pair" or "submit"
    start: float  # perf_counter at the first byte sent
    ms: float
    status: str  # HTTP status, or "connection" when no answer came after the retries


@dataclass
class Annotator:
    """One simulated annotator: its own token and keep-alive connection, next-pair then submit until the deadline."""

    port: int
    token: str
    campaign_id: int
    deadline: float
    think_s: float
    rng: random.Random
    calls: list[Call] = field(default_factory=list)
    acknowledged: dict[int, int] = field(default_factory=dict)  # assignment -> annotation id
    exhausted: bool = False
    retries: int = 0

    def run(self) -> None:
        self.conn = self._connect()
        path = f"/api/v1/campaigns/{self.campaign_id}/next-pair/"
        try:
            while time.perf_counter() < self.deadline:
                status, body = self._call("next_pair", "GET", path)
                if status == "204":
                    self.exhausted = True
                    return
                if status != "200":
                    time.sleep(ERROR_BACKOFF_S)
                    continue
                assignment = json.loads(body)["assignment"]
                if self.think_s:
                    time.sleep(self.rng.uniform(0.5, 1.5) * self.think_s)
                status, body = self._call("submit", "POST", "/api/v1/annotations/", self._label(assignment))
                if status in ("200", "201"):
                    self.acknowledged[assignment] = json.loads(body)["id"]
                else:
                    time.sleep(ERROR_BACKOFF_S)
        finally:
            self.conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)

    def _label(self, assignment: int) -> bytes:
        choice = self.rng.choices(CHOICES, CHOICE_WEIGHTS)[0]
        label = {
            "assignment": assignment,
            "more_hallucinated": choice,
            "strength": self.rng.randint(1, 4) if choice in ("a", "b") else None,
            "duration_ms": self.rng.randint(2000, 20000),
        }
        return json.dumps(label).encode()

    def _call(self, kind: str, method: str, path: str, body: bytes | None = None) -> tuple[str, bytes]:
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        start = time.perf_counter()
        for attempt in range(CONNECT_RETRIES):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                status = str(response.status)
                break
            except (OSError, http.client.HTTPException):
                # A dropped keep-alive connection: reconnect and resend (next-pair returns the open lease,
                # a resubmit returns the first annotation), as a browser would.
                self.conn.close()
                self.conn = self._connect()
                if attempt < CONNECT_RETRIES - 1:
                    self.retries += 1
        else:
            status, data = "connection", b""
        self.calls.append(Call(kind, start, (time.perf_counter() - start) * 1000, status))
        return status, data


def cpu_sample(server_pgid: int) -> dict | None:
    """Return CPU seconds used so far: the machine, this client, and each gunicorn and PostgreSQL process (Linux)."""
    try:
        hz = os.sysconf("SC_CLK_TCK")
        # /proc/stat: user nice system idle iowait irq softirq steal ...
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        sample = {
            "machine_busy": (sum(ticks) - ticks[3] - ticks[4]) / hz,
            "steal": ticks[7] / hz,
            "bench_client": time.process_time(),
            "gunicorn": {},
            "postgres": {},
        }
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue  # the process ended between listing and reading
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            cpu = (int(rest[11]) + int(rest[12])) / hz  # utime + stime
            if int(rest[2]) == server_pgid:
                sample["gunicorn"][entry.name] = cpu
            elif comm == "postgres":
                sample["postgres"][entry.name] = cpu
        return sample
    except (OSError, ValueError, IndexError):
        return None


def cpu_split(before: dict | None, after: dict | None, seconds: float) -> dict | None:
    """Turn two samples into cores used on average; `other` is whatever else ran on the machine meanwhile.

    Per-process CPU counts only processes alive at the end (a backend that exited mid-window takes its
    time with it), so gunicorn and postgres are lower bounds and `other` an upper bound.
    """
    if before is None or after is None:
        return None
    used = {key: after[key] - before[key] for key in ("machine_busy", "steal", "bench_client")}
    for key in ("gunicorn", "postgres"):
        used[key] = sum(cpu - before[key].get(pid, 0.0) for pid, cpu in after[key].items())
    used["other"] = used["machine_busy"] - used["gunicorn"] - used["postgres"] - used["bench_client"]
    return {f"{key}_cores": round(value / seconds, 2) for key, value in used.items()}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    values = sorted(values)
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(values[-1], 2),
        "mean_ms": round(sum(values) / len(values), 2),
    }


def run_level(
    *, seeded: Seeded, port: int, server_pgid: int, seconds: float, warmup: float, think_ms: float, seed: int
) -> tuple[dict, dict]:
    """Run the annotators of one level; return the level's stats and the submits the server acknowledged."""
    start = time.perf_counter()
    measure_from, deadline = start + warmup, start + warmup + seconds
    annotators = [
        Annotator(port, token, seeded.campaign_id, deadline, think_ms / 1000, random.Random(seed * 1000 + i))
        for i, token in enumerate(seeded.tokens)
    ]
    threads = [threading.Thread(target=a.run, daemon=True, name=f"annotator-{i}") for i, a in enumerate(annotators)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    cpu_before = cpu_sample(server_pgid)
    time.sleep(max(0.0, deadline - time.perf_counter()))
    cpu_after = cpu_sample(server_pgid)
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()) + CLIENT_TIMEOUT_S * (CONNECT_RETRIES + 1))
    stuck = sum(thread.is_alive() for thread in threads)

    calls = [call for a in annotators for call in a.calls]
    measured = [call for call in calls if measure_from <= call.start < deadline]
    by_kind = {kind: [c for c in measured if c.kind == kind] for kind in ("next_pair", "submit")}
    statuses = {kind: dict(sorted(Counter(c.status for c in group).items())) for kind, group in by_kind.items()}
    error_statuses = Counter(c.status for c in measured if c.status not in ("200", "201", "204"))
    labels = sum(1 for c in by_kind["submit"] if c.status == "201")
    acknowledged = {k: v for a in annotators for k, v in a.acknowledged.items()}
    stats = {
        "annotators": len(annotators),
        "campaign": seeded.campaign_id,
        "pairs": seeded.pairs,
        "gold_pairs": seeded.gold_pairs,
        "seed_seconds": round(seeded.seconds, 2),
        "measured_seconds": seconds,
        "warmup_seconds": warmup,
        "requests": len(measured),
        "requests_per_second": round(len(measured) / seconds, 1),
        "labels": labels,
        "labels_per_second": round(labels / seconds, 1),
        "next_pair": latency_summary([c.ms for c in by_kind["next_pair"]]),
        "submit": latency_summary([c.ms for c in by_kind["submit"]]),
        "statuses": statuses,
        "cpu": cpu_split(cpu_before, cpu_after, seconds),
        "errors": {
            "by_status": dict(sorted(error_statuses.items())),
            "5xx": sum(n for status, n in error_statuses.items() if status.startswith("5")),
            "connection": error_statuses.get("connection", 0),
            "total": sum(error_statuses.values()),
        },
        "connection_retries": sum(a.retries for a in annotators),
        "annotators_out_of_work": sum(a.exhausted for a in annotators),
        "threads_stuck": stuck,
        "submits_acknowledged_whole_run": len(acknowledged),
    }
    return stats, acknowledged


# ---------------------------------------------------------------------------------------------------------
# Reconciliation


def reconcile(campaign_id: int, acknowledged: dict[int, int]) -> dict:
    """Compare the database with what the clients were told, for one campaign."""
    from django.db import connection
    from django.db.models import Count, F, Q

    from annotate import clock
    from annotate.models import Annotation, Assignment, Pair

    now = clock.now()
    pairs = Pair.objects.filter(campaign_id=campaign_id)
    live = Q(assignments__status=Assignment.Status.DONE) | Q(
        assignments__status=Assignment.Status.LEASED, assignments__expires_at__gt=now
    )
    over_assigned = (
        pairs.filter(gold_answer="").annotate(done=Count("annotations")).filter(done__gt=F("needed_labels")).count()
    )
    over_leased = (
        pairs.filter(gold_answer="")
        .annotate(live=Count("assignments", filter=live))
        .filter(live__gt=F("needed_labels"))
        .count()
    )
    counter_drift = pairs.annotate(done=Count("annotations")).exclude(labels_count=F("done")).count()
    rows = dict(Annotation.objects.filter(pair__campaign_id=campaign_id).values_list("assignment_id", "id"))
    duplicates = (
        Annotation.objects.filter(pair__campaign_id=campaign_id)
        .values("pair_id", "annotator_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    leases = Assignment.objects.filter(pair__campaign_id=campaign_id)
    gold_leases = leases.exclude(pair__gold_answer="").count()
    lost = sorted(set(acknowledged) - set(rows))
    unacknowledged = sorted(set(rows) - set(acknowledged))
    mismatched = sorted(a for a in set(rows) & set(acknowledged) if rows[a] != acknowledged[a])
    connection.close()
    return {
        "campaign": campaign_id,
        "over_assigned_pairs": over_assigned,
        "over_leased_pairs": over_leased,
        "duplicate_pair_annotator": duplicates,
        "labels_count_drift": counter_drift,
        "acknowledged_submits": len(acknowledged),
        "annotation_rows": len(rows),
        "lost": len(lost),
        "unacknowledged_rows": len(unacknowledged),
        "id_mismatches": len(mismatched),
        "match": not lost and not unacknowledged and not mismatched,
        # Should sit near the campaign's gold_share; far above it means the regular pool was passed over.
        "gold_share_of_assignments": round(gold_leases / max(1, leases.count()), 3),
    }


# ---------------------------------------------------------------------------------------------------------
# Main


def result_publish(result: dict, out: Path) -> None:
    """Print a bench's JSON on stdout and keep a copy at `out` (every bench prints one document)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    out.write_text(text + "\n")
    print(text)


def machine_info() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        info["memory_gib"] = round(mem_kb / 1024**2, 1)
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, ValueError, IndexError):
        pass
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--annotators", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per level left out of the stats (default 2)")
    parser.add_argument("--pairs", type=int, default=3000, help="pairs per level's campaign (default 3000)")
    parser.add_argument("--overlap", type=int, default=3, help="labels wanted per pair (default 3)")
    parser.add_argument("--gold-share", type=float, default=0.05, help="campaign gold share and share of gold pairs")
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause before each submit (default 0)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3 for 2 cores)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    parser.add_argument("--keep-alive", type=int, default=5, help="gunicorn keep-alive seconds (default 5)")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    parser.add_argument(
        "--wsgi-app", default="annotate.wsgi", help="what gunicorn serves; another module on PYTHONPATH for an A/B try"
    )
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="~30 s smoke run: 600 pairs, 5 s per level, 1 s warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.seconds, args.warmup = min(args.pairs, 600), min(args.seconds, 5.0), min(args.warmup, 1.0)
    args.levels = [int(n) for n in args.annotators.split(",") if n.strip()]
    if not args.levels or min(args.levels) < 1:
        parser.error(f"--annotators needs positive integers, got {args.annotators!r}")
    if args.seconds <= 0 or args.warmup < 0 or args.pairs < 1 or args.overlap < 1 or not 0 <= args.gold_share <= 1:
        parser.error("expected --seconds > 0, --warmup >= 0, --pairs >= 1, --overlap >= 1, 0 <= --gold-share <= 1")
    return args


def goals(levels: list[dict], reconciliation: dict) -> list[dict]:
    at = next((level for level in levels if level["annotators"] == GOAL_AT_ANNOTATORS), None)
    observed = None
    met = None  # not measured: the level was not run
    if at is not None:
        observed = {kind: at[kind].get("p99_ms") for kind in ("next_pair", "submit")}
        met = all(v is not None and v < GOAL_P99_MS for v in observed.values()) and at["errors"]["5xx"] == 0
    return [
        {
            "goal": f"p99 < {GOAL_P99_MS:.0f} ms at {GOAL_AT_ANNOTATORS} annotators (next_pair and submit), no 5xx",
            "observed_p99_ms": observed,
            "met": met,
        },
        {
            "goal": "zero over-assignment",
            "observed": {k: reconciliation[k] for k in ("over_assigned_pairs", "over_leased_pairs")},
            "met": reconciliation["over_assigned_pairs"] == 0 and reconciliation["over_leased_pairs"] == 0,
        },
        {
            "goal": "no lost or duplicated labels (acknowledged submits == Annotation rows)",
            "observed": {
                k: reconciliation[k]
                for k in ("acknowledged_submits", "annotation_rows", "lost", "unacknowledged_rows")
                + ("duplicate_pair_annotator",)
            },
            "met": reconciliation["match"] and reconciliation["duplicate_pair_annotator"] == 0,
        },
    ]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    server_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    db_url = bench_database_url(server_url)
    work_dir = Path(tempfile.mkdtemp(prefix="rewardlab-bench-"))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
        "DATABASE_URL": db_url,
        "DEBUG": "false",
        "SECRET_KEY": "bench-web-" + os.urandom(8).hex(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Media, the embedded broker and anything else under var/ go to a scratch folder, never the checkout's.
        "REWARDLAB_VAR_DIR": str(work_dir),
        "MEDIA_ROOT": str(work_dir / "media"),
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore:No directory at",  # STATIC_ROOT does not exist in the scratch var/
    }
    env.pop("CELERY_BROKER_URL", None)  # nothing the bench enqueues may reach a real broker's queues

    started = time.time()
    parts = urlsplit(db_url)
    log(f"database {BENCH_DB_NAME} on {parts.hostname}:{parts.port or 5432}: recreate and migrate")
    pg_version = recreate_database(db_url)
    migrate(env)
    django_setup(env)

    seeded = []
    for level, annotators in enumerate(args.levels, start=1):
        seeded.append(
            seed_level(
                level=level,
                annotators=annotators,
                pairs=args.pairs,
                overlap=args.overlap,
                gold_share=args.gold_share,
                rng=rng,
            )
        )
        log(f"seeded level {level}: {annotators} annotators, {args.pairs} pairs in {seeded[-1].seconds:.1f} s")

    port = args.port or free_port()
    server = Server(
        app=args.wsgi_app,
        port=port,
        workers=args.workers,
        threads=args.threads,
        keep_alive=args.keep_alive,
        env=env,
        log_path=args.out.parent / "gunicorn.log",
    )
    levels, acknowledged = [], []
    try:
        server.start(probe_token=seeded[0].tokens[0])
        log(f"gunicorn up on 127.0.0.1:{port} ({args.workers} workers x {args.threads} threads)")
        for level_seed in seeded:
            stats, acked = run_level(
                seeded=level_seed,
                port=port,
                server_pgid=server.process.pid,
                seconds=args.seconds,
                warmup=args.warmup,
                think_ms=args.think_ms,
                seed=args.seed + len(levels),
            )
            levels.append(stats)
            acknowledged.append(acked)
            log(
                f"{stats['annotators']:>3} annotators: {stats['labels_per_second']} labels/s, "
                f"next_pair p99 {stats['next_pair'].get('p99_ms')} ms, submit p99 {stats['submit'].get('p99_ms')} ms, "
                f"errors {stats['errors']['by_status']}"
            )
    finally:
        server.stop()

    per_level = [reconcile(s.campaign_id, acked) for s, acked in zip(seeded, acknowledged, strict=True)]
    totals = {
        key: sum(r[key] for r in per_level)
        for key in (
            "over_assigned_pairs",
            "over_leased_pairs",
            "duplicate_pair_annotator",
            "labels_count_drift",
            "acknowledged_submits",
            "annotation_rows",
            "lost",
            "unacknowledged_rows",
            "id_mismatches",
        )
    }
    reconciliation = {**totals, "match": all(r["match"] for r in per_level), "per_level": per_level}
    result = {
        "bench": "web",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "machine": machine_info(),
        "server": {
            "gunicorn": {
                "app": args.wsgi_app,
                "workers": args.workers,
                "threads": args.threads,
                "worker_class": "gthread",
                "keep_alive_s": args.keep_alive,
            },
            "debug": False,
            "database": f"postgresql {pg_version}, database {BENCH_DB_NAME}",
        },
        "config": {
            "levels": args.levels,
            "pairs_per_level": args.pairs,
            "overlap": args.overlap,
            "gold_share": args.gold_share,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "think_ms": args.think_ms,
            "quick": args.quick,
            "seed": args.seed,
            "client": "closed loop, one thread and keep-alive connection per annotator, same machine as the server",
        },
        "levels": levels,
        "reconciliation": reconciliation,
        "goals": goals(levels, reconciliation),
    }
    if any(level["errors"]["total"] for level in levels):
        result["server_log_tail"] = server.log_tail()
    result_publish(result, args.out)
    return result


def _exit_on_sigterm(signum, frame):  # so `finally` and atexit stop gunicorn when the bench itself is stopped
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main()
