"""The quarantine's index carries each body's size, so that bounding the quarantine (after every
refused delivery) adds up sizes and picks what to drop without reading the rows: in SQLite a
column stored after the raw body is reached through the body's overflow pages."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0009_failure_groups_by_fingerprint'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='rejecteddelivery',
            name='rejected_recent',
        ),
        migrations.AddIndex(
            model_name='rejecteddelivery',
            index=models.Index(fields=['-received_at', '-id', 'size'], name='rejected_recent'),
        ),
    ]
