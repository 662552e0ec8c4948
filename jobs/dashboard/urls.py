"""Dashboard pages (/, /jobs/<id>/, /create/); the websocket route is in ``routing.py``."""

from django.urls import path

from jobs.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job"),
    path("create/", views.create, name="create"),
]
