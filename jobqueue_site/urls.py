"""URL routes: the admin now; the API and the dashboard join as they are built."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
