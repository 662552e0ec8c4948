"""Fewer index writes per job (every claim and finish is a non-HOT UPDATE that touches each index).

- ``job_idem_key`` and the owner index become partial (most jobs have neither).
- ``JobAttempt.job`` loses its own index: ``attempt_job_number_unique`` (job, number) serves it.

The foreign keys stay as they are: only their indexes change, so the database side is written out
instead of the AlterField Django would generate (which drops and re-validates both constraints).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

OWNER_FK = models.ForeignKey(
    blank=True,
    db_index=False,
    null=True,
    on_delete=django.db.models.deletion.SET_NULL,
    related_name="+",
    to=settings.AUTH_USER_MODEL,
)
ATTEMPT_JOB_FK = models.ForeignKey(
    db_index=False,
    on_delete=django.db.models.deletion.CASCADE,
    related_name="attempt_set",
    to="jobs.job",
)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(model_name="job", name="job_idem_key"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("idempotency_key__isnull", False)),
                fields=["idempotency_key"],
                name="job_idem_key",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="job", name="owner", field=OWNER_FK),
                migrations.AlterField(model_name="jobattempt", name="job", field=ATTEMPT_JOB_FK),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "jobs_job_owner_id_4c884775"',
                    'CREATE INDEX "jobs_job_owner_id_4c884775" ON "jobs_job" ("owner_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "jobs_jobattempt_job_id_05797094"',
                    'CREATE INDEX "jobs_jobattempt_job_id_05797094" ON "jobs_jobattempt" ("job_id")',
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("owner__isnull", False)), fields=["owner"], name="job_owner"
            ),
        ),
    ]
