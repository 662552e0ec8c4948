from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """Cron schedules, ``manage.py runscheduler`` (fires them) and ``manage.py prunejobs``."""

    name = "scheduling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from scheduling import checks  # noqa: F401  (registers the system checks)
        from scheduling.models import Schedule
        from scheduling.signals import schedule_changed

        post_save.connect(schedule_changed, sender=Schedule, dispatch_uid="scheduling.schedule_saved")
        post_delete.connect(schedule_changed, sender=Schedule, dispatch_uid="scheduling.schedule_deleted")
