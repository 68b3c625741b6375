"""The column-mapping flow in headless Chromium: preview a file in no known layout, map, import, save, reuse.

The job is run by calling the worker's service in the test (`import_job_run`), as the Celery task does, so
the page's polling fragment is what shows the result; the browser fixture is shared (tests/conftest.py).
"""

from __future__ import annotations

import json

import pytest

from annotate.models import ImportJob, ImportMapping, Item
from annotate.services.imports import import_job_run
from tests.browser import ARTIFACTS, DESKTOP, sign_in, watch_problems
from tests.conftest import wait_for
from tests.test_import_mapping import SCRIPT, custom_row, worse_texts

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def write_rows(path, rows: list[dict]):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_new_job(before: int) -> ImportJob:
    """Wait for the job the page just queued, and run it as a worker would."""
    job = wait_for(lambda: ImportJob.objects.filter(pk__gt=before).first(), what="the import job")
    return import_job_run(job_id=job.pk)


def test_lead_previews_maps_imports_and_reuses_a_mapping(live_server, browser, campaign, tmp_path):
    expect = sync_api.expect
    first = write_rows(tmp_path / "custom.jsonl", [custom_row("q-1", "A"), custom_row("q-2", "B")])
    second = write_rows(tmp_path / "more.jsonl", [custom_row("q-3", "B")])
    page = browser.new_page(viewport=DESKTOP)
    problems = watch_problems(page)
    sign_in(page, live_server.url, "lead")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/import/")

    # Preview: the first rows, with the file's text shown as text.
    page.set_input_files("#id_file", str(first))
    page.get_by_role("button", name="Preview and map columns").click()
    page.wait_for_url("**/import/uploads/*/")
    table = page.locator(".preview-table")
    expect(table.locator("thead")).to_contain_text("winner")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text(SCRIPT)
    assert table.locator("script").count() == 0, "a value of the file must never become markup"

    # Map, save and import.
    for field, column in {"prompt": "question", "image": "img", "answer_1": "answer_a", "answer_2": "answer_b"}.items():
        page.select_option(f"#id_{field}", column)
    page.select_option("#id_id", "qid")
    page.get_by_label("A column says which answer").check()
    page.select_option("#id_preference_column", "winner")
    page.fill("#id_value_1", "A")
    page.fill("#id_value_2", "B")
    page.select_option("#id_fact_caption", "caption")
    page.fill("#id_save_as", "ab-winner")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "import_mapping.png", full_page=True)
    page.get_by_role("button", name="Import with this mapping").click()
    page.wait_for_url("**/imports/*/status/")
    job = run_new_job(0)
    assert job.status == "succeeded", job.errors
    expect(page.locator(f"#import-job-{job.pk}")).to_contain_text("2 items", timeout=15_000)
    assert ImportMapping.objects.get(campaign=campaign, name="ab-winner").mapping["prompt"] == "question"

    # Reuse: the next file, imported with the saved mapping picked on the upload form.
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/import/")
    page.set_input_files("#id_file", str(second))
    page.select_option("#id_mapping", "ab-winner")
    page.get_by_role("button", name="Upload and import").click()
    row = page.locator(".job").first
    expect(row).to_contain_text("more.jsonl")
    second_job = run_new_job(job.pk)
    assert second_job.status == "succeeded", second_job.errors
    expect(page.locator(f"#import-job-{second_job.pk}")).to_contain_text("1 item", timeout=15_000)

    assert worse_texts(campaign) == {"q-1": "Three red balls.", "q-2": "Two red balls.", "q-3": "Two red balls."}
    assert Item.objects.get(external_id="q-3").facts == {"caption": "Two red balls on a table."}
    assert problems == []
    page.close()
