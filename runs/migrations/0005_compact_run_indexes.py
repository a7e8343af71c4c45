"""Smaller run indexes, so that the ones every stored run touches stay in memory at millions of runs.

- run_same_parameters holds a 64-bit key of (API, parameters digest) instead of the API name and
  the 64-character digest (payload.parameters_key): about a sixth of the size. Its entries go to
  random places in the index, so once it no longer fits the page cache, every stored run read
  a page of it back from the file; at a million runs that was a fifth of an import's time.
- run_by_error_code and run_by_failure_group leave out the runs without an error code or group:
  most runs, which no query on those indexes asks for.

parameters_key is added nullable, which SQLite does with ALTER TABLE (a NOT NULL column with a
default would make Django copy the whole table), and filled for the runs already stored.
"""

import hashlib

from django.db import migrations, models
from django.db.models import Q

BATCH = 5000


def parameters_key(api_name: str, digest: str) -> int:
    # As runs.payload.parameters_key defines it at this migration (the stored keys must match it).
    hashed = hashlib.sha256(f"{api_name}\n{digest}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(hashed[:8], "big", signed=True)


def fill_keys(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    table = schema_editor.quote_name(Run._meta.db_table)
    last = 0
    with schema_editor.connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT id, api_name, parameters_sha256 FROM {table} WHERE id > %s ORDER BY id LIMIT %s",
                [last, BATCH],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            cursor.executemany(
                f"UPDATE {table} SET parameters_key = %s WHERE id = %s",
                [(parameters_key(api, digest), pk) for pk, api, digest in rows],
            )
            last = rows[-1][0]


class Migration(migrations.Migration):
    dependencies = [("runs", "0004_fewer_run_indexes")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="parameters_key",
            field=models.BigIntegerField(
                blank=True, null=True, help_text="payload.parameters_key(api_name, parameters_sha256)."
            ),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="run", name="run_same_parameters"),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["project", "parameters_key", "-id"], name="run_same_parameters"),
        ),
        migrations.RemoveIndex(model_name="run", name="run_by_error_code"),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["error_code", "-id"], condition=~Q(error_code=""), name="run_by_error_code"),
        ),
        migrations.RemoveIndex(model_name="run", name="run_by_failure_group"),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["failure_group", "-id"], condition=Q(failure_group__isnull=False), name="run_by_failure_group"
            ),
        ),
    ]
