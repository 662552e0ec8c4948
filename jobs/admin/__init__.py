"""The operators' admin for jobs, dead letters and the workers page.

The admin never saves a job: every field is read-only, jobs cannot be added or
deleted here, and Retry / Cancel / Run now (list actions and detail-page
buttons) call ``jobs.services``, which owns every state change. The job list
stays fast on millions of rows: no ``COUNT(*)`` of the table, filter choices
from the registry and settings (no ``SELECT DISTINCT``), only indexed filters
and sort columns, no per-row queries. Payloads are shown through ``redact``.

Django's admin autodiscovery imports this package; importing the modules below
is what registers their ``ModelAdmin`` classes.
"""

from jobs.admin import dead_letters, jobs, workers

__all__ = ["dead_letters", "jobs", "workers"]
