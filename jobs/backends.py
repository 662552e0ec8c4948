"""Kept so ``TASKS = {"default": {"BACKEND": "jobs.backends.JobQueueBackend"}}`` and the documented
``jobs.backends.*`` paths keep working; the adapter lives in ``jobs.tasks_backend``."""

from jobs.tasks_backend.backend import AttemptFailed, JobQueueBackend, JobQueueTask, WorkerLost  # noqa: F401
