from django.apps import AppConfig


class JobsConfig(AppConfig):
    """The domain: jobs, attempts, dead letters, the registry and the services that move jobs."""

    name = "jobs"

    def ready(self) -> None:
        from jobs import checks  # noqa: F401  (registers the django.tasks system checks)
        from jobs.registry import autodiscover

        autodiscover()
