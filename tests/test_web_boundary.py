"""The web process never loads the model stack (issue 15): torch and transformers are for workers.

A web server that imported torch would carry gigabytes it never uses and start slowly; the boundary is
`rewardlab.pipeline`, which only workers call. Checked in a fresh interpreter, since this test process
itself has loaded torch for other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
