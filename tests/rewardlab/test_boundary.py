"""The boundary (STYLE.md, habit 8): rewardlab never imports Django or the annotate app."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import rewardlab

# The web side: Django and its apps (django_htmx, ...), DRF, the annotate app, and workers, which imports both.
FORBIDDEN = ("annotate", "rest_framework", "workers")
PACKAGE = Path(rewardlab.__file__).parent
ENTRY_POINTS = (
    "rewardlab.cli",
    "rewardlab.pipeline",
    "rewardlab.data",
    "rewardlab.readers",
    "rewardlab.curation",
    "rewardlab.corrupt",
    "rewardlab.metrics",
)


def is_forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return top.startswith("django") or top in FORBIDDEN


def test_importing_rewardlab_loads_no_django_or_annotate_module():
    script = f"import json, sys\nimport {', '.join(ENTRY_POINTS)}\nprint(json.dumps(sorted(sys.modules)))"
    # a fresh interpreter: this one already holds Django through pytest-django
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "rewardlab.cli" in loaded and "torch" in loaded
    assert [name for name in loaded if is_forbidden(name)] == []


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """Return (line, module) of every absolute import of the web side, at any depth of the source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if is_forbidden(name)]
    return sorted(found)


def test_no_rewardlab_source_file_imports_django_or_annotate():
    offenders = {
        str(path.relative_to(PACKAGE.parent)): forbidden_imports(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert len(offenders) > 20  # every module was read, the package/ subfolder included
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_scan_finds_both_spellings_at_any_depth():
    source = "import os, django.db\ndef f():\n    from annotate.models import Item\nfrom . import annotate\n"
    assert forbidden_imports(source) == [(1, "django.db"), (3, "annotate.models")]  # not the relative import


def test_forbidden_names_are_the_web_side_only():
    assert [is_forbidden(n) for n in ("django", "django_htmx.http", "annotate.services", "workers.tasks")] == [True] * 4
    assert [is_forbidden(n) for n in ("annotated_types", "rewardlab.annotate", "torch")] == [False] * 3
