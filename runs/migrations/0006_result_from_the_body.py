"""A run no longer keeps its result and unknown fields as JSON text: both are in the raw body its
state came from (the delivery with the run's content_sha256), which sinkdash keeps anyway, and
pages read them from there (queries.state_of). They were a third of every run's row.

SQLite drops the columns with ALTER TABLE ... DROP COLUMN, which rewrites the runs table once
(about a minute at a million runs); the space is reused by new runs, or returned by
`manage.py prune --vacuum`. Going back refills both columns from the bodies."""

from django.db import migrations

BATCH = 2000


def refill(apps, schema_editor):
    from runs.payload import Refused, content  # the parser of the day: what reprocess would store

    Run = apps.get_model("runs", "Run")
    Delivery = apps.get_model("runs", "Delivery")
    last = 0
    while runs := list(Run.objects.filter(id__gt=last).order_by("id").only("id", "content_sha256")[:BATCH]):
        last = runs[-1].id
        bodies = {
            (run_id, sha): bytes(raw)
            for run_id, sha, raw in Delivery.objects.filter(run_id__in=[r.id for r in runs]).values_list(
                "run_id", "sha256", "raw"
            )
        }
        filled = []
        for run in runs:
            raw = bodies.get((run.id, run.content_sha256))
            try:
                if raw is not None:
                    run.result_json, run.extra_json = content(raw)
                    filled.append(run)
            except Refused:  # left at the defaults, as reprocess leaves a run its parser refuses
                pass
        Run.objects.bulk_update(filled, ["result_json", "extra_json"])


class Migration(migrations.Migration):
    dependencies = [("runs", "0005_compact_run_indexes")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, refill),
        migrations.RemoveField(model_name="run", name="result_json"),
        migrations.RemoveField(model_name="run", name="extra_json"),
    ]
