"""Chart geometry for the model page and the quality dashboard: plain numbers in, SVG coordinates out.

The page draws its charts as inline SVG from these values (no JS chart library, nothing from a CDN),
so what a chart shows is decided here, in pure functions a unit test can check, and the template only
places shapes. SVG's y axis points down: larger values get smaller y.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

# Accuracy and calibration live on 0..1; ticks at quarters keep 50% (chance for a pair) on a gridline.
UNIT_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_X_TICKS = 6
NICE_FACTORS = (1, 2, 5, 10)
BAR_GAP = 0.12  # share of a calibration bin's width left empty, so neighbouring bars stay apart
DECIMALS = 1  # SVG units are pixels at 1x; a tenth is finer than any screen shows
MISSING = "—"  # a value the run did not record: never drawn, never shown as 0


@dataclass(frozen=True)
class Box:
    """The SVG's viewBox and the margins around the plot area that hold the tick labels."""

    width: int = 480
    height: int = 270
    left: int = 52  # room for "100%" and the rotated axis label beside it, at phone type size too
    right: int = 14
    top: int = 12
    bottom: int = 40

    @property
    def x0(self) -> float:
        return float(self.left)

    @property
    def x1(self) -> float:
        return float(self.width - self.right)

    @property
    def y0(self) -> float:
        """The bottom edge of the plot area (value 0 on a 0..1 axis)."""
        return float(self.height - self.bottom)

    @property
    def y1(self) -> float:
        return float(self.top)

    @property
    def tick_end(self) -> float:
        """Where the x axis's tick marks end, below the axis."""
        return self.y0 + 5

    @property
    def x_tick_label_y(self) -> float:
        return self.y0 + 18

    @property
    def y_tick_label_x(self) -> float:
        return self.x0 - 6

    @property
    def x_label_y(self) -> float:
        return float(self.height - 4)

    @property
    def y_label_x(self) -> float:
        return 14.0

    @property
    def mid_x(self) -> float:
        return round((self.x0 + self.x1) / 2, DECIMALS)

    @property
    def mid_y(self) -> float:
        return round((self.y0 + self.y1) / 2, DECIMALS)


@dataclass(frozen=True)
class Tick:
    position: float  # x for the x axis, y for the y axis, in SVG units
    label: str


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    title: str  # shown on hover, read by screen readers


@dataclass(frozen=True)
class Series:
    key: str  # names the CSS class that colours the line
    label: str
    path: str
    markers: tuple[Marker, ...]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str
    key: str = ""  # names a CSS modifier of the bar (a flagged annotator, a day)


@dataclass(frozen=True)
class Rule:
    """A reference line across the plot area (chance, an overall rate); the legend says what it is."""

    x1: float
    y1: float
    x2: float
    y2: float
    key: str  # names the CSS class that styles the line
    title: str


@dataclass(frozen=True)
class LegendItem:
    """One entry of a chart's legend: a swatch styled by `key` (a `legend__item--<key>` class) and its words."""

    key: str
    label: str


@dataclass(frozen=True)
class Chart:
    """Everything the template needs to draw one chart."""

    key: str  # unique on the page: the SVG's title and description ids derive from it
    title: str
    description: str
    x_label: str
    y_label: str
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    series: tuple[Series, ...] = ()
    bars: tuple[Bar, ...] = ()
    diagonal: str = ""
    box: Box = field(default_factory=Box)
    rules: tuple[Rule, ...] = ()
    vertical_grid: bool = False  # gridlines at the x ticks (bars that grow to the right) instead of the y ticks
    legend: tuple[LegendItem, ...] = ()  # shown under the chart; none for a chart its heading already explains

    @property
    def is_empty(self) -> bool:
        return not self.bars and not any(series.markers for series in self.series)


def scale(value: float, domain: tuple[float, float], span: tuple[float, float]) -> float:
    """Map `value` linearly from `domain` onto `span`; a zero-width domain maps to the span's middle."""
    lo, hi = domain
    start, end = span
    if hi == lo:
        return round((start + end) / 2, DECIMALS)
    return round(start + (value - lo) / (hi - lo) * (end - start), DECIMALS)


def nice_step(hi: float, *, max_ticks: int = MAX_X_TICKS) -> int:
    """Return a 1-2-5 step that covers 0..hi in at most `max_ticks` intervals (whole numbers for counts).

    >>> nice_step(1234), nice_step(7), nice_step(0)
    (500, 2, 1)
    """
    if hi <= 0:
        return 1
    raw = hi / max_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(factor * magnitude for factor in NICE_FACTORS if factor * magnitude >= raw)
    return max(1, round(step))


def axis_ticks(hi: float, *, max_ticks: int = MAX_X_TICKS) -> tuple[int, ...]:
    """Return whole-number ticks from 0 up to the first step at or above `hi`: the axis's domain too.

    >>> axis_ticks(1234)
    (0, 500, 1000, 1500)
    """
    step = nice_step(hi, max_ticks=max_ticks)
    count = max(1, math.ceil(hi / step))
    return tuple(int(step * i) for i in range(count + 1))


def line_path(points: Iterable[tuple[float, float]]) -> str:
    """Return an SVG path through `points` (already in SVG units), or "" when there are none."""
    parts = [f"{'M' if i == 0 else 'L'}{x:g} {y:g}" for i, (x, y) in enumerate(points)]
    return " ".join(parts)


def percent(value: float | None, *, digits: int = 1) -> str:
    """Format a 0..1 share as a percentage; a missing value (None, NaN, a failed lookup) is a dash, never 0%."""
    if not isinstance(value, int | float) or math.isnan(value):
        return MISSING
    return f"{value * 100:.{digits}f}%"


def _unit_y_ticks(box: Box) -> tuple[Tick, ...]:
    return tuple(Tick(scale(v, (0.0, 1.0), (box.y0, box.y1)), percent(v, digits=0)) for v in UNIT_TICKS)


class CurvePointLike(Protocol):
    """What the learning curve reads of a point (`selectors.CurvePoint`), so tests can pass plain objects."""

    run: int
    human_labels: int
    accuracy: float | None
    text_only_accuracy: float | None
    gold_accuracy: float | None


# The learning curve's lines: attribute of a curve point, CSS key, legend label.
CURVE_SERIES = (
    ("accuracy", "accuracy", "Held-out accuracy"),
    ("text_only_accuracy", "text-only", "Text-only accuracy"),
    ("gold_accuracy", "gold", "Gold accuracy"),
)


def learning_curve_chart(points: Sequence[CurvePointLike], *, box: Box | None = None) -> Chart:
    """Plot each succeeded run's accuracies against the human labels it had; missing values leave no point.

    The x axis starts at 0 so runs trained on prior labels alone sit at the left edge.
    """
    box = box or Box()
    ticks = axis_ticks(max((p.human_labels for p in points), default=0))
    x_domain = (0.0, float(ticks[-1]))
    series = []
    for attribute, key, label in CURVE_SERIES:
        coords, markers = [], []
        for point in points:
            value = getattr(point, attribute)
            if value is None:
                continue
            xy = (scale(point.human_labels, x_domain, (box.x0, box.x1)), scale(value, (0.0, 1.0), (box.y0, box.y1)))
            coords.append(xy)
            title = f"Run {point.run}: {label.lower()} {percent(value)} at {point.human_labels} human labels"
            markers.append(Marker(*xy, title=title))
        series.append(Series(key=key, label=label, path=line_path(coords), markers=tuple(markers)))
    return Chart(
        key="learning-curve",
        title="Learning curve",
        description=f"Accuracy of each of {len(points)} succeeded runs against the human labels it trained on.",
        x_label="Human labels",
        y_label="Accuracy",
        x_ticks=tuple(Tick(scale(t, x_domain, (box.x0, box.x1)), f"{t:,}") for t in ticks),
        y_ticks=_unit_y_ticks(box),
        series=tuple(series),
        box=box,
        legend=tuple(LegendItem(line.key, line.label) for line in series if line.markers),
    )


def reliability_chart(bins: Sequence[Mapping], *, box: Box | None = None) -> Chart:
    """Draw a reliability diagram: per confidence bin, a bar as tall as the model's accuracy in it.

    Bins come from `rewardlab.metrics.calibration_bins` (keys lo, hi, n, confidence, accuracy); an empty
    bin has no bar. A calibrated model's bars touch the diagonal (Guo et al., 2017).
    """
    box = box or Box()
    x_domain = (min((b["lo"] for b in bins), default=0.5), max((b["hi"] for b in bins), default=1.0))
    bars = []
    for b in bins:
        if not b["n"] or b["accuracy"] is None:
            continue
        left = scale(b["lo"], x_domain, (box.x0, box.x1))
        right = scale(b["hi"], x_domain, (box.x0, box.x1))
        gap = (right - left) * BAR_GAP / 2
        top = scale(b["accuracy"], (0.0, 1.0), (box.y0, box.y1))
        title = (
            f"Confidence {percent(b['lo'], digits=0)}–{percent(b['hi'], digits=0)}: {b['n']} pairs, "
            f"mean confidence {percent(b['confidence'])}, accuracy {percent(b['accuracy'])}"
        )
        width, height = round(right - left - 2 * gap, DECIMALS), round(box.y0 - top, DECIMALS)
        bars.append(Bar(round(left + gap, DECIMALS), top, width, height, title))
    edges = sorted({x_domain[0], *(b["hi"] for b in bins)})
    ticks = edges if len(edges) <= MAX_X_TICKS + 1 else edges[:: math.ceil(len(edges) / MAX_X_TICKS)]
    diagonal = [(scale(v, x_domain, (box.x0, box.x1)), scale(v, (0.0, 1.0), (box.y0, box.y1))) for v in x_domain]
    return Chart(
        key="reliability",
        title="Calibration",
        description="Accuracy of the active model per confidence bin; the diagonal is perfect calibration.",
        x_label="Confidence",
        y_label="Accuracy",
        x_ticks=tuple(Tick(scale(t, x_domain, (box.x0, box.x1)), percent(t, digits=0)) for t in ticks),
        y_ticks=_unit_y_ticks(box),
        bars=tuple(bars),
        diagonal=line_path(diagonal) if bins else "",
        box=box,
        legend=(LegendItem("bar", "Accuracy per confidence bin"), LegendItem("diagonal", "Perfect calibration")),
    )


class DayLike(Protocol):
    """What the labels-over-time chart reads of a day (`stats.Day`)."""

    date: date
    labels: int
    cumulative: int


def day_label(day: date) -> str:
    """Return a short date for an axis: "Nov 3"."""
    return f"{day:%b} {day.day}"


CUMULATIVE_LABEL = "All labels so far"


def labels_over_time_chart(days: Sequence[DayLike], *, box: Box | None = None) -> Chart:
    """Draw the labels of each day as bars and the running total as a line, on one count axis.

    One axis keeps the two honest against each other: a day's bar is its share of the total so far.
    """
    box = box or Box()
    ticks = axis_ticks(max((day.cumulative for day in days), default=0))
    y_domain, y_span = (0.0, float(ticks[-1])), (box.y0, box.y1)
    band = (box.x1 - box.x0) / max(len(days), 1)
    gap = band * BAR_GAP / 2
    bars, coords, markers = [], [], []
    for index, day in enumerate(days):
        left = box.x0 + index * band
        top = scale(day.labels, y_domain, y_span)
        title = f"{day_label(day.date)}: {day.labels:,} label{'s' * (day.labels != 1)}"
        bars.append(
            Bar(round(left + gap, DECIMALS), top, round(band - 2 * gap, DECIMALS), round(box.y0 - top, DECIMALS), title)
        )
        xy = (round(left + band / 2, DECIMALS), scale(day.cumulative, y_domain, y_span))
        coords.append(xy)
        markers.append(Marker(*xy, title=f"{day_label(day.date)}: {day.cumulative:,} labels in all"))
    step = math.ceil(len(days) / MAX_X_TICKS) if days else 1
    return Chart(
        key="labels-over-time",
        title="Labels over time",
        description=f"Human labels per day and in all, over {len(days)} day{'s' * (len(days) != 1)}.",
        x_label="Day (UTC)",
        y_label="Labels",
        x_ticks=tuple(
            Tick(round(box.x0 + (i + 0.5) * band, DECIMALS), day_label(days[i].date)) for i in range(0, len(days), step)
        ),
        y_ticks=tuple(Tick(scale(t, y_domain, y_span), f"{t:,}") for t in ticks),
        series=(Series(key="cumulative", label=CUMULATIVE_LABEL, path=line_path(coords), markers=tuple(markers)),),
        bars=tuple(bars),
        box=box,
        legend=(LegendItem("day", "Labels that day"), LegendItem("cumulative", CUMULATIVE_LABEL)),
    )


@dataclass(frozen=True)
class CategoryValue:
    """One bar of a category chart: an annotator, say, and their value (None draws no bar)."""

    label: str
    value: float | None
    title: str
    flagged: bool = False


@dataclass(frozen=True)
class Reference:
    """A value to draw as a line across every bar, such as chance (50%) or the campaign's overall rate."""

    value: float
    key: str
    title: str


CATEGORY_ROW = 26  # SVG units per bar, so a chart grows with its rows instead of squeezing them
CATEGORY_LEFT = 124  # room for a name of NAME_CHARS characters beside the axis
NAME_CHARS = 16
FLAGGED = "flagged"


def short_name(name: str) -> str:
    """Shorten a name to fit beside a chart's axis; the bar's title keeps it whole.

    >>> short_name("a-very-long-annotator-name")
    'a-very-long-ann…'
    """
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def category_bars_chart(
    *,
    key: str,
    title: str,
    description: str,
    x_label: str,
    rows: Sequence[CategoryValue],
    references: Sequence[Reference] = (),
    share: bool = True,
    legend: Sequence[LegendItem] = (),
) -> Chart:
    """Draw one horizontal bar per category, flagged ones marked, with reference lines across them.

    With `share` the values are 0..1 and the axis reads in percent; otherwise (seconds, counts) the axis
    runs from 0 to a round number at or above the largest value. The legend is `legend` followed by one
    entry per reference line.
    """
    box = Box(height=Box.top + Box.bottom + CATEGORY_ROW * max(len(rows), 1), left=CATEGORY_LEFT)
    if share:
        x_values, x_labels = UNIT_TICKS, tuple(percent(v, digits=0) for v in UNIT_TICKS)
    else:
        x_values = axis_ticks(max((row.value for row in rows if row.value is not None), default=0))
        x_labels = tuple(f"{v:,}" for v in x_values)
    x_domain, x_span = (0.0, float(x_values[-1])), (box.x0, box.x1)
    gap = CATEGORY_ROW * BAR_GAP
    bars, y_ticks = [], []
    for index, row in enumerate(rows):
        top = box.y1 + index * CATEGORY_ROW
        y_ticks.append(Tick(round(top + CATEGORY_ROW / 2, DECIMALS), short_name(row.label)))
        if row.value is None:
            continue
        width = round(scale(row.value, x_domain, x_span) - box.x0, DECIMALS)
        height = round(CATEGORY_ROW - 2 * gap, DECIMALS)
        bars.append(Bar(box.x0, round(top + gap, DECIMALS), width, height, row.title, FLAGGED if row.flagged else ""))
    rules = tuple(
        Rule(x, box.y0, x, box.y1, reference.key, reference.title)
        for reference in references
        for x in (scale(reference.value, x_domain, x_span),)
    )
    return Chart(
        key=key,
        title=title,
        description=description,
        x_label=x_label,
        y_label="",
        x_ticks=tuple(Tick(scale(v, x_domain, x_span), label) for v, label in zip(x_values, x_labels, strict=True)),
        y_ticks=tuple(y_ticks),
        bars=tuple(bars),
        box=box,
        rules=rules,
        vertical_grid=True,
        legend=(*legend, *(LegendItem(f"rule-{rule.key}", rule.title) for rule in rules)),
    )
