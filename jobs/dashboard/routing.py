"""Websocket routes, mounted by ``jobqueue_site.asgi`` under the session/auth and Origin checks."""

from django.urls import path

from jobs.dashboard.consumer import DashboardConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
]
