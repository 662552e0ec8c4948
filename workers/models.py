"""The ``Worker`` placeholder: workers live only as Redis heartbeats, never as rows.

It exists so the admin index lists a Workers page under this app like any model
(``jobs.admin.workers`` serves it from ``Broker.workers()``). Unmanaged with no
default permissions, so Django creates neither a table nor permissions for it.
"""

from __future__ import annotations

from django.db import models


class Worker(models.Model):
    """Placeholder so the admin index lists Workers; never queried (managed = False, no table)."""

    class Meta:
        managed = False
        app_label = "workers"
        verbose_name = "worker"
        verbose_name_plural = "workers"
        default_permissions = ()
