"""What every bench shares: its own PostgreSQL database, Django set up in the bench's process, the
machine's description, and one JSON document out (stdout and a file under bench/out).

The scenarios (`web.py`, `export.py`, `loop_latency.py`, `vlm.py`) import these; none imports another
scenario.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB_NAME = "rewardlab_bench"


def bench_database_url(server_url: str, name: str = BENCH_DB_NAME) -> str:
    """Return DATABASE_URL with its database name replaced by the bench's own; refuse anything but PostgreSQL."""
    parts = urlsplit(server_url)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit(f"the benches need a PostgreSQL DATABASE_URL (they measure row locks), not {parts.scheme!r}")
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate_database(url: str, *, template: str | None = None) -> str:
    """Drop and create the database `url` names through the server's `postgres` database, as a copy of the
    database `template` when given (one migrated once, copied per run); return the server version."""
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
        create = sql.SQL("CREATE DATABASE {}").format(name)
        if template is not None:
            create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
        conn.execute(create)
        return conn.execute("SHOW server_version").fetchone()[0]


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


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
