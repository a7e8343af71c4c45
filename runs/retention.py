"""Retention: deleting runs older than a cut-off, with their deliveries, counters kept exact.

Runs go in short transactions of a few hundred, oldest first, so the webhook waits at most one
batch for the write lock. Each run's counter contribution is taken back through
`ingest.Tally.add(run, -1)`, the same code that added it, written once per batch. The latest run of each failure group
(its sample) is never deleted, so every group still links to an example.
"""

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Sum

from runs.counters import Tally
from runs.ingest import take_store_lock
from runs.models import Delivery, FailureDay, FailureGroup, FailureJob, JobRun, Run, RunTally

BATCH_SIZE = 500

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw]?)\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "days"}


def parse_age(text: str) -> timedelta:
    """"30d", "12h", "90m", "2w"; a bare number is days."""
    match = _AGE.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an age like 30d, 12h, 90m or 2w")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


@dataclass
class PruneReport:
    runs: int = 0
    deliveries: int = 0
    bytes: int = 0  # the deliveries' raw bodies
    kept_samples: int = 0  # old runs kept because a failure group shows them
    emptied: Counter = field(default_factory=Counter)  # rows left with nothing to count, removed

    def line(self) -> str:
        text = (
            f"{self.runs} runs, {self.deliveries} deliveries, {_size(self.bytes)} of raw bodies; "
            f"kept {self.kept_samples} old runs that failure groups show as their latest"
        )
        if self.emptied:
            text += "; removed emptied " + ", ".join(f"{n} {what}" for what, n in sorted(self.emptied.items()))
        return text


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def candidates(cutoff: datetime, *, keep_failed: bool = False):
    """Runs last received before the cut-off, except failure groups' samples."""
    runs = Run.objects.filter(last_received_at__lt=cutoff)
    if keep_failed:
        runs = runs.exclude(status="failed")
    return runs.exclude(Exists(FailureGroup.objects.filter(sample_run=OuterRef("pk"))))


def prune(
    cutoff: datetime,
    *,
    keep_failed: bool = False,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[PruneReport], None] = lambda report: None,
) -> PruneReport:
    report = PruneReport()
    old = Run.objects.filter(last_received_at__lt=cutoff)
    report.kept_samples = old.filter(
        Exists(FailureGroup.objects.filter(sample_run=OuterRef("pk")))
    ).count()
    if dry_run:
        runs = candidates(cutoff, keep_failed=keep_failed)
        report.runs = runs.count()
        totals = Delivery.objects.filter(run__in=runs).aggregate(n=Count("id"), size=Sum("size"))
        report.deliveries, report.bytes = totals["n"], totals["size"] or 0
        return report
    while _prune_batch(cutoff, keep_failed, batch_size, report):
        on_batch(report)
    return report


def _prune_batch(cutoff: datetime, keep_failed: bool, batch_size: int, report: PruneReport) -> bool:
    with transaction.atomic():
        take_store_lock()  # it writes counters
        # Chosen and locked inside the transaction, so a run that a delivery refreshed a moment
        # ago (or that just became a failure group's sample) is no longer among them.
        oldest = candidates(cutoff, keep_failed=keep_failed).order_by("last_received_at", "id")
        runs = list(oldest.select_for_update()[:batch_size])
        if not runs:
            return False
        ids = [run.pk for run in runs]
        tally = Tally()  # the batch's counter changes, written once per counter row
        for run in runs:
            tally.add(run, -1)
        tally.write()
        totals = Delivery.objects.filter(run_id__in=ids).aggregate(n=Count("id"), size=Sum("size"))
        Run.objects.filter(pk__in=ids).delete()  # the deliveries go with them (cascade)
        report.runs += len(ids)
        report.deliveries += totals["n"]
        report.bytes += totals["size"] or 0
        _remove_emptied(runs, report)
    return True


def _remove_emptied(runs: list[Run], report: PruneReport) -> None:
    """Counter rows that now count nothing. Each is checked against the runs table as well as its
    counter, so a row that still has runs is never removed whatever its counter says."""
    job_runs = {run.job_run_id for run in runs if run.job_run_id}
    groups = {run.failure_group_id for run in runs if run.failure_group_id}
    buckets = {(run.project_id, run.first_received_at.replace(minute=0, second=0, microsecond=0)) for run in runs}

    empty_job_runs = JobRun.objects.filter(pk__in=job_runs, total=0).exclude(
        Exists(Run.objects.filter(job_run=OuterRef("pk")))
    )
    report.emptied["job runs"] += empty_job_runs.delete()[1].get(JobRun._meta.label, 0)
    emptied_days = FailureDay.objects.filter(group_id__in=groups, count__lte=0).delete()
    report.emptied["failure days"] += emptied_days[1].get(FailureDay._meta.label, 0)
    FailureJob.objects.filter(group_id__in=groups, count__lte=0).delete()
    empty_groups = FailureGroup.objects.filter(pk__in=groups, count__lte=0).exclude(
        Exists(Run.objects.filter(failure_group=OuterRef("pk")))
    )
    report.emptied["failure groups"] += empty_groups.delete()[1].get(FailureGroup._meta.label, 0)
    for project_id, hour in buckets:
        deleted = RunTally.objects.filter(project_id=project_id, hour=hour, count__lte=0).delete()
        report.emptied["hourly tallies"] += deleted[1].get(RunTally._meta.label, 0)
    for key in [k for k, n in report.emptied.items() if not n]:
        del report.emptied[key]


def reclaim_space(*, vacuum: bool) -> str:
    """Give the freed pages back to the file system, and say how.

    SQLite keeps deleted pages in the file for reuse. With auto_vacuum=INCREMENTAL,
    `PRAGMA incremental_vacuum` returns them at once and cheaply; otherwise only a full `VACUUM`
    does, which rewrites the whole file and holds the write lock meanwhile, so it runs only on
    request (--vacuum). PostgreSQL's autovacuum makes the space reusable by itself.
    """
    if connection.vendor != "sqlite":
        if vacuum:
            with connection.cursor() as cursor:
                for table in (Run._meta.db_table, Delivery._meta.db_table):
                    cursor.execute(f"VACUUM {connection.ops.quote_name(table)}")
            return "ran VACUUM on the runs and deliveries tables (space reusable, not returned)"
        return "PostgreSQL's autovacuum makes the space reusable; nothing else to do"
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA auto_vacuum")
        mode = cursor.fetchone()[0]
        before = _sqlite_bytes(cursor)
        if mode == 2:
            cursor.execute("PRAGMA incremental_vacuum")
            cursor.fetchall()
            how = "PRAGMA incremental_vacuum"
        elif mode == 1:
            return "auto_vacuum=FULL already returned the space at each commit"
        elif vacuum and connection.in_atomic_block:
            return "VACUUM cannot run inside a transaction; skipped"
        elif vacuum:
            cursor.execute("VACUUM")
            how = "VACUUM"
        else:
            cursor.execute("PRAGMA freelist_count")
            free = cursor.fetchone()[0] * _page_size(cursor)
            return (
                f"{_size(free)} of free pages stay in the database file for new runs "
                "(auto_vacuum is off); --vacuum returns them to the disk"
            )
        after = _sqlite_bytes(cursor)
    return f"{how}: the database file shrank by {_size(max(before - after, 0))}"


def _page_size(cursor) -> int:
    cursor.execute("PRAGMA page_size")
    return cursor.fetchone()[0]


def _sqlite_bytes(cursor) -> int:
    cursor.execute("PRAGMA page_count")
    return cursor.fetchone()[0] * _page_size(cursor)
