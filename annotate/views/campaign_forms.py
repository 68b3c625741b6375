"""The forms of the campaign pages. They parse what was posted; `services.campaigns` decides what is valid.

Priority weights and surfacing thresholds are one number field per key of the defaults in
`services.priorities`; a blank field means "the default" and is not stored, so a campaign follows
later changes of a default it never overrode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms

from annotate.exceptions import ApplicationError
from annotate.models import Campaign, Membership
from annotate.services.priorities import DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS
from annotate.views.errors import service_errors_on_form

WEIGHT_PREFIX = "weight_"
THRESHOLD_PREFIX = "threshold_"
LABEL_SEPARATOR = ","

# What each term of a pair's priority measures (services/priorities.py), shown under its field.
WEIGHT_HELP = {
    "entropy": "How unsure the active model is which answer is better.",
    "mutual_info": "How much the models of the ensemble disagree.",
    "shortcut": "How well a text-only model answers without the image.",
    "noise": "How strongly the model contradicts the current label.",
    "disagreement": "How much the annotators of a pair disagree.",
    "coverage": "How far a pair is from the labels it needs.",
}
# When a pair is surfaced for each reason, shown under its field.
THRESHOLD_HELP = {
    "uncertain": "Surfaced as uncertain at this entropy (bits) or more.",
    "shortcut": "A shortcut when a text-only model gives the label this probability or more.",
    "suspected_noise": "Label suspected wrong at this noise score or more.",
    "disagreement": "Annotators disagree when this share or less agrees with the majority.",
    "max_share": "Most pairs one reason surfaces per round, as a share of all pairs.",
}
assert set(WEIGHT_HELP) == set(DEFAULT_WEIGHTS), "one help text per priority weight"
assert set(THRESHOLD_HELP) == set(DEFAULT_THRESHOLDS), "one help text per surfacing threshold"


@dataclass(frozen=True)
class Section:
    """A fieldset of the settings form; `setting` names a service error shown on the whole set."""

    title: str
    names: tuple[str, ...]
    note: str = ""
    setting: str = ""


SECTIONS = (
    Section("About", ("name", "instructions")),
    Section(
        "Labeling",
        (
            "overlap",
            "strength_scale",
            "lease_seconds",
            "edit_window_minutes",
            "strength_labels",
            "show_facts",
            "rationale_required",
            "spans",
        ),
    ),
    Section("Gold pairs", ("gold_share", "min_gold_accuracy", "gold_min_answered", "gold_feedback")),
    Section("Reward model", ("retrain_every", "max_extra_labels")),
    Section(
        "Priority weights",
        tuple(WEIGHT_PREFIX + key for key in DEFAULT_WEIGHTS),
        note="How much each term counts when choosing the next pair. Blank uses the default shown.",
        setting="priority_weights",
    ),
    Section(
        "Surfacing thresholds",
        tuple(THRESHOLD_PREFIX + key for key in DEFAULT_THRESHOLDS),
        note="When the reward model sends a pair back to annotators. Blank uses the default shown.",
        setting="surface_thresholds",
    ),
)
SET_SETTINGS = {section.setting for section in SECTIONS if section.setting}


@dataclass(frozen=True)
class BoundSection:
    title: str
    note: str
    fields: list[forms.BoundField]
    error: str


def _default_field(key: str, default: float, help_text: str) -> forms.FloatField:
    """A number that may stay blank, with the default it then takes as placeholder."""
    return forms.FloatField(
        required=False,
        label=key.replace("_", " ").capitalize(),
        help_text=f"{help_text} Default {default:g}.",
        widget=forms.NumberInput(attrs={"placeholder": f"{default:g}", "step": "any"}),
    )


class CampaignForm(forms.Form):
    """Every setting a lead may edit, named as `campaign_create` and `campaign_update` take them."""

    name = forms.CharField(help_text="Shown to everyone in the campaign.")
    instructions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown: **bold**, *italic*, `code`, lists, links, # headings. Shown above every pair.",
        template_name="campaigns/instructions_field.html",  # with the live preview under it
    )
    overlap = forms.IntegerField(help_text="Human labels wanted per pair.")
    strength_scale = forms.IntegerField(
        label="Strength levels", help_text="How many levels of preference strength annotators pick from (2 to 10)."
    )
    strength_labels = forms.CharField(
        required=False,
        help_text="A word per level, weakest first, separated by commas; blank shows numbers only.",
    )
    lease_seconds = forms.IntegerField(
        label="Lease (seconds)", help_text="How long a pair stays reserved for the annotator who opened it."
    )
    edit_window_minutes = forms.IntegerField(
        label="Edit window (minutes)", help_text="How long annotators may change a label they gave; 0 never."
    )
    show_facts = forms.BooleanField(
        required=False, label="Show facts", help_text="Show annotators the captions and answers that came with items."
    )
    rationale_required = forms.BooleanField(
        required=False, label="Require a rationale", help_text="Annotators must say why, with every label."
    )
    spans = forms.ChoiceField(
        choices=Campaign.Spans.choices,
        label="Hallucinated spans",
        help_text="Annotators mark the hallucinated words; required: on the answer they pick, for A or B.",
    )
    gold_share = forms.FloatField(
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Share of assignments drawn from gold pairs, 0 to 1.",
    )
    min_gold_accuracy = forms.FloatField(
        label="Minimum gold accuracy",
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Annotators below this accuracy on gold pairs are paused; 0 never pauses.",
    )
    gold_min_answered = forms.IntegerField(
        label="Gold answered before judging", help_text="Gold pairs an annotator answers before that is judged."
    )
    gold_feedback = forms.BooleanField(
        required=False,
        label="Gold feedback",
        help_text="Annotators see on their My work page which gold pairs they answered right, and the right answer.",
    )
    retrain_every = forms.IntegerField(help_text="New human labels between two retrains of the reward model.")
    max_extra_labels = forms.IntegerField(
        label="Extra labels for surfaced pairs", help_text="How many labels beyond the overlap a surfaced pair gets."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, default in DEFAULT_WEIGHTS.items():
            self.fields[WEIGHT_PREFIX + key] = _default_field(key, default, WEIGHT_HELP[key])
        for key, default in DEFAULT_THRESHOLDS.items():
            self.fields[THRESHOLD_PREFIX + key] = _default_field(key, default, THRESHOLD_HELP[key])
        # Service errors on a setting that spans a fieldset (weights, thresholds), by setting name.
        self.setting_errors: dict[str, str] = {}

    @classmethod
    def initial_from(cls, campaign: Campaign) -> dict[str, Any]:
        """Return the form's values for a campaign: stored weights and thresholds filled, the rest blank."""
        initial = {name: getattr(campaign, name) for name in cls.base_fields}
        initial["strength_labels"] = f"{LABEL_SEPARATOR} ".join(campaign.strength_labels)
        initial |= {WEIGHT_PREFIX + key: value for key, value in campaign.priority_weights.items()}
        initial |= {THRESHOLD_PREFIX + key: value for key, value in campaign.surface_thresholds.items()}
        return initial

    def clean_instructions(self) -> str:
        # Browsers send textarea lines with CRLF; stored text uses LF, so an untouched field stays unchanged.
        return self.cleaned_data["instructions"].replace("\r\n", "\n")

    def clean_strength_labels(self) -> list[str]:
        text = self.cleaned_data["strength_labels"]
        return [label.strip() for label in text.split(LABEL_SEPARATOR) if label.strip()]

    def settings(self) -> dict[str, Any]:
        """Return the parsed settings by the names the services take; blank weights and thresholds left out."""
        data = self.cleaned_data
        settings = {name: data[name] for name in self.base_fields}
        settings["priority_weights"] = _filled(data, WEIGHT_PREFIX, DEFAULT_WEIGHTS)
        settings["surface_thresholds"] = _filled(data, THRESHOLD_PREFIX, DEFAULT_THRESHOLDS)
        return settings

    def changes_from(self, campaign: Campaign) -> dict[str, Any]:
        """Return the settings that differ from the campaign's: resubmitting a saved form changes nothing."""
        return {name: value for name, value in self.settings().items() if value != getattr(campaign, name)}

    def add_service_errors(self, exc: ApplicationError) -> None:
        """Show a refusal of the services: weights and thresholds on their fieldset, the rest on fields."""
        fields = dict(exc.extra.get("fields") or {})
        for setting in SET_SETTINGS & set(fields):
            self.setting_errors[setting] = fields.pop(setting)
        if fields or not self.setting_errors:
            service_errors_on_form(self, fields, exc.message)

    def sections(self) -> list[BoundSection]:
        return [
            BoundSection(
                title=section.title,
                note=section.note,
                fields=[self[name] for name in section.names],
                error=self.setting_errors.get(section.setting, ""),
            )
            for section in SECTIONS
        ]


def _filled(data: dict[str, Any], prefix: str, defaults: dict[str, float]) -> dict[str, float]:
    return {key: data[prefix + key] for key in defaults if data.get(prefix + key) is not None}


def posted_choice(form: forms.Form, name: str) -> str:
    """Return the form's parsed choice `name`, or raise the 400 that names the valid ones."""
    if not form.is_valid():
        valid = ", ".join(str(value) for value, _ in form.fields[name].choices)
        raise ApplicationError(f"Expected {name} to be one of {valid}; got {form.data.get(name)!r}.")
    return form.cleaned_data[name]


class StatusForm(forms.Form):
    """Parse the status a lead's button posts; which changes are allowed is the service's business."""

    status = forms.ChoiceField(choices=Campaign.Status.choices)


class InviteForm(forms.Form):
    """Parse "add a member or change their role"; who exists and which roles are allowed is the service's."""

    username = forms.CharField(
        max_length=150,
        help_text="An existing account; staff create accounts.",
        template_name="campaigns/invite_username_field.html",  # the help text stands after the button
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)


MEMBER_ACTIONS = ("pause", "resume", "remove")


class MemberActionForm(forms.Form):
    """Parse an action on one member; a pause carries the lead's reason, which the annotator is shown."""

    action = forms.ChoiceField(choices=[(action, action) for action in MEMBER_ACTIONS])
    reason = forms.CharField(required=False)
