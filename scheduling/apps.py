from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """Cron schedules and `manage.py runscheduler` (see issue: cron schedules)."""

    name = "scheduling"
