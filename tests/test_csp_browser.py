"""The htmx pages work under the Content-Security-Policy (issue 7, item 4), in headless Chromium.

The policy (settings.CONTENT_SECURITY_POLICY) allows our own scripts and styles only: no inline script or
style, no eval. Each test records every `securitypolicyviolation` event and every console message about the
policy, and asserts there are none while htmx swaps: keyboard labeling, a polled job fragment, the live
instructions preview, the error partial's dismiss button, the dashboard and the API docs. The first test
shows the recorder hears a violation when there is one.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from annotate.models import ImportJob, Membership
from annotate.services.campaigns import campaign_update
from tests import factories
from tests.browser import ARTIFACTS, DESKTOP, sign_in
from tests.test_stats import label

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Installed before any page script: every violation the page reports lands in window.__csp.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__csp.push(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"} at ${where}`);
});
"""


class Watched:
    """A tab that records CSP violations, page errors and console errors; `problems()` lists them all."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport=DESKTOP)
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))
        self.page.on("console", self._on_console)

    def _on_console(self, message) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.console.append(f"console {message.type}: {message.text}")

    def problems(self) -> list[str]:
        return self.console + self.page.evaluate("window.__csp || []")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser):
    watched = Watched(browser)
    yield watched
    watched.close()


def test_the_recorder_hears_a_violation(live_server, tab, campaign):
    """An inline script injected into a page is refused, and the refusal is recorded: the checks can fail."""
    page = tab.page
    sign_in(page, live_server.url, "lead")
    assert tab.problems() == []
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.__inline = 1";
        document.body.append(script);
        document.body.insertAdjacentHTML("beforeend", '<p style="color: red" id="styled">x</p>');
    }""")
    page.wait_for_function("window.__csp.length >= 2")
    assert page.evaluate("window.__inline") is None
    assert any(problem.startswith("script-src-elem blocked inline") for problem in tab.problems())
    assert any(problem.startswith("style-src-attr blocked inline") for problem in tab.problems())


def test_keyboard_labeling_and_the_error_partial_work_under_the_policy(live_server, tab, campaign):
    expect, page = sync_api.expect, tab.page
    campaign_update(campaign=campaign, show_facts=True, instructions="Compare **both** answers.")
    factories.make_pairs(campaign, 3, facts={"caption": "Two red balls."})

    sign_in(page, live_server.url, "ann1")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/label/")
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    assert page.locator("head style").count() == 0, "htmx injected no inline style"
    page.evaluate("window.__sameDocument = true")
    for done in ("1", "2"):
        for key in ("1", "e", "Enter"):
            page.keyboard.press(key)
        expect(page.locator(".counter__n")).to_have_text(done)
    assert page.evaluate("window.__sameDocument") is True, "the pairs swapped in with htmx, no page load"

    # ann1 is removed from the campaign behind the tab's back: the next submit answers 404, which htmx shows
    # in #flash as the error partial; its dismiss button (a <dialog>'s form, not an inline handler) closes it.
    Membership.objects.filter(campaign=campaign, user__username="ann1").delete()
    for key in ("1", "e", "Enter"):
        page.keyboard.press(key)
    alert = page.locator("#flash .alert")
    expect(alert).to_contain_text("Not found")
    expect(alert).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "error_partial.png")
    alert.get_by_role("button", name="Dismiss").click()
    expect(alert).to_be_hidden()
    expect(page.locator("#label-panel")).to_be_visible()
    assert [p for p in tab.problems() if "404" not in p] == [], tab.problems()


def test_a_polled_job_fragment_swaps_until_it_finishes(live_server, tab, campaign):
    expect, page = sync_api.expect, tab.page
    lead = get_user_model().objects.get(username="lead")
    job = ImportJob.objects.create(campaign=campaign, filename="scenes.zip", status="running", created_by=lead)

    sign_in(page, live_server.url, "lead")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/import/")
    fragment = page.locator(f"#import-job-{job.pk}")
    expect(fragment).to_have_attribute("hx-trigger", "load delay:1s")
    with page.expect_response(lambda response: f"/imports/{job.pk}/status/" in response.url):
        pass  # the fragment asked for itself once
    ImportJob.objects.filter(pk=job.pk).update(status="succeeded", items_created=4, pairs_created=6)
    expect(fragment).to_contain_text("4 items and 6 pairs created", timeout=10_000)
    expect(fragment).not_to_have_attribute("hx-trigger", "load delay:1s")
    assert tab.problems() == []


def test_the_instructions_preview_and_the_dashboard_work_under_the_policy(live_server, tab, campaign):
    expect, page = sync_api.expect, tab.page
    for pair in factories.make_pairs(campaign, 4):
        label(pair, "ann1", "a", 2)
        label(pair, "ann2", "b", 3)

    sign_in(page, live_server.url, "lead")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/settings/")
    page.fill("#id_instructions", "# Judge\nLook at **the image**.")
    expect(page.locator("#instructions-preview h3")).to_have_text("Judge")
    expect(page.locator("#instructions-preview strong")).to_have_text("the image")

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/dashboard/")
    expect(page.locator('[data-stat="labels"]')).to_have_text("8")
    expect(page.locator("svg.chart").first).to_be_visible()
    assert tab.problems() == []


# Redoc draws a "by Redocly" logo from its CDN; the policy refuses it, as it must refuse anything from outside.
OUTSIDE_FETCH = "https://cdn.redoc.ly/"


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"], ids=["swagger", "redoc"])
def test_the_api_docs_render_under_their_policy(live_server, tab, campaign, path):
    """The docs pages start their viewer from one inline script, allowed by its nonce (annotate/api/urls.py)."""
    page = tab.page
    sign_in(page, live_server.url, "lead")
    response = page.goto(f"{live_server.url}{path}")
    policy = response.headers["content-security-policy"]
    assert "'nonce-" in policy and "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";")[0]
    # The viewer drew the schema's title, which only its script can do.
    sync_api.expect(page.locator("h1", has_text="RewardLab API")).to_be_visible(timeout=20_000)
    assert [problem for problem in tab.problems() if OUTSIDE_FETCH not in problem] == []
