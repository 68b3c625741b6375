"""The labeling page: one pair at a time, fast from the keyboard (API.md, "Labels").

The screen speaks in sides (left/right) because the annotator sees a per-assignment random order; the
services speak in the pair's canonical a/b. `canonical_choice` is the one place that translates.
Every action works as a plain POST + redirect; with htmx the next pair's panel swaps in directly.
"Previous" (Backspace) shows the annotator's last label again, filled in, for as long as the campaign lets
it be changed; submitting it edits that label (`services.annotation_edits`) and moves on to the next pair.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST, require_safe

from annotate import access, clock, selectors
from annotate.exceptions import ApplicationError, ConflictError, PermissionDeniedError
from annotate.models import HALLUCINATION_TYPES, Annotation, Assignment, Campaign, Choice, Response, Side
from annotate.services.annotation_edits import annotation_edit, edit_deadline, edit_refusal
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.assignments import assignment_next, assignment_skip
from annotate.views.auth import login_required
from annotate.views.errors import INVALID_STATUS, renders_errors
from annotate.views.images import image_url

PAGE_TEMPLATE = "label/page.html"
PANEL_TEMPLATE = f"{PAGE_TEMPLATE}#label-panel"

# What the form says, in screen terms.
SHOWN_LEFT = "left"
SHOWN_RIGHT = "right"

# Keyboard scheme, rendered next to every control and read back by static/js/label.js from data-key:
# digits pick the side, the top letter row the strength, the bottom row toggles types.
CHOICE_OPTIONS = (
    (SHOWN_LEFT, "Left more hallucinated", "1"),
    (SHOWN_RIGHT, "Right more hallucinated", "2"),
    (Choice.BOTH.value, "Both equally", "3"),
    (Choice.NEITHER.value, "Neither", "4"),
)
STRENGTH_KEYS = "qwertyuiop"  # one per level; campaigns allow at most 10 levels (services/campaigns.py)
TYPE_KEYS = "zxcvbn"
assert len(TYPE_KEYS) == len(HALLUCINATION_TYPES), "one key per hallucination type"

# A duration past this is a tab left open, not time spent on the pair: it is recorded as unknown.
MAX_DURATION_MS = 6 * 60 * 60 * 1000


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    key: str


class AssignmentForm(forms.Form):
    """Parse the hidden assignment id that every action on the panel posts."""

    assignment = forms.IntegerField(min_value=1)


# A posted span, as static/js/spans.js writes it: canonical side, offsets in that response's text, optional type.
POSTED_SPAN = re.compile(r"(?P<response>[ab]):(?P<start>\d{1,9}):(?P<end>\d{1,9})(?::(?P<type>\w*))?", re.ASCII)


def posted_span(span: dict) -> str:
    """Write a stored span as the form posts it (`POSTED_SPAN`), so a label shown again keeps its spans."""
    value = f"{span['response']}:{span['start']}:{span['end']}"
    return f"{value}:{span['type']}" if span.get("type") else value


class SpansField(forms.Field):
    """Parse the posted spans, one `side:start:end[:type]` value each; whether they fit is the service's business."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: list[str] | None) -> list[dict]:
        spans = []
        for index, raw in enumerate(value or []):
            match = POSTED_SPAN.fullmatch(raw)
            if match is None:
                raise ValidationError(f"Span {index}: expected side:start:end[:type], got {raw!r}.")
            span = {"response": match["response"], "start": int(match["start"]), "end": int(match["end"])}
            spans.append({**span, "type": match["type"]} if match["type"] else span)
        return spans


class LabelForm(AssignmentForm):
    """Parse the label form; what makes a label valid is the service's business, not this form's."""

    more_hallucinated = forms.ChoiceField(
        choices=[(value, label) for value, label, _ in CHOICE_OPTIONS], required=False
    )
    strength = forms.IntegerField(required=False)
    hallucination_types = forms.MultipleChoiceField(
        choices=[(name, name) for name in HALLUCINATION_TYPES], required=False
    )
    spans = SpansField(required=False)
    rationale = forms.CharField(required=False)
    duration_ms = forms.IntegerField(required=False)

    def clean_duration_ms(self) -> int | None:
        duration = self.cleaned_data["duration_ms"]
        return duration if duration is not None and 0 <= duration <= MAX_DURATION_MS else None


def canonical_choice(shown: str, *, left: str) -> str:
    """Translate the side picked on screen into the pair's canonical order, given which side was left.

    >>> [canonical_choice(shown, left="b") for shown in ("left", "right", "both")]
    ['b', 'a', 'both']
    """
    if shown == SHOWN_LEFT:
        return left
    if shown == SHOWN_RIGHT:
        return Side.B if left == Side.A else Side.A
    return shown


def shown_choice(choice: str, *, left: str) -> str:
    """Translate a canonical choice back into the side it was on screen: `canonical_choice` undone.

    >>> [shown_choice(choice, left="b") for choice in ("a", "b", "neither")]
    ['right', 'left', 'neither']
    """
    if choice not in (Side.A, Side.B):
        return choice
    return SHOWN_LEFT if choice == left else SHOWN_RIGHT


def _edit_values(annotation: Annotation) -> dict:
    """The form's values for a label shown again to be changed, in screen terms."""
    return {
        "more_hallucinated": shown_choice(annotation.more_hallucinated, left=annotation.shown_left),
        "strength": "" if annotation.strength is None else str(annotation.strength),
        "hallucination_types": annotation.hallucination_types,
        "rationale": annotation.rationale,
        "spans": [posted_span(span) for span in annotation.spans],
    }


def label_input(data: dict, *, left: str) -> LabelInput:
    """Build the service's input from the parsed form; strength only means something for a side."""
    choice = canonical_choice(data["more_hallucinated"], left=left)
    return LabelInput(
        more_hallucinated=choice,
        strength=data["strength"] if choice in (Side.A, Side.B) else None,
        hallucination_types=tuple(data["hallucination_types"]),
        spans=tuple(data["spans"]),
        rationale=data["rationale"],
        duration_ms=data["duration_ms"],
    )


class PreviousForm(forms.Form):
    """Parse which label "Previous" goes back from: the one before `before`, or the latest without it."""

    before = forms.IntegerField(min_value=1, required=False)


def _posted_values(request: HttpRequest) -> dict:
    """What the annotator had entered, shown again if the label is refused."""
    return {
        "more_hallucinated": request.POST.get("more_hallucinated", ""),
        "strength": request.POST.get("strength", ""),
        "hallucination_types": request.POST.getlist("hallucination_types"),
        "rationale": request.POST.get("rationale", ""),
        "spans": request.POST.getlist("spans"),
    }


def _strength_options(campaign: Campaign) -> list[Option]:
    words = list(campaign.strength_labels) or [""] * campaign.strength_scale
    return [
        Option(str(level), word, STRENGTH_KEYS[level - 1])
        for level, word in enumerate(words[: campaign.strength_scale], start=1)
    ]


def _posted_assignment(form: AssignmentForm, *, campaign: Campaign, annotator: AbstractBaseUser) -> Assignment:
    """Return the assignment the form names: the user's own, in this campaign."""
    if not form.is_valid() and "assignment" in form.errors:
        raise ApplicationError(f"Expected the id of an assignment, got {form.data.get('assignment')!r}.")
    return selectors.assignment_of_annotator(
        assignment_id=form.cleaned_data["assignment"], campaign=campaign, annotator=annotator
    )


def _next_assignment(campaign: Campaign, annotator: AbstractBaseUser) -> tuple[Assignment | None, str]:
    """Lease the next pair; a paused annotator gets none, and the reason instead, for the panel to show."""
    try:
        lease = assignment_next(campaign=campaign, annotator=annotator)
    except PermissionDeniedError as exc:
        # Callers passed `access.campaign_for(..., LABEL)`, so this refusal is a pause (failed gold, or a lead).
        return None, exc.message
    return (lease.assignment if lease else None), ""


def _sides(assignment: Assignment) -> tuple[Response, Response]:
    pair = assignment.pair
    return (pair.a, pair.b) if assignment.left == Side.A else (pair.b, pair.a)


def _render_panel(
    request: HttpRequest,
    campaign: Campaign,
    assignment: Assignment | None,
    *,
    values: dict | None = None,
    errors: dict | None = None,
    notice: str = "",
    paused: str = "",
    editing: Annotation | None = None,
    status: int = 200,
) -> TemplateResponse:
    """Render the label panel (htmx) or the whole page around it: this assignment, "paused" (403) or "all done".

    With `editing`, the assignment is that label's, shown again to be changed rather than labeled.
    """
    context = {
        "campaign": campaign,
        "assignment": assignment,
        "done_count": selectors.annotator_done_count(campaign=campaign, user_id=request.user.pk),
        "choice_options": [Option(*option) for option in CHOICE_OPTIONS],
        "strength_options": _strength_options(campaign),
        "type_options": [Option(name, name, key) for name, key in zip(HALLUCINATION_TYPES, TYPE_KEYS, strict=True)],
        "values": values or {},
        "errors": errors or {},
        "notice": notice,
        "paused": paused,
        "editing": editing,
        "edit_until": edit_deadline(editing, campaign) if editing else None,
    }
    if assignment is not None:
        item = assignment.pair.item
        left, right = _sides(assignment)
        context.update(
            item=item,
            image_src=image_url(item.image),
            left_response=left,
            right_response=right,
            right_side=Side.B if assignment.left == Side.A else Side.A,
            spans_on=campaign.spans != Campaign.Spans.OFF,
            facts=item.facts if campaign.show_facts else None,
        )
    template = PANEL_TEMPLATE if request.htmx else PAGE_TEMPLATE
    status = PermissionDeniedError.status_code if paused else status
    return TemplateResponse(request, template, context, status=status)


def _next_panel(request: HttpRequest, campaign: Campaign, *, notice: str = "") -> HttpResponseBase:
    """After an action: the next pair's panel for htmx, a redirect to the label page otherwise."""
    if not request.htmx:
        if notice:
            messages.warning(request, notice)
        return redirect("label-page", campaign_id=campaign.pk)
    assignment, paused = _next_assignment(campaign, request.user)
    return _render_panel(request, campaign, assignment, notice=notice, paused=paused)


@require_safe
@login_required
@renders_errors
def label_page(request: HttpRequest, campaign_id: int) -> TemplateResponse:
    """Show the annotator's current pair (leasing the next one if needed), or "all done"."""
    campaign = access.campaign_for(request.user, campaign_id, access.LABEL)
    assignment, paused = _next_assignment(campaign, request.user)
    return _render_panel(request, campaign, assignment, paused=paused)


@require_POST
@login_required
@renders_errors
def label_submit(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Save a label, then show the next pair; a repeated submit saves nothing new.

    A ConflictError means the pair was skipped, or its lease expired and went to others: nothing to fix, move on.
    """
    campaign = access.campaign_for(request.user, campaign_id, access.LABEL)
    form = LabelForm(request.POST)
    assignment = _posted_assignment(form, campaign=campaign, annotator=request.user)

    def save(label: LabelInput) -> None:
        annotation_save(assignment_id=assignment.pk, user_id=request.user.pk, label=label)

    return _label_saved(request, campaign, assignment, form, save=save)


def _label_saved(
    request: HttpRequest,
    campaign: Campaign,
    assignment: Assignment,
    form: LabelForm,
    *,
    save: Callable[[LabelInput], None],
    editing: Annotation | None = None,
) -> HttpResponseBase:
    """Save the posted label with `save` and show the next pair; a refused one comes back with its reasons.

    A ConflictError moves on with its message: nothing in the form can fix it.
    """
    values = _posted_values(request)

    def refused(errors: dict) -> TemplateResponse:
        return _render_panel(
            request, campaign, assignment, values=values, errors=errors, editing=editing, status=INVALID_STATUS
        )

    if form.errors:
        return refused({field: " ".join(messages) for field, messages in form.errors.items()})
    try:
        save(label_input(form.cleaned_data, left=assignment.left))
    except ConflictError as exc:
        return _next_panel(request, campaign, notice=exc.message)
    except ApplicationError as exc:
        if not exc.extra.get("fields"):
            raise
        return refused(exc.extra["fields"])
    return _next_panel(request, campaign)


@require_safe
@login_required
@renders_errors
def label_previous(request: HttpRequest, campaign_id: int) -> TemplateResponse:
    """Show the annotator's label before `?before=` (their last one without it) again, to be changed.

    A label past the campaign's edit window is refused here, with the reason, before anything is shown.
    """
    campaign = access.campaign_for(request.user, campaign_id, access.LABEL)
    form = PreviousForm(request.GET)
    before = form.cleaned_data["before"] if form.is_valid() else None
    annotation = selectors.annotation_before(campaign=campaign, annotator=request.user, before=before)
    refusal = edit_refusal(annotation, campaign, now=clock.now())
    if refusal is not None:
        raise refusal
    assignment = annotation.assignment
    return _render_panel(request, campaign, assignment, values=_edit_values(annotation), editing=annotation)


@require_POST
@login_required
@renders_errors
def label_edit(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Save the change of a label shown again by "Previous", then show the pair that was waiting."""
    campaign = access.campaign_for(request.user, campaign_id, access.LABEL)
    form = LabelForm(request.POST)
    assignment = _posted_assignment(form, campaign=campaign, annotator=request.user)
    annotation = Annotation.objects.filter(assignment=assignment).first()
    if annotation is None:
        raise ConflictError(f"Assignment {assignment.pk} has no label yet; there is nothing to change.")

    def save(label: LabelInput) -> None:  # a ConflictError: the window closed while they were changing it
        changes = {field: getattr(label, field) for field in ("more_hallucinated", "strength", "rationale")}
        changes |= {"hallucination_types": list(label.hallucination_types), "spans": list(label.spans)}
        annotation_edit(annotation_id=annotation.pk, user_id=request.user.pk, changes=changes)

    return _label_saved(request, campaign, assignment, form, save=save, editing=annotation)


@require_POST
@login_required
@renders_errors
def label_skip(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Give the pair back without a label, then show the next one."""
    campaign = access.campaign_for(request.user, campaign_id, access.LABEL)
    form = AssignmentForm(request.POST)
    assignment = _posted_assignment(form, campaign=campaign, annotator=request.user)
    try:
        assignment_skip(assignment_id=assignment.pk, annotator=request.user)
    except ConflictError as exc:
        return _next_panel(request, campaign, notice=exc.message)  # already labeled: nothing to skip
    return _next_panel(request, campaign)
