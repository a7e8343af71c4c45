"""`manage.py prune --older-than 30d`: delete old runs and their deliveries, counters kept exact.

Run it from cron (or a systemd timer) to apply $SINKDASH_RETENTION_DAYS every night:
    15 3 * * *  cd /srv/sinkdash && .venv/bin/python manage.py prune --quiet-if-nothing
"""

from contextlib import nullcontext

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from runs.management.progress import progress_bar
from runs.retention import BATCH_SIZE, candidates, parse_age, prune, reclaim_space


class Command(BaseCommand):
    help = (
        "Delete runs last received longer ago than --older-than (default: $SINKDASH_RETENTION_DAYS "
        "days), with their deliveries, in short batches so the webhook is not held up. Counters "
        "and failure groups stay exact; the latest run of each failure group is kept. SQLite space: "
        "returned with PRAGMA incremental_vacuum when the database has auto_vacuum=INCREMENTAL, "
        "otherwise left for new runs unless --vacuum runs a full VACUUM."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", metavar="AGE", help="30d, 12h, 90m, 2w (a bare number is days)")
        parser.add_argument("--keep-failed", action="store_true", help="keep failed runs whatever their age")
        parser.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
        parser.add_argument(
            "--vacuum",
            action="store_true",
            help="afterwards VACUUM the SQLite file (rewrites it; needs free disk space of its size)",
        )
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"runs per transaction (default {BATCH_SIZE})")
        parser.add_argument(
            "--quiet-if-nothing", action="store_true", help="print nothing when nothing is old enough (for cron)"
        )

    def handle(self, *args, older_than, keep_failed, dry_run, vacuum, batch_size, quiet_if_nothing, **options):
        age_text = older_than
        if age_text is None:
            days = settings.RETENTION_DAYS
            if not days:
                raise CommandError("give --older-than AGE or set $SINKDASH_RETENTION_DAYS", returncode=2)
            age_text = f"{days}d"
        try:
            age = parse_age(age_text)
        except ValueError as error:
            source = "--older-than" if older_than is not None else "$SINKDASH_RETENTION_DAYS"
            raise CommandError(f"{source}: {error}", returncode=2) from None
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1", returncode=2)
        cutoff = timezone.now() - age

        progress = None if dry_run else progress_bar(self.stdout)
        with progress or nullcontext():
            if progress:
                task = progress.add_task("pruning", total=candidates(cutoff, keep_failed=keep_failed).count())
            report = prune(
                cutoff,
                keep_failed=keep_failed,
                dry_run=dry_run,
                batch_size=batch_size,
                on_batch=(lambda r: progress.update(task, completed=r.runs)) if progress else (lambda r: None),
            )
        if quiet_if_nothing and not report.runs:
            return
        when = cutoff.strftime("%Y-%m-%d %H:%M UTC")
        if dry_run:
            self.stdout.write(f"Would delete (last received before {when}): {report.line()}")
            return
        self.stdout.write(f"Deleted (last received before {when}): {report.line()}")
        if report.runs or vacuum:
            self.stdout.write(f"Space: {reclaim_space(vacuum=vacuum)}")
