from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from annotate.api import auth, campaigns, data, imports, labeling, model_runs, stats

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
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
