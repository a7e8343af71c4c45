"""Drop the single-column indexes Django adds to foreign keys where a composite index already
starts with that column (see the comments in runs.models). Each is one B-tree less to write for
every stored run and delivery.

The schema change is done by hand: on SQLite, Django's AlterField would copy the whole runs table
once per field to drop an index, which takes minutes on a database of a million runs."""

import django.db.models.deletion
from django.db import migrations, models

# (model, column): the composite index that takes over is named in runs.models.
COVERED = [
    ("delivery", "run_id"),  # delivery_by_run_sha
    ("run", "project_id"),  # run_by_project
    ("run", "job_id"),  # run_by_job
    ("run", "job_run_id"),  # run_by_job_run
    ("run", "failure_group_id"),  # run_by_failure_group
    # PostgreSQL only: the varchar_pattern_ops index Django adds beside a unique text column serves
    # LIKE 'prefix%', and no query asks that of run ids (a pasted id uses the unique index).
    ("run", "run_id"),
]


def _single_column_indexes(schema_editor, table: str, column: str) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, info in constraints.items()
        if info["index"] and not info["unique"] and not info["primary_key"] and info["columns"] == [column]
    ]


def drop_covered(apps, schema_editor):
    for model_name, column in COVERED:
        table = apps.get_model("runs", model_name)._meta.db_table
        for name in _single_column_indexes(schema_editor, table, column):
            schema_editor.execute(schema_editor._delete_index_sql(apps.get_model("runs", model_name), name))


def restore(apps, schema_editor):
    for model_name, column in COVERED:
        model = apps.get_model("runs", model_name)
        if column == "run_id":
            continue  # only PostgreSQL had it; a migration that alters run_id makes it again
        field = model._meta.get_field(column.removesuffix("_id"))
        if not _single_column_indexes(schema_editor, model._meta.db_table, column):
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0003_failure_jobs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_covered, restore)],
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="run",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="deliveries", to="runs.run"),
                ),
                migrations.AlterField(
                    model_name="run",
                    name="failure_group",
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="runs", to="runs.failuregroup"),
                ),
                migrations.AlterField(
                    model_name="run",
                    name="job",
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="runs", to="runs.job"),
                ),
                migrations.AlterField(
                    model_name="run",
                    name="job_run",
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="runs", to="runs.jobrun"),
                ),
                migrations.AlterField(
                    model_name="run",
                    name="project",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="runs", to="runs.project"),
                ),
            ],
        ),
    ]
