"""The quality dashboard for leads and researchers: progress, agreement, annotators, biases, model rounds.

One page drawn from `stats.campaign_stats`, the same numbers `GET /api/v1/campaigns/{id}/stats/` returns,
with inline SVG charts from `annotate.charts` (issue 5, item 6). Leads see annotators by username, since they are
the ones who talk to them (and resume a paused one); researchers see the pseudonymous ids of the API.
Annotators never reach this page.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.views.decorators.http import require_safe

from annotate import access, charts
from annotate.quality.bias import FLAG_MIN_EFFECT, FLAG_P_VALUE, NULL_SHARE, ShareTest, Timing
from annotate.stats import CampaignStats, campaign_stats
from annotate.views.auth import login_required
from annotate.views.errors import renders_errors

PAGE_TEMPLATE = "dashboard/page.html"
# A bias chart's legend before its reference lines: what a bar is and what a flagged one is.
BIAS_LEGEND = (charts.LegendItem("bar", "Annotator"), charts.LegendItem(charts.FLAGGED, "Flagged"))


def _share_title(name: str, test: ShareTest, what: str) -> str:
    """Say what a bias bar shows, for its hover text and screen readers."""
    if test.share is None:
        return f"{name}: no labels that pick a side"
    verdict = ", flagged" if test.flagged else ""
    return (
        f"{name}: {what} in {test.k} of {test.n} labels ({charts.percent(test.share)}), p = {test.p_value:.2g}{verdict}"
    )


def _time_title(name: str, time: Timing) -> str:
    """Say what a time bar shows, for its hover text and screen readers."""
    if not time.n:
        return f"{name}: no durations recorded"
    return f"{name}: median {time.median_s:.1f} s, 90% of labels within {time.p90_s:.1f} s ({time.n} labels)"


def _bias_chart(
    key: str, title: str, x_label: str, names: list[str], tests: list[ShareTest], references: list[charts.Reference]
) -> charts.Chart:
    """Draw one bias share per annotator, flagged ones marked, with reference lines."""
    return charts.category_bars_chart(
        key=key,
        title=title,
        description=f"{x_label}: the share per annotator, among labels that pick a side.",
        x_label=x_label,
        rows=[
            charts.CategoryValue(name, test.share, _share_title(name, test, x_label.lower()), test.flagged)
            for name, test in zip(names, tests, strict=True)
        ],
        references=references,
        legend=BIAS_LEGEND,
    )


def _charts(stats: CampaignStats, names: list[str]) -> dict[str, charts.Chart]:
    """Build the page's charts; an annotator without labels keeps a row but gets no bar."""
    rows = stats.annotators
    chance = charts.Reference(NULL_SHARE, "chance", "50%: no preference")
    overall = stats.biases.length.share
    length_references = [chance]
    if overall is not None:
        length_references.append(charts.Reference(overall, "overall", f"All annotators: {charts.percent(overall)}"))
    return {
        "progress": charts.labels_over_time_chart(stats.progress.days),
        "agreement": charts.category_bars_chart(
            key="agreement",
            title="Agreement with the consensus",
            description="Per annotator, the share of labels on pairs with two or more labels that match the consensus.",
            x_label="Labels matching the consensus",
            rows=[
                charts.CategoryValue(
                    name, row.agreement, f"{name}: {charts.percent(row.agreement)} of {row.agreement_n}"
                )
                for name, row in zip(names, rows, strict=True)
            ],
        ),
        "position": _bias_chart(
            "position", "Position bias", "Left answer flagged", names, [row.position for row in rows], [chance]
        ),
        "length": _bias_chart(
            "length", "Length bias", "Longer answer preferred", names, [row.length for row in rows], length_references
        ),
        "time": charts.category_bars_chart(
            key="time",
            title="Time per label",
            description="Per annotator, the median seconds spent on a label.",
            x_label="Median seconds per label",
            rows=[
                charts.CategoryValue(name, row.time.median_s, _time_title(name, row.time))
                for name, row in zip(names, rows, strict=True)
            ],
            share=False,
        ),
        "rounds": charts.learning_curve_chart(stats.rounds),
    }


@require_safe
@login_required
@renders_errors
def dashboard_page(request: HttpRequest, campaign_id: int) -> TemplateResponse:
    """Show a campaign's quality dashboard to its leads and researchers."""
    campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
    stats = campaign_stats(campaign)
    show_names = access.user_can(request.user, campaign, access.MANAGE)
    names = [row.username if show_names else row.pseudonym for row in stats.annotators]
    context = {
        "campaign": campaign,
        "stats": stats,
        "show_names": show_names,
        "annotators": list(zip(names, stats.annotators, strict=True)),
        "charts": _charts(stats, names),
        "flag_p_value": FLAG_P_VALUE,
        "flag_min_effect": FLAG_MIN_EFFECT,
    }
    return TemplateResponse(request, PAGE_TEMPLATE, context)
