"""The pages: sign in, campaigns, labeling, imports and item images (the REST API is under /api/)."""

from __future__ import annotations

from django.urls import path, re_path

from annotate.views import auth, campaigns, images, imports, label

urlpatterns = [
    path("login/", auth.login, name="login"),
    path("logout/", auth.logout, name="logout"),
    path("", campaigns.campaign_list, name="campaign-list"),
    path("campaigns/<int:campaign_id>/label/", label.label_page, name="label-page"),
    path("campaigns/<int:campaign_id>/label/submit/", label.label_submit, name="label-submit"),
    path("campaigns/<int:campaign_id>/label/skip/", label.label_skip, name="label-skip"),
    path("campaigns/<int:campaign_id>/import/", imports.import_page, name="import-page"),
    path("imports/<int:job_id>/status/", imports.import_status, name="import-status"),
    re_path(r"^images/(?P<sha256>[0-9a-f]{64})/$", images.image_file, name="image-file"),
]
