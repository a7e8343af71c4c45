"""`manage.py reprocess [--all]`: run stored raw bodies through today's parser."""

from contextlib import nullcontext

from django.core.management.base import BaseCommand

from runs.management.progress import progress_bar
from runs.models import RejectedDelivery, Run
from runs.reprocess import reprocess_quarantine, reprocess_runs


class Command(BaseCommand):
    help = (
        "Re-parse the quarantine's bodies (those not reprocessed yet): the ones that now parse are "
        "stored with their original arrival time and marked reprocessed. With --all, also re-parse "
        "every stored run from the delivery its state came from and re-apply the ones whose parsed "
        "state changed, counters included. Use after upgrading sinkdash's parser."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="stored runs too, not only the quarantine")
        parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")

    def handle(self, *args, all, dry_run, **options):
        waiting = RejectedDelivery.objects.filter(reprocessed_at__isnull=True).count()
        total = waiting + (Run.objects.count() if all else 0)
        progress = progress_bar(self.stdout)
        with progress or nullcontext():
            task = progress.add_task("reprocessing", total=total) if progress else None
            step = (lambda: progress.update(task, advance=1)) if progress else (lambda: None)
            quarantined = reprocess_quarantine(dry_run=dry_run, on_item=step)
            runs = reprocess_runs(dry_run=dry_run, on_item=step) if all else None
        prefix = "Would change (dry run)" if dry_run else "Reprocessed"
        self.stdout.write(f"{prefix}: {quarantined.line()}")
        if runs is not None:
            self.stdout.write(f"{prefix}: {runs.line()}")
            for run_id in runs.now_refused[:20]:
                self.stderr.write(f"run {run_id}: its body is refused by today's parser; left as it was")
