"""PostgreSQL only: tell the planner that a run's parameters key decides its API name and digest.

The same-parameters queries (the run page's "same parameters in other job runs", the run list's
parameters filter) ask for parameters_key, api_name and parameters_sha256 together: the key is a
hash of the other two, and they are checked as well because a 64-bit key may collide. Without
statistics the planner multiplies the three selectivities as if they were independent. For
parameters shared by some 1,700 of a million runs it expected 2 rows, read all 1,700 through a
bitmap scan and sorted them (11.8 ms, against 0.9 at 2,000 runs) instead of walking
run_same_parameters newest first and stopping at the page's limit. Functional-dependency
statistics let it estimate the three as the key alone. SQLite has no such statistics and plans
these queries by the index anyway."""

from django.db import migrations

NAME = "run_same_parameters_dependencies"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE STATISTICS IF NOT EXISTS {NAME} (dependencies)"
            " ON parameters_key, api_name, parameters_sha256 FROM runs_run"
        )
        schema_editor.execute("ANALYZE runs_run")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("runs", "0006_result_from_the_body")]

    operations = [migrations.RunPython(create, drop)]
