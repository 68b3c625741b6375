"""Server-rendered pages with htmx: thin function views that parse, call one service and render.

Modules: `auth` (login, logout, the login decorator), `campaigns` (home), `label` (the labeling page),
`imports` (a lead's uploads), `model_runs` (the reward model, its runs and "Retrain now"), `surfaced`
(the pairs the model sent back, with its scores beside the labels), `images` (item images behind access
checks) and `errors` (domain errors to the error partial). Chart geometry is `annotate.charts`.
`image_url` is here for the REST API, which shows the same image URLs.
"""

from __future__ import annotations

from annotate.views.images import image_url

__all__ = ["image_url"]
