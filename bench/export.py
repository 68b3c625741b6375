"""Export throughput and memory: `annotations` and `reward` snapshots of 100k and 1M annotations, as JSON Lines
and as Parquet.

Run with `.venv/bin/python bench/export.py [--sizes 100000 1000000] [--quick]`. It prints one JSON
document on stdout (progress on stderr) and writes it to bench/out/export.json.

What it does, top to bottom:
1. a fresh database `rewardlab_bench_export` on DATABASE_URL's server (dropped, created, migrated), media in
   a scratch folder removed afterwards, DEBUG off (Django would otherwise keep every query in memory);
2. per size N, one campaign seeded with COPY (`annotate.bulk.rows_insert`): N/3 items, two responses and one
   pair each, 3 labels per pair from 50 annotators (an assignment and an annotation per label), items
   sharing a handful of small PNGs (the zip copies each image once); the seeding seconds are reported apart;
3. per format and container (`jsonl`, `parquet`: images embedded in every row), a snapshot asked for
   through `export_snapshot_create` (the broker is kombu's in-memory transport, so the message goes
   nowhere) and written by `export_snapshot_run`, the function the Celery task calls, in a fresh child
   interpreter: the child's peak RSS (`os.wait4`'s ru_maxrss) is that of the
   export alone, next to two baselines: a child that only sets Django up, and one that also imports what
   the export loads (numpy, scipy, torch through `workers.training`), as a warm worker has;
4. `ratios` compare the largest size with the smallest, per format and container; the goal "memory must
   not grow with row count" is met when the peak RSS at the largest size is at most GOAL_RSS_RATIO times
   that at the smallest.

Timings are wall-clock on a shared machine; compare the ratios of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_database_url, django_setup, machine_info, migrate, recreate_database, result_publish  # noqa: E402

OUT = ROOT / "bench" / "out"
DB_NAME = "rewardlab_bench_export"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/rewardlab"
DEFAULT_SIZES = (100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
DEFAULT_FORMATS = ("annotations", "reward")
DEFAULT_CONTAINERS = ("jsonl", "parquet")
LABELS_PER_PAIR = 3
ANNOTATORS = 50
IMAGES = 6  # distinct PNGs, each shown by many items
GOLD_SHARE = 0.02
GOAL_RSS_RATIO = 1.25  # peak RSS at the largest size over the smallest: "memory must not grow with row count"
CHILD_TIMEOUT_S = 3600
BASE_TIME = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
MIB = 1024 * 1024

# A label given the pair's true answer: annotators are right this often (each gets its own rate in this range).
RELIABILITY = (0.6, 0.95)
TRUTHS, TRUTH_WEIGHTS = ("a", "b", "both", "neither"), (0.45, 0.45, 0.05, 0.05)
QTYPES = ("counting", "color", "spatial", "existence")


def log(message: str) -> None:
    print(f"[bench-export] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="annotations per campaign")
    parser.add_argument("--formats", nargs="+", default=list(DEFAULT_FORMATS), help="export formats to write")
    parser.add_argument(
        "--containers", nargs="+", default=list(DEFAULT_CONTAINERS), help="containers to write each format in"
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: sizes {' and '.join(map(str, QUICK_SIZES))}")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, default=OUT / "export.json")
    # Internal: what a child interpreter measures (see `child_main`).
    parser.add_argument("--child", choices=("django", "imports", "run"), help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = list(QUICK_SIZES)
    if min(args.sizes) < LABELS_PER_PAIR:
        parser.error(f"--sizes must be at least {LABELS_PER_PAIR} annotations, got {min(args.sizes)}")
    return args


# ---------------------------------------------------------------------------------------------------------
# The child: one fresh interpreter per measurement, so its peak RSS is its own


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def child_main(args: argparse.Namespace) -> None:
    """Set Django up (from the environment the parent passed), optionally write one snapshot; print JSON."""
    import django

    django.setup()
    from django.conf import settings

    if settings.DEBUG:
        raise SystemExit("DEBUG is on: Django would keep every query of the export in memory")
    result = {"rss_after_setup_mib": round(_status_kib("VmRSS") / 1024, 1)}
    if args.child in ("imports", "run"):
        # What a worker has loaded once it has run one export: the service, numpy/scipy, and torch
        # (`_margins` imports workers.training). Loaded before the clock starts.
        import annotate.services.exports  # noqa: F401
        import workers.training  # noqa: F401

        result["rss_after_imports_mib"] = round(_status_kib("VmRSS") / 1024, 1)
    if args.child == "run":
        from annotate.services import exports as service

        started = time.perf_counter()
        lines = service._lines

        def lines_marked(*args, **kwargs):
            # The first row is about to stream: every label is read, consensus and alpha are computed.
            result["seconds_before_rows"] = round(time.perf_counter() - started, 2)
            result["peak_rss_before_rows_mib"] = round(_status_kib("VmHWM") / 1024, 1)
            yield from lines(*args, **kwargs)

        service._lines = lines_marked  # a measuring hook only: the rows are the service's own
        snapshot = service.export_snapshot_run(snapshot_id=args.snapshot)
        result["seconds"] = time.perf_counter() - started
        result["status"] = snapshot.status
        result["error"] = snapshot.error
    result["vmhwm_mib"] = round(_status_kib("VmHWM") / 1024, 1)
    print(json.dumps(result))


def run_child(mode: str, env: dict[str, str], snapshot_id: int | None = None) -> dict:
    """Run a child interpreter; return its JSON with `peak_rss_mib`, the kernel's ru_maxrss of that child alone."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    if snapshot_id is not None:
        command += ["--snapshot", str(snapshot_id)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    output = process.stdout.read()
    process.stdout.close()
    # wait4 rather than wait: its rusage is this child's, where RUSAGE_CHILDREN keeps the largest child so far.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"the {mode} child exited with {process.returncode}")
    return json.loads(output) | {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}  # ru_maxrss is in KiB


# ---------------------------------------------------------------------------------------------------------
# Seeding: a campaign of `annotations` labels, written with COPY


@dataclass
class Seeded:
    campaign_id: int
    lead_id: int
    pairs: int
    annotations: int
    seconds: float


def png(colour: tuple[int, int, int], index: int) -> bytes:
    """Return a small PNG, distinct per index (a few pixels of noise, so the file is not all one colour)."""
    from PIL import Image as PILImage

    picture = PILImage.new("RGB", (96, 72), colour)
    noise = random.Random(index)
    for _ in range(200):
        picture.putpixel((noise.randrange(96), noise.randrange(72)), (noise.randrange(256),) * 3)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def bench_images() -> list[int]:
    """Store the bench's images once by SHA-256, as an import would; return their ids."""
    from django.core.files.base import ContentFile

    from annotate.models import Image

    ids = []
    for index in range(IMAGES):
        data = png((40 * index % 256, 200 - 30 * index, 90 + 25 * index), index)
        sha = hashlib.sha256(data).hexdigest()
        image = Image.objects.filter(sha256=sha).first()
        if image is None:
            image = Image(sha256=sha, width=96, height=72, format="PNG", size_bytes=len(data))
            image.file.save(f"{sha[:2]}/{sha}.png", ContentFile(data), save=False)
            image.save()
        ids.append(image.pk)
    return ids


def next_id(model) -> int:
    from django.db.models import Max

    return (model.objects.aggregate(top=Max("id"))["top"] or 0) + 1


def sync_sequence(cursor, model) -> None:
    """Move the id sequence past ids written explicitly, so later inserts (the snapshot rows) do not collide."""
    table = model._meta.db_table
    cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")


def answer_text(rng: random.Random, count: str) -> str:
    filler = " It sits next to a blue box on a wooden table, under soft light." * rng.randint(0, 3)
    return f"There are {count} red balls in the image.{filler}"


def seed_campaign(*, index: int, annotations: int, annotators: list[int], images: list[int], seed: int) -> Seeded:
    """Create one campaign holding `annotations` labels (3 per pair); every row but the campaign goes in by COPY."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotate.bulk import rows_insert
    from annotate.models import Annotation, Assignment, Campaign, Item, Pair, Response
    from annotate.services.campaigns import campaign_create, membership_set

    started = time.perf_counter()
    rng = random.Random(seed + index)
    pairs = -(-annotations // LABELS_PER_PAIR)  # the last pair takes what is left: exactly `annotations` labels
    User = get_user_model()
    reliability = {user: rng.uniform(*RELIABILITY) for user in annotators}
    with transaction.atomic():
        lead = User.objects.create_user(f"bench-export-lead-{index}")
        campaign = campaign_create(
            created_by=lead, name=f"bench export {annotations} annotations", overlap=LABELS_PER_PAIR, gold_share=0.0
        )
        for user in User.objects.filter(pk__in=annotators):
            membership_set(campaign=campaign, username=user.username, role="annotator")
        item0, response0, pair0 = next_id(Item), next_id(Response), next_id(Pair)
        assignment0, annotation0 = next_id(Assignment), next_id(Annotation)

        def items():
            for n in range(pairs):
                meta = json.dumps({"qtype": QTYPES[n % len(QTYPES)]})
                facts = json.dumps({"answer": "two"}) if n % 10 == 0 else "{}"
                prompt = f"How many red balls are in scene {n}?"
                yield (item0 + n, campaign.pk, f"scene-{n:07d}", images[n % len(images)], prompt, facts, meta,
                       None, BASE_TIME)  # fmt: skip

        def responses():
            for n in range(pairs):
                yield response0 + 2 * n, item0 + n, "r0", answer_text(rng, "two"), "bench-model-0"
                yield response0 + 2 * n + 1, item0 + n, "r1", answer_text(rng, "three"), "bench-model-1"

        truths = []  # per pair, the answer its labels are drawn around (and gold's answer)

        def pair_rows():
            for n in range(pairs):
                truth = rng.choices(TRUTHS, TRUTH_WEIGHTS)[0]
                truths.append(truth)
                gold = truth if truth in ("a", "b") and rng.random() < GOLD_SHARE else ""
                yield (pair0 + n, campaign.pk, item0 + n, response0 + 2 * n, response0 + 2 * n + 1, gold,
                       rng.random(), LABELS_PER_PAIR, LABELS_PER_PAIR, "complete", "[]", "{}")  # fmt: skip

        def labels():
            """Yield (pair, annotator, choice, strength, shown_left, at) per label; the same labels on every call."""
            draw = random.Random(seed + index + 1)
            for n in range(pairs):
                first = (n * LABELS_PER_PAIR) % len(annotators)
                for k in range(min(LABELS_PER_PAIR, annotations - n * LABELS_PER_PAIR)):
                    user = annotators[(first + k) % len(annotators)]
                    choice = truths[n]
                    if draw.random() > reliability[user]:
                        choice = draw.choice([other for other in TRUTHS if other != choice])
                    strength = draw.randint(1, 4) if choice in ("a", "b") else None
                    at = BASE_TIME + timedelta(seconds=n * 2 + k)
                    yield pair0 + n, user, choice, strength, draw.choice("ab"), at

        def assignments():
            for offset, (pair, user, _, _, left, at) in enumerate(labels()):
                yield assignment0 + offset, pair, user, left, "done", at - timedelta(seconds=30), at, at

        def annotation_rows():
            for offset, (pair, user, choice, strength, left, at) in enumerate(labels()):
                types = '["count"]' if choice in ("a", "b") else "[]"
                rationale = "The answer miscounts the balls." if offset % 10 == 0 else ""
                duration = 2000 + (offset * 7919) % 18000
                yield annotation0 + offset, assignment0 + offset, pair, user, choice, strength, types, "[]", \
                    rationale, left, duration, at  # fmt: skip

        rows_insert(Item, ("id", "campaign_id", "external_id", "image_id", "prompt", "facts", "meta",
                           "import_job_id", "created_at"), items())  # fmt: skip
        rows_insert(Response, ("id", "item_id", "external_id", "text", "model"), responses())
        rows_insert(Pair, ("id", "campaign_id", "item_id", "a_id", "b_id", "gold_answer", "priority", "needed_labels",
                           "labels_count", "status", "surfaced", "consensus"), pair_rows())  # fmt: skip
        rows_insert(Assignment, ("id", "pair_id", "annotator_id", "left", "status", "leased_at", "expires_at",
                                 "finished_at"), assignments())  # fmt: skip
        rows_insert(Annotation, ("id", "assignment_id", "pair_id", "annotator_id", "more_hallucinated", "strength",
                                 "hallucination_types", "spans", "rationale", "shown_left", "duration_ms",
                                 "created_at"), annotation_rows())  # fmt: skip
        Campaign.objects.filter(pk=campaign.pk).update(human_labels=annotations)
        with connection.cursor() as cursor:
            for model in (Item, Response, Pair, Assignment, Annotation):
                sync_sequence(cursor, model)
    with connection.cursor() as cursor:
        # Fresh rows, fresh statistics and visibility map: the planner sees the tables as autovacuum would leave them.
        cursor.execute("VACUUM (ANALYZE) annotate_item, annotate_response, annotate_pair, annotate_assignment, "
                       "annotate_annotation")  # fmt: skip
    return Seeded(campaign.pk, lead.pk, pairs, annotations, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------------
# Exports


def export_once(*, seeded: Seeded, fmt: str, container: str, env: dict[str, str], baseline_mib: float) -> dict:
    """Ask for a snapshot through the service, write it in a child as a worker would; return its figures."""
    from django.core.files.storage import default_storage

    from annotate.models import Campaign, ExportSnapshot
    from annotate.services.exports import export_snapshot_create

    campaign = Campaign.objects.get(pk=seeded.campaign_id)
    snapshot = export_snapshot_create(
        campaign=campaign, format=fmt, filters={}, container=container, created_by=campaign.created_by
    )
    child = run_child("run", env, snapshot.pk)
    snapshot = ExportSnapshot.objects.get(pk=snapshot.pk)
    if snapshot.status != ExportSnapshot.Status.SUCCEEDED:
        raise SystemExit(f"snapshot {snapshot.pk} ({fmt}) is {snapshot.status}: {snapshot.error}")
    default_storage.delete(snapshot.file.name)  # a 1M-row zip is hundreds of MB; the figures are recorded
    seconds = child["seconds"]
    return {
        "format": fmt,
        "container": container,
        "rows": snapshot.rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(snapshot.rows / seconds),
        "bytes": snapshot.size_bytes,
        "peak_rss_mib": child["peak_rss_mib"],
        "growth_over_baseline_mib": round(child["peak_rss_mib"] - baseline_mib, 1),
        # Where the peak is: reading the labels and deciding every pair's label (before any row), or streaming.
        "seconds_before_rows": child["seconds_before_rows"],
        "peak_rss_before_rows_mib": child["peak_rss_before_rows_mib"],
        "sha256": snapshot.sha256,
    }


def ratio(a: float, b: float) -> float | None:
    return round(b / a, 3) if a else None


def run_name(run: dict) -> str:
    """Name an export run as the snapshot's file does: `reward`, `reward-parquet`."""
    return run["format"] if run["container"] == "jsonl" else f"{run['format']}-{run['container']}"


def summarise(sizes: list[dict]) -> tuple[dict, list[dict]]:
    """Return the largest size over the smallest, per format and container, and the goal on peak RSS."""
    small, large = sizes[0], sizes[-1]
    key = f"{large['annotations']}_over_{small['annotations']}"
    ratios, worst = {}, 0.0
    for a in small["exports"]:
        b = next(run for run in large["exports"] if run_name(run) == run_name(a))
        rss = ratio(a["peak_rss_mib"], b["peak_rss_mib"])
        worst = max(worst, rss or 0.0)
        ratios[run_name(a)] = {
            f"rows_{key}": ratio(a["rows"], b["rows"]),
            f"rows_per_s_{key}": ratio(a["rows_per_s"], b["rows_per_s"]),
            f"peak_rss_{key}": rss,
            f"growth_over_baseline_mib_{key}": [a["growth_over_baseline_mib"], b["growth_over_baseline_mib"]],
        }
    goal = {
        "goal": "memory must not grow with row count",
        "rule": f"per format and container, peak RSS of the exporting process at {large['annotations']} annotations "
        f"<= {GOAL_RSS_RATIO} x at {small['annotations']}",
        "worst_ratio": worst,
        "met": len(sizes) > 1 and worst <= GOAL_RSS_RATIO,
    }
    return ratios, [goal]


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return None
    server_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    db_url = bench_database_url(server_url, DB_NAME)
    scratch = Path(tempfile.mkdtemp(prefix="rewardlab-bench-export-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
        "DATABASE_URL": db_url,
        "DEBUG": "0",
        # No broker server: the snapshot's message goes to kombu's in-process transport and is dropped;
        # the bench runs the worker's function itself, in a child.
        "CELERY_BROKER_URL": "memory://localhost/",
        "REWARDLAB_VAR_DIR": str(scratch),
        "MEDIA_ROOT": str(scratch / "media"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    machine = machine_info()
    try:
        parts = urlsplit(db_url)
        log(f"database {DB_NAME} on {parts.hostname}:{parts.port or 5432}: recreate and migrate")
        pg_version = recreate_database(db_url)
        migrate(env)
        django_setup(env)
        from django.conf import settings
        from django.contrib.auth import get_user_model

        if settings.DEBUG:
            raise SystemExit("DEBUG is on: the seeding would keep every query in memory")
        baseline = {
            "django_mib": run_child("django", env)["peak_rss_mib"],
            "django_and_export_modules_mib": run_child("imports", env)["peak_rss_mib"],
        }
        log(f"baseline children: {baseline}")
        User = get_user_model()
        annotators = [
            user.pk
            for user in User.objects.bulk_create([User(username=f"bench-ann-{n:02d}") for n in range(ANNOTATORS)])
        ]
        images = bench_images()
        sizes = []
        for index, size in enumerate(sorted(args.sizes)):
            log(f"{size} annotations: seeding")
            seeded = seed_campaign(index=index, annotations=size, annotators=annotators, images=images, seed=args.seed)
            log(f"{size} annotations: seeded {seeded.pairs} pairs in {seeded.seconds:.1f} s")
            exports = []
            for fmt in args.formats:
                for container in args.containers:
                    run = export_once(
                        seeded=seeded,
                        fmt=fmt,
                        container=container,
                        env=env,
                        baseline_mib=baseline["django_and_export_modules_mib"],
                    )
                    log(
                        f"{size} annotations, {run_name(run)}: {run['rows']} rows in {run['seconds']} s, "
                        f"{run['peak_rss_mib']} MiB"
                    )
                    exports.append(run)
            sizes.append(
                {
                    "annotations": seeded.annotations,
                    "pairs": seeded.pairs,
                    "seed_seconds": round(seeded.seconds, 1),
                    "exports": exports,
                }
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratios, goals = summarise(sizes)
    result = {
        "bench": "export",
        "machine": machine | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "database": f"postgresql {pg_version}",
        "note": "wall-clock timings on a shared machine (see the load averages); compare ratios within this run",
        "setup": {
            "labels_per_pair": LABELS_PER_PAIR,
            "annotators": ANNOTATORS,
            "images": IMAGES,
            "filters": "defaults (zip with images, 10% test split)",
        },
        "baseline_rss": baseline,
        "sizes": sizes,
        "ratios": ratios,
        "goals": goals,
    }
    result_publish(result, args.out)
    return result


if __name__ == "__main__":
    main()
