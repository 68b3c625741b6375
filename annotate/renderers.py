"""The project's form renderer: Django's form-rendering machinery, with the field markup written once.

`{{ form.name.as_field_group }}` renders a field's label, widget, errors and help text through
`FIELD_TEMPLATE`, so the pages' forms share one markup for them (ids, classes, aria-describedby).
"""

from __future__ import annotations

from django.forms.renderers import TemplatesSetting

FIELD_TEMPLATE = "partials/field.html"


class FormRenderer(TemplatesSetting):
    """Render forms with the engine of the TEMPLATES setting, each field group through `FIELD_TEMPLATE`.

    `TemplatesSetting` looks where the pages' own templates are (the project's templates/ folder), which
    Django's default renderer does not; Django's widget templates come from the `django.forms` app.
    """

    field_template_name = FIELD_TEMPLATE
