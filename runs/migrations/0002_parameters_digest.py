import json

from django.db import migrations, models

from runs.payload import parameters_digest


def backfill(apps, schema_editor):
    """Digest the parameters of runs stored before the column existed, in batches."""
    Run = apps.get_model("runs", "Run")
    last = 0
    while True:
        batch = list(Run.objects.filter(id__gt=last).order_by("id").only("id", "parameters_json")[:2000])
        if not batch:
            return
        for run in batch:
            run.parameters_sha256 = parameters_digest(json.loads(run.parameters_json))
        Run.objects.bulk_update(batch, ["parameters_sha256"])
        last = batch[-1].id


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="parameters_sha256",
            field=models.CharField(
                blank=True, help_text="sha256 of the parameters with sorted keys.", max_length=64
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["project", "api_name", "parameters_sha256", "-id"], name="run_same_parameters"
            ),
        ),
    ]
