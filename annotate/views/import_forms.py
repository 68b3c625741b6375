"""The column-mapping form of the import page: one select per role, filled with the previewed file's columns.

The form only turns fields into the mapping's JSON (`rewardlab.package.mapping`, whose docstring is the
reference) and back; whether the mapping is valid, and whether every row fits it, is the services' business.
"""

from __future__ import annotations

from django import forms

from annotate.exceptions import ApplicationError
from annotate.views.errors import service_errors_on_form

NO_COLUMN = ("", "—")
COLUMN_FIELDS = ("prompt", "image", "answer_1", "answer_2", "id", "preference_column", "fact_caption", "fact_answer")
# How the form asks where the preference is.
PREFERENCE_NONE, PREFERENCE_CHOSEN, PREFERENCE_COLUMN = "none", "chosen_rejected", "column"
# The fact names the reward model reads (rewardlab.lexical, rewardlab.features); other columns keep their names.
NAMED_FACTS = ("caption", "answer")
# The form field showing a service error about a part of the mapping (`mapping.answers[0]`, ...).
FIELD_OF_ERROR = {
    "mapping.id": "id",
    "mapping.prompt": "prompt",
    "mapping.image": "image",
    "mapping.answers": "answer_1",
    "mapping.answers[0]": "answer_1",
    "mapping.chosen": "answer_1",
    "mapping.answers[1]": "answer_2",
    "mapping.rejected": "answer_2",
    "mapping.preference": "preference",
    "mapping.preference.column": "preference_column",
    "mapping.preference.means": "means",
    "mapping.preference.values": "value_1",
    "mapping.facts.caption": "fact_caption",
    "mapping.facts.answer": "fact_answer",
    "mapping.source": "source",
}


class MappingForm(forms.Form):
    """Map a previewed file's columns to the prompt, image, answers, preference and facts of an item."""

    prompt = forms.ChoiceField(label="Prompt (the question)")
    image = forms.ChoiceField(help_text="A path inside the zip, or a data: URI.")
    answer_1 = forms.ChoiceField(label="Answer 1")
    answer_2 = forms.ChoiceField(label="Answer 2")
    id = forms.ChoiceField(required=False, label="Item id", help_text="Left out: a hash of the row.")
    preference = forms.ChoiceField(
        choices=[
            (PREFERENCE_NONE, "None: the pairs are to be labeled"),
            (PREFERENCE_CHOSEN, "Answer 1 is the chosen one, answer 2 the rejected one"),
            (PREFERENCE_COLUMN, "A column says which answer"),
        ],
        initial=PREFERENCE_NONE,
        widget=forms.RadioSelect,
        help_text="Becomes a prior label: it trains the model and never counts as a human label.",
    )
    preference_column = forms.ChoiceField(required=False, label="Preference column")
    means = forms.ChoiceField(
        choices=[("better", "is the better answer"), ("more_hallucinated", "is the more hallucinated answer")],
        initial="better",
        label="The answer its value names",
    )
    value_1 = forms.CharField(required=False, label="Value naming answer 1", help_text="As the file writes it: A, 1…")
    value_2 = forms.CharField(required=False, label="Value naming answer 2")
    fact_caption = forms.ChoiceField(required=False, label="Caption fact")
    fact_answer = forms.ChoiceField(required=False, label="Known answer fact")
    facts_other = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Other facts",
        help_text="Each kept under its column's name. Columns not mapped at all are kept in the item's meta.",
    )
    source = forms.CharField(required=False, max_length=100, help_text='The prior labels\' source; "mapping" if empty.')
    save_as = forms.CharField(
        required=False, max_length=100, label="Save this mapping as", help_text="To import the next file with it."
    )

    def __init__(self, *args, columns: tuple[str, ...], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        choices = [(column, column) for column in columns]
        for name in COLUMN_FIELDS:
            self.fields[name].choices = [NO_COLUMN, *choices]
        self.fields["facts_other"].choices = choices

    def mapping(self) -> dict:
        """Return the mapping's JSON; an empty field is left out, for the service to say what is missing."""
        data = self.cleaned_data
        answers = (data["answer_1"], data["answer_2"])
        if data["preference"] == PREFERENCE_CHOSEN:
            mapping: dict = {"chosen": answers[0], "rejected": answers[1]}
        else:
            mapping = {"answers": list(answers)}
        if data["preference"] == PREFERENCE_COLUMN:
            values = {value: number for number, value in ((1, data["value_1"]), (2, data["value_2"])) if value}
            mapping["preference"] = {"column": data["preference_column"], "means": data["means"], "values": values}
        facts = {name: data[f"fact_{name}"] for name in NAMED_FACTS if data[f"fact_{name}"]}
        facts |= {column: column for column in data["facts_other"]}
        optional = {"id": data["id"], "facts": facts, "source": data["source"].strip()}
        return {"prompt": data["prompt"], "image": data["image"], **mapping} | {k: v for k, v in optional.items() if v}

    def add_service_errors(self, exc: ApplicationError) -> None:
        """Show the service's reasons on the fields they are about; the rest above the form."""
        fields = exc.extra.get("fields") or {}
        shown = {_form_field(name): text for name, text in fields.items()}
        service_errors_on_form(self, shown, exc.message)


def _form_field(name: str) -> str:
    if name.startswith("mapping.preference.values"):
        return "value_1"
    return FIELD_OF_ERROR.get(name, name)


def mapping_initial(mapping: dict) -> dict:
    """Return the form's fields for a saved mapping's JSON, to start the next file from it."""
    preference = mapping.get("preference") or {}
    by_answer = {target: value for value, target in preference.get("values", {}).items()}
    facts = dict(mapping.get("facts") or {})
    chosen = "chosen" in mapping
    return {
        "prompt": mapping["prompt"],
        "image": mapping["image"],
        "answer_1": mapping["chosen"] if chosen else mapping["answers"][0],
        "answer_2": mapping["rejected"] if chosen else mapping["answers"][1],
        "id": mapping.get("id", ""),
        "preference": PREFERENCE_CHOSEN if chosen else PREFERENCE_COLUMN if preference else PREFERENCE_NONE,
        "preference_column": preference.get("column", ""),
        "means": preference.get("means", "better"),
        "value_1": by_answer.get(1, ""),
        "value_2": by_answer.get(2, ""),
        **{f"fact_{name}": facts.pop(name, "") for name in NAMED_FACTS},
        "facts_other": list(facts.values()),
        "source": mapping.get("source", ""),
    }
