from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """The runtime: Redis broker, worker processes and `manage.py runworker`."""

    name = "workers"
