"""The pages: sign in, campaigns, labeling, imports, the reward model, surfaced pairs, exports and item images.

The REST API is under /api/.
"""

from __future__ import annotations

from django.urls import path, re_path

from annotate.views import (
    auth,
    campaigns,
    dashboard,
    exports,
    images,
    imports,
    label,
    members,
    model_runs,
    my_work,
    surfaced,
)

urlpatterns = [
    path("login/", auth.login, name="login"),
    path("logout/", auth.logout, name="logout"),
    path("", campaigns.campaign_list, name="campaign-list"),
    path("campaigns/new/", campaigns.campaign_new, name="campaign-new"),
    path("campaigns/instructions-preview/", campaigns.instructions_preview, name="instructions-preview"),
    path("campaigns/<int:campaign_id>/settings/", campaigns.campaign_settings, name="campaign-settings"),
    path("campaigns/<int:campaign_id>/status/", campaigns.campaign_status, name="campaign-status"),
    path("campaigns/<int:campaign_id>/members/", members.members_page, name="campaign-members"),
    path("campaigns/<int:campaign_id>/members/<int:membership_id>/", members.member_update, name="campaign-member"),
    path("campaigns/<int:campaign_id>/label/", label.label_page, name="label-page"),
    path("campaigns/<int:campaign_id>/label/submit/", label.label_submit, name="label-submit"),
    path("campaigns/<int:campaign_id>/label/skip/", label.label_skip, name="label-skip"),
    path("campaigns/<int:campaign_id>/label/previous/", label.label_previous, name="label-previous"),
    path("campaigns/<int:campaign_id>/label/edit/", label.label_edit, name="label-edit"),
    path("campaigns/<int:campaign_id>/my-work/", my_work.my_work_page, name="my-work-page"),
    path("campaigns/<int:campaign_id>/import/", imports.import_page, name="import-page"),
    path("campaigns/<int:campaign_id>/import/preview/", imports.import_preview, name="import-preview"),
    path("campaigns/<int:campaign_id>/import/uploads/<int:upload_id>/", imports.import_map, name="import-map"),
    path("imports/<int:job_id>/status/", imports.import_status, name="import-status"),
    path("campaigns/<int:campaign_id>/model/", model_runs.model_page, name="model-page"),
    path("model-runs/<int:run_id>/status/", model_runs.model_run_status, name="model-run-status"),
    path("campaigns/<int:campaign_id>/surfaced/", surfaced.surfaced_page, name="surfaced-page"),
    path("campaigns/<int:campaign_id>/dashboard/", dashboard.dashboard_page, name="dashboard-page"),
    path("campaigns/<int:campaign_id>/exports/", exports.exports_page, name="exports-page"),
    path("exports/<int:snapshot_id>/status/", exports.export_status, name="export-status"),
    re_path(r"^images/(?P<sha256>[0-9a-f]{64})/$", images.image_file, name="image-file"),
]
