"""The web process never loads the model stack (issue 15): torch and transformers are for workers.

A web server that imported torch would carry gigabytes it never uses and start slowly; the boundary is
`rewardlab.pipeline`, which only workers call. Checked in a fresh interpreter, since this test process
itself has loaded torch for other tests.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env

LOAD_THE_WEB_PROCESS = """
import json, sys
import django
django.setup()
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver


def callbacks(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from callbacks(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            yield pattern.callback


views = list(callbacks(get_resolver().url_patterns))
import annotate.api.serializers, annotate.wsgi  # noqa: E401,F401
heavy = sorted(name for name in ("torch", "transformers", "peft", "rewardlab.pipeline") if name in sys.modules)
print(json.dumps({"views": len(views), "admin_models": len(admin.site._registry), "heavy": heavy}))
"""


def test_loading_every_view_serializer_and_admin_leaves_torch_out(settings):
    env = subprocess_env(settings) | {"DJANGO_SETTINGS_MODULE": "annotate.settings"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_THE_WEB_PROCESS], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["views"] > 30 and loaded["admin_models"] > 5  # the whole web process was loaded
    assert loaded["heavy"] == []


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_the_web_side_sends_tasks_by_name_and_never_imports_the_worker_side(settings):
    """Only `workers` joins `annotate` and the model stack; `annotate` sends tasks by name (services.jobs)."""
    worker_side = ("workers.tasks", "workers.training", "workers.campaign_data")
    offenders = {
        str(path.relative_to(settings.BASE_DIR)): sorted(
            name for name in _imported_modules(path) if name.startswith(worker_side)
        )
        for path in Path(settings.BASE_DIR, "annotate").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}
