"""Routes under /api/ (and /metrics for Prometheus); included at the site root by jobqueue_site.urls."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from jobs.api import views
from jobs.api.authentication import AUTHENTICATION_CLASSES
from jobs.api.permissions import CanReadApiDocs

DOCS_ACCESS = {"authentication_classes": AUTHENTICATION_CLASSES, "permission_classes": (CanReadApiDocs,)}

router = SimpleRouter()
router.register("jobs", views.JobViewSet, basename="job")
router.register("dead-letters", views.DeadLetterViewSet, basename="dead-letter")

urlpatterns = [
    path("api/", views.ApiRootView.as_view(), name="api-root"),
    path("api/", include(router.urls)),
    path("api/workers/", views.WorkerListView.as_view(), name="api-workers"),
    path("api/job-types/", views.JobTypeListView.as_view(), name="api-job-types"),
    path("api/stats/", views.StatsView.as_view(), name="api-stats"),
    path("api/metrics/", views.MetricsView.as_view(), name="api-metrics"),
    path("api/health/", views.HealthView.as_view(), name="api-health"),
    # OpenAPI 3 schema and Swagger UI, whose assets come from drf-spectacular-sidecar (no CDN). No Redoc:
    # drf-spectacular's Redoc page pulls its fonts from Google.
    # Both need a signed-in user unless JOBQUEUE_PUBLIC_API_DOCS=1 (checked per request).
    path("api/schema/", SpectacularAPIView.as_view(**DOCS_ACCESS), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema", **DOCS_ACCESS), name="api-docs"),
    # Session login/logout for the browsable API.
    path("api/auth/", include("rest_framework.urls")),
    path("metrics", views.PrometheusView.as_view(), name="prometheus-metrics"),
]
