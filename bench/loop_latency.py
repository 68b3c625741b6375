"""How long from the label that triggers a retrain to fresh priorities, at 1k, 10k and 100k pairs.

Run with `.venv/bin/python bench/loop_latency.py [--sizes 1000 10000 100000] [--quick]`. It prints one
JSON document on stdout (progress on stderr) and writes it to bench/out/loop_latency.json.

What it does, per size, with real parts (PostgreSQL, Redis, one Celery worker process):
1. a fresh database `rewardlab_bench_loop` (dropped and created once per bench run), one campaign per size;
2. import a synthetic package of N scenes whose prior labels are 20% flipped (`rewardlab.synthetic`);
   the import queues the first run, which embeds every text and image (a cold cache costs most of it);
   when it is done, the share of flipped priors among the top 25% by `noise_score` is recorded;
3. label `retrain_every` pairs through the services, as the API would; the last label queues the retrain.
   Meanwhile an annotator thread keeps leasing and labeling (about 4 labels/s), to show annotation never
   waits on the model;
4. latency = the run's `finished_at` (priorities written) minus the triggering label's `created_at`, both
   from the database clock, with the seconds per stage (queue, loading, embedding, training, scoring,
   prioritizing) that the run recorded.

Embeddings are cached under bench/out/cache (content-keyed, shared with bench/loop.py), so a second bench
run measures the first runs warm too; `first_run.cache` says which it was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_database_url, django_setup, machine_info, migrate, recreate_database, result_publish  # noqa: E402

OUT = ROOT / "bench" / "out"
DB_NAME = "rewardlab_bench_loop"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/rewardlab"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"
RETRAIN_EVERY = 50
# The background annotator's pause between labels: about four labels a second, a busy team's pace. With no
# pause, one thread on a 2-core machine is a load generator competing with training for the cores.
THINK_SECONDS = 0.25
RUN_TIMEOUT_S = 3600
GOAL_NOISE_TOP_SHARE = 0.7


def log(message: str) -> None:
    print(f"[bench-loop-latency] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="pairs per campaign")
    parser.add_argument("--quick", action="store_true", help="one small size, a smoke run")
    parser.add_argument("--cache-dir", type=Path, default=OUT / "cache", help="embedding cache (kept between runs)")
    parser.add_argument("--out", type=Path, default=OUT / "loop_latency.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [300]
    return args


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """One worker on both queues, one task at a time, as `make demo` runs it."""
    command = [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "cpu,gpu", "--concurrency", "1",
        "--without-mingle", "--without-gossip", "--loglevel", "info", "--hostname", "bench@%h",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def wait_run(campaign, *, after: int):
    """Wait for the first run of the campaign newer than `after` to end; return it."""
    from annotate.models import ModelRun

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = ModelRun.objects.filter(campaign=campaign, pk__gt=after).order_by("id").first()
        if run is not None and run.is_terminal:
            if run.status != ModelRun.Status.SUCCEEDED:
                raise SystemExit(f"model run {run.pk} failed: {run.error}")
            return run
        time.sleep(0.1)
    raise SystemExit(f"no model run of campaign {campaign.pk} ended within {RUN_TIMEOUT_S} s")


def run_summary(run, *, since) -> dict:
    """A run's timings: from `since` (request or triggering label) to priorities written, and per stage."""
    return {
        "run": run.pk,
        "seconds_total": round((run.finished_at - since).total_seconds(), 2),
        "seconds_queued": round((run.started_at - since).total_seconds(), 2),
        "stage_seconds": run.metrics.get("stage_seconds", {}),
        "train_seconds": run.metrics.get("seconds"),
        "samples": run.metrics.get("samples"),
        "held_out_accuracy": run.metrics.get("labels", {}).get("accuracy"),
        "surfaced": run.metrics.get("surfaced", {}),
    }


def noise_capture(run) -> dict:
    """Share of the flipped prior labels that sit in the top 25% of pairs by noise_score."""
    from annotate.models import PairScore

    rows = list(PairScore.objects.filter(run=run).values_list("noise_score", "pair__item__meta"))
    ranked = sorted(rows, key=lambda row: -(row[0] or 0.0))
    flipped = sum(bool(meta.get("prior_flipped")) for _, meta in rows)
    top = sum(bool(meta.get("prior_flipped")) for _, meta in ranked[: len(ranked) // 4])
    share = top / flipped if flipped else None
    return {"flipped": flipped, "in_top_quarter": top, "share": share, "goal": GOAL_NOISE_TOP_SHARE}


class Annotator(threading.Thread):
    """Leases and labels through the services until stopped, timing each next-pair + submit (think time apart)."""

    def __init__(self, campaign, user) -> None:
        super().__init__(daemon=True)
        self.campaign, self.user = campaign, user
        self.stop = threading.Event()
        self.latencies_ms: list[float] = []
        self.empty = 0

    def run(self) -> None:
        from django.db import connection

        from annotate.services.annotations import LabelInput, annotation_save
        from annotate.services.assignments import assignment_next

        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                lease = assignment_next(campaign=self.campaign, annotator=self.user)
                if lease is None:
                    self.empty += 1
                    time.sleep(0.05)
                    continue
                label = LabelInput(more_hallucinated="a", strength=2, duration_ms=1000)
                annotation_save(assignment_id=lease.assignment.pk, user_id=self.user.pk, label=label)
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                self.stop.wait(THINK_SECONDS)
        finally:
            connection.close()

    def summary(self) -> dict:
        values = sorted(self.latencies_ms)
        if not values:
            return {"labels": 0, "empty_answers": self.empty}
        return {
            "labels": len(values),
            "empty_answers": self.empty,
            "p50_ms": round(statistics.median(values), 1),
            "p99_ms": round(values[min(len(values) - 1, int(0.99 * len(values)))], 1),
            "max_ms": round(values[-1], 1),
        }


def bench_size(pairs: int, *, index: int, data_dir: Path) -> dict:
    from django.contrib.auth import get_user_model

    from annotate.models import Annotation
    from annotate.services.annotations import LabelInput, annotation_save
    from annotate.services.assignments import assignment_next
    from annotate.services.campaigns import campaign_create, campaign_update, membership_set
    from annotate.services.imports import import_package
    from rewardlab.synthetic import SyntheticConfig, write_package

    User = get_user_model()
    lead = User.objects.create_user(f"lead{index}")
    campaign = campaign_create(created_by=lead, name=f"latency {pairs}", overlap=3, gold_share=0.0)
    campaign_update(campaign=campaign, retrain_every=RETRAIN_EVERY)
    users = [User.objects.create_user(f"ann{index}-{n}") for n in range(2)]
    for user in users:
        membership_set(campaign=campaign, username=user.username, role="annotator")

    package = data_dir / f"latency-{pairs}.zip"
    if not package.exists():
        log(f"{pairs}: writing the synthetic package")
        write_package(SyntheticConfig(n_items=pairs, seed=100 + index, prior_noise=0.2, facts=True), package)
    log(f"{pairs}: importing")
    started = time.perf_counter()
    import_package(campaign=campaign, path=package)
    import_seconds = time.perf_counter() - started
    log(f"{pairs}: waiting for the first run (it embeds every text and image not cached yet)")
    first = wait_run(campaign, after=0)
    first_summary = run_summary(first, since=first.created_at) | {"noise": noise_capture(first)}

    log(f"{pairs}: labeling {RETRAIN_EVERY} pairs; the last one triggers the retrain")
    label = LabelInput(more_hallucinated="b", strength=3, duration_ms=1500)
    for _ in range(RETRAIN_EVERY):
        lease = assignment_next(campaign=campaign, annotator=users[0])
        annotation_save(assignment_id=lease.assignment.pk, user_id=users[0].pk, label=label)
    trigger = Annotation.objects.filter(annotator=users[0]).latest("id")
    campaign_update(campaign=campaign, retrain_every=10**6)  # the background annotator must not queue another
    annotator = Annotator(campaign, users[1])
    annotator.start()
    retrain = wait_run(campaign, after=first.pk)
    annotator.stop.set()
    annotator.join()
    return {
        "pairs": pairs,
        "import_seconds": round(import_seconds, 2),
        "first_run": first_summary,
        "retrain": run_summary(retrain, since=trigger.created_at) | {"trigger": retrain.trigger},
        "annotation_during_retrain": annotator.summary(),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    server_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    db_url = bench_database_url(server_url, DB_NAME)
    broker = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
    scratch = Path(tempfile.mkdtemp(prefix="rewardlab-bench-loop-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker,
        "REWARDLAB_VAR_DIR": str(scratch),
        "MEDIA_ROOT": str(scratch / "media"),
        "REWARDLAB_MODEL_DIR": str(scratch / "models"),
        "REWARDLAB_CACHE_DIR": str(args.cache_dir),
        "REWARDLAB_DEVICE": os.environ.get("REWARDLAB_DEVICE", "cpu"),
    }
    parts = urlsplit(db_url)
    log(f"database {DB_NAME} on {parts.hostname}:{parts.port or 5432}: recreate and migrate")
    pg_version = recreate_database(db_url)
    migrate(env)
    django_setup(env)
    import redis

    redis.Redis.from_url(broker).flushdb()
    data_dir = OUT / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    worker = start_worker(env, scratch / "worker.log")
    try:
        sizes = [bench_size(pairs, index=i, data_dir=data_dir) for i, pairs in enumerate(args.sizes)]
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "bench": "loop_latency",
        "machine": machine_info(),
        "database": f"postgresql {pg_version}",
        "retrain_every": RETRAIN_EVERY,
        "sizes": sizes,
        "ratios": {
            f"retrain_{b['pairs']}_over_{a['pairs']}": round(
                b["retrain"]["seconds_total"] / a["retrain"]["seconds_total"], 2
            )
            for a, b in zip(sizes, sizes[1:], strict=False)
        },
    }
    result_publish(result, args.out)
    return result


if __name__ == "__main__":
    main()
