"""annotate.wsgi with each response's server CPU time in a header, for bench/web.py's figures by route.

gunicorn's gthread workers run a request on one thread, so `time.thread_time()` from the call to
`start_response` is that request's CPU in Django (middleware, view, serializers, the database driver),
without gunicorn's own HTTP parsing and writing, which `cpu.gunicorn_cores` still counts. The app it
wraps is `BENCH_WSGI_APP` (default `annotate.wsgi:application`), so an A/B try measures the same way.
"""

from __future__ import annotations

import importlib
import os
import time
from functools import cache

HEADER = "X-Bench-Server-Cpu-Ms"


@cache
def _wrapped():
    """The app, imported at the first request: bench/web.py imports HEADER from here without Django."""
    module, _, name = os.environ.get("BENCH_WSGI_APP", "annotate.wsgi:application").partition(":")
    return getattr(importlib.import_module(module), name or "application")


def application(environ, start_response):
    started = time.thread_time()

    def timed_start_response(status, headers, exc_info=None):
        headers.append((HEADER, f"{(time.thread_time() - started) * 1000:.3f}"))
        return start_response(status, headers, exc_info)

    return _wrapped()(environ, timed_start_response)
