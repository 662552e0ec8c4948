from django.apps import AppConfig
from django.conf import settings


class JobsConfig(AppConfig):
    """The domain: jobs, attempts, dead letters, the registry and the services that move jobs."""

    name = "jobs"

    def ready(self) -> None:
        """Wire the adapters to the engine here, so the engine never imports them."""
        from django.core import checks

        from jobs import metrics, registry, tasks_backend
        from jobs.tasks_backend.checks import check_declared_tasks

        # The resolver first: anything a discovered module looks up may already be a task's module path.
        tasks_backend.install()
        if settings.JOBQUEUE_DEMO_TYPES:
            from jobs import demo_types  # noqa: F401  (registers noop, email.send, …)
        registry.autodiscover()
        metrics.set_type_lookup(registry.find)  # labels stay bounded by the registry
        checks.register(check_declared_tasks, "jobqueue")
