"""URL routes: the admin, the API (jobs and schedules) and the dashboard."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("scheduling.urls")),
    path("", include("jobs.api.urls")),
    path("", include("jobs.dashboard.urls")),
]
