"""An index on failure groups' fingerprints, for storing's look-up of a batch's groups: without it
every batch with a failure read all of its project's groups (5 ms a batch at 50,000 groups on
both databases). The table holds one row per cause, so building the index is quick."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0008_lz4_for_large_values'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='failuregroup',
            index=models.Index(fields=['fingerprint', 'project', 'api_name', 'error_code'], name='failure_group_by_fingerprint'),
        ),
    ]
