"""PostgreSQL only: compress the columns that hold what a delivery brings (its raw bytes, a run's
error message and parameters) with LZ4 instead of PostgreSQL's default, pglz.

When a row passes about 2 KB, PostgreSQL compresses its largest values: every delivery of the
sink's ordinary ~2 KB bodies is compressed, while the storing lock is held. Measured on PostgreSQL
15, inserting one value at a time:
- a scraped page of 1.55 MB: 36.7 ms with pglz, which then gave up and stored it uncompressed,
  against 7.3 ms with LZ4, stored in 1.04 MB;
- the ingest benchmark's 1.9 MB body: 9.4 against 2.7 ms, 26.6 against 7.5 KB stored;
- the benchmark's 2 KB bodies, a batch of 8 in one statement: 72-80 against 133-142 µs of
  PostgreSQL's time, each stored in 296 bytes against 287.
LZ4 needs a server built with it (PostgreSQL 14 and later, as Debian's and the official images
are); on one without it the columns keep pglz. Values stored before keep their compression until
rewritten."""

from django.db import migrations

COLUMNS = {
    "runs_delivery": ("raw",),
    "runs_rejecteddelivery": ("raw",),
    "runs_run": ("error_message", "parameters_json"),
}


def _set(schema_editor, method: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT %s = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'", [method])
        row = cursor.fetchone()
    if not (row and row[0]):
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} SET COMPRESSION {method}" for column in columns)
        schema_editor.execute(f"ALTER TABLE {table} {changes}")


def to_lz4(apps, schema_editor):
    _set(schema_editor, "lz4")


def to_pglz(apps, schema_editor):
    _set(schema_editor, "pglz")


class Migration(migrations.Migration):
    dependencies = [("runs", "0007_same_parameters_statistics")]

    operations = [migrations.RunPython(to_lz4, to_pglz)]
