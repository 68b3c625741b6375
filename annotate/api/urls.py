from csp.constants import NONCE, SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from annotate.api import auth, campaigns, data, exports, imports, labeling, model_runs, stats
from annotate.api.errors import not_found

# The Content-Security-Policy (settings) widened for the two documentation pages and nothing else, so a page of
# user data never runs under it. Swagger UI and Redoc (served from drf-spectacular-sidecar, never a CDN) start
# from one inline script, which templates/drf_spectacular/ marks with the request's nonce; Swagger UI's
# stylesheet draws its icons as `data:` images, and Redoc injects <style> elements at run time
# (styled-components, which cannot take our nonce) and parses the schema in a `blob:` worker.
swagger_policy = csp_update({"img-src": ["data:"], "style-src": [NONCE]})
redoc_policy = csp_update({"img-src": ["data:"], "style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})

v1 = [
    path("auth/token/", auth.TokenCreateApi.as_view(), name="api-token"),
    path("users/", auth.UserCreateApi.as_view(), name="api-users"),
    path("campaigns/", campaigns.CampaignsApi.as_view(), name="api-campaigns"),
    path("campaigns/<int:campaign_id>/", campaigns.CampaignDetailApi.as_view(), name="api-campaign"),
    path("campaigns/<int:campaign_id>/members/", campaigns.CampaignMembersApi.as_view(), name="api-members"),
    path("campaigns/<int:campaign_id>/imports/", imports.CampaignImportsApi.as_view(), name="api-imports"),
    path("imports/<int:job_id>/", imports.ImportJobDetailApi.as_view(), name="api-import"),
    path("campaigns/<int:campaign_id>/next-pair/", labeling.NextPairApi.as_view(), name="api-next-pair"),
    path("annotations/", labeling.AnnotationCreateApi.as_view(), name="api-annotations"),
    path("annotations/<int:annotation_id>/", labeling.AnnotationDetailApi.as_view(), name="api-annotation"),
    path("assignments/<int:assignment_id>/skip/", labeling.AssignmentSkipApi.as_view(), name="api-skip"),
    path("campaigns/<int:campaign_id>/pairs/", data.CampaignPairsApi.as_view(), name="api-pairs"),
    path(
        "campaigns/<int:campaign_id>/annotations/",
        labeling.CampaignAnnotationsApi.as_view(),
        name="api-campaign-annotations",
    ),
    path("campaigns/<int:campaign_id>/stats/", stats.CampaignStatsApi.as_view(), name="api-stats"),
    path("campaigns/<int:campaign_id>/models/", model_runs.CampaignModelRunsApi.as_view(), name="api-models"),
    path("models/<int:run_id>/", model_runs.ModelRunDetailApi.as_view(), name="api-model"),
    path("campaigns/<int:campaign_id>/exports/", exports.CampaignExportsApi.as_view(), name="api-exports"),
    path("exports/<int:export_id>/", exports.ExportSnapshotDetailApi.as_view(), name="api-export"),
    path("exports/<int:export_id>/download/", exports.ExportSnapshotDownloadApi.as_view(), name="api-export-download"),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", swagger_policy(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc/", redoc_policy(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    # Last: any other address ending in a slash is a JSON 404; one without the slash still gets APPEND_SLASH's redirect.
    re_path(r"^[\s\S]*/$", not_found, name="api-not-found"),
]
