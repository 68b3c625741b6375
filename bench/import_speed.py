"""How long importing a package of N synthetic scenes takes, this tree against a baseline commit in one run.

Run with `.venv/bin/python bench/import_speed.py [--sizes 10000 100000] [--baseline main] [--rounds 2]
[--profile]`. It prints one JSON document on stdout (progress on stderr) and writes it to
bench/out/import_speed.json.

The import is the one `bench/loop_latency.py` times as `import_seconds`: `import_package` on the zip that
`rewardlab.synthetic.write_package(SyntheticConfig(n_items=N, seed=..., prior_noise=0.2, facts=True))` writes
(kept under bench/out/data/). Each import runs in a fresh child interpreter, into a new campaign of a new
database `rewardlab_bench_import` (copied from `rewardlab_bench_import_template`, migrated once), with an
empty media folder, so every image is new to it; the folder is deleted and the disk flushed after each.
With `--baseline REF`, the code of REF (`git archive`) is imported the same way, alternating with this tree
round by round, so both meet the same disk and load; compare the ratio of one run, not seconds across runs.
`--profile` adds each child's top functions by cumulative time (cProfile).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_database_url, machine_info, migrate, recreate_database, result_publish  # noqa: E402

OUT = ROOT / "bench" / "out"
DB_NAME = "rewardlab_bench_import"
TEMPLATE_DB_NAME = "rewardlab_bench_import_template"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/rewardlab"
GOAL_SECONDS = {100_000: 40.0}
PROFILE_ROWS = 30
CHILD_TIMEOUT_S = 1800


def log(message: str) -> None:
    print(f"[bench-import] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="scenes per package")
    parser.add_argument("--baseline", help="a git ref whose code is imported too, for a ratio")
    parser.add_argument("--rounds", type=int, default=1, help="imports per size and code tree")
    parser.add_argument("--profile", action="store_true", help="cProfile each import (slower)")
    parser.add_argument("--out", type=Path, default=OUT / "import_speed.json")
    # Internal: one import in a child interpreter (see `child_main`).
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def package_path(size: int) -> Path:
    """The synthetic package of `size` scenes, written once: the same zip for every tree and round."""
    from rewardlab.synthetic import SyntheticConfig, write_package

    path = OUT / "data" / f"import-{size}.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"{size}: writing the synthetic package")
        write_package(SyntheticConfig(n_items=size, seed=size % 997, prior_noise=0.2, facts=True), path)
    return path


def child_main(args: argparse.Namespace) -> None:
    """Import `--child` with the code under `--code` into a new campaign; print seconds (and a profile) as JSON."""
    sys.path.insert(0, str(args.code))  # before the editable install's finder: the tree under test wins
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    import annotate
    from annotate.services.campaigns import campaign_create
    from annotate.services.imports import import_package

    assert Path(annotate.__file__).resolve().is_relative_to(args.code.resolve()), annotate.__file__
    lead = get_user_model().objects.create_user(f"lead-{os.getpid()}-{time.time_ns()}")
    campaign = campaign_create(created_by=lead, name=f"import {args.child.name}", overlap=3, gold_share=0.0)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    summary = import_package(campaign=campaign, path=args.child)
    seconds = time.perf_counter() - started
    result = {"seconds": round(seconds, 2), "items": summary.items, "pairs": summary.pairs}
    if profiler:
        profiler.disable()
        result["profile"] = profile_top(profiler)
    print(json.dumps(result))


def profile_top(profiler) -> str:
    import pstats

    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(PROFILE_ROWS)
    return text.getvalue()


def run_child(code: Path, package: Path, *, env: dict[str, str], media: Path, profile: bool) -> dict:
    """Import once in a child; then delete its files and flush the disk, so no import meets the last one's deletes."""
    recreate_database(env["DATABASE_URL"], template=TEMPLATE_DB_NAME)  # no image any import stored
    command = [sys.executable, __file__, "--child", str(package), "--code", str(code)]
    if profile:
        command.append("--profile")
    child_env = {**env, "MEDIA_ROOT": str(media), "PYTHONPATH": str(code)}
    done = subprocess.run(
        command, cwd=code, env=child_env, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT_S
    )
    shutil.rmtree(media, ignore_errors=True)
    os.sync()
    if done.returncode:
        raise SystemExit(f"the import child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree(ref: str, scratch: Path) -> tuple[Path, str]:
    """Unpack the files of `ref` (not its working tree) into scratch; return the folder and the commit."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True)
    tree = scratch / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree, commit.stdout.strip()


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return None
    server_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    db_url = bench_database_url(server_url, DB_NAME)
    template_url = bench_database_url(server_url, TEMPLATE_DB_NAME)
    scratch = Path(tempfile.mkdtemp(prefix="rewardlab-bench-import-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": "memory://",  # after_import's message goes nowhere: the import alone is timed
        "REWARDLAB_VAR_DIR": str(scratch),
    }
    try:
        log(f"database {TEMPLATE_DB_NAME}: recreate and migrate")
        pg_version = recreate_database(template_url)
        migrate({**env, "DATABASE_URL": template_url})
        trees = {"this": ROOT}
        baseline_commit = None
        if args.baseline:
            trees["baseline"], baseline_commit = baseline_tree(args.baseline, scratch)
        sizes = []
        for size in args.sizes:
            package = package_path(size)
            runs: dict[str, list[dict]] = {name: [] for name in trees}
            for round_ in range(args.rounds):
                # Alternate which tree goes first, so neither always meets the disk after the other's writes.
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for name in order:
                    log(f"{size}: round {round_ + 1}, {name}")
                    result = run_child(trees[name], package, env=env, media=scratch / "media", profile=args.profile)
                    log(f"{size}: {name}: {result['seconds']} s")
                    runs[name].append(result)
            sizes.append(size_summary(size, runs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "bench": "import_speed",
        "machine": machine_info(),
        "database": f"postgresql {pg_version}",
        "baseline": {"ref": args.baseline, "commit": baseline_commit} if args.baseline else None,
        "rounds": args.rounds,
        "profiled": args.profile,
        "sizes": sizes,
    }
    result_publish(result, args.out)
    return result


def size_summary(size: int, runs: dict[str, list[dict]]) -> dict:
    summary: dict = {"scenes": size, "pairs": runs["this"][0]["pairs"]}
    for name, results in runs.items():
        seconds = [result["seconds"] for result in results]
        summary[name] = {"seconds": seconds, "median_seconds": round(statistics.median(seconds), 2)}
        if "profile" in results[0]:
            summary[name]["profile"] = results[0]["profile"]
    if "baseline" in runs:
        summary["this_over_baseline"] = round(
            summary["this"]["median_seconds"] / summary["baseline"]["median_seconds"], 3
        )
    if size in GOAL_SECONDS:
        summary["goal_seconds"] = GOAL_SECONDS[size]
        summary["goal_met"] = summary["this"]["median_seconds"] <= GOAL_SECONDS[size]
    return summary


if __name__ == "__main__":
    main()
