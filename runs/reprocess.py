"""Reprocessing: running stored raw bodies through today's parser, so a parser fix reaches old data
without anyone resending it.

Quarantined bodies that now parse are stored as if they had arrived when they first did. Stored
runs (`reprocess --all`) are re-read from the delivery their state came from (Run.content_sha256);
a run whose parsed state differs is re-applied, its counters moved out and back in through
`ingest.reapply`, exactly as an update by a new delivery would.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from runs.ingest import STATE_FIELDS, Incoming, reapply, store_many, take_store_lock
from runs.models import Delivery, RejectedDelivery, Run
from runs.payload import ParsedRun, Refused, parse

BATCH_SIZE = 200  # raw bodies reach several MB; a batch holds them all in memory at once


@dataclass
class QuarantineReport:
    examined: int = 0
    stored: Counter = field(default_factory=Counter)  # created, updated, duplicate, stale
    still_refused: int = 0

    def line(self) -> str:
        stored = sum(self.stored.values())
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.stored.items()))
        return (
            f"quarantine: {self.examined} bodies examined, {stored} now stored"
            + (f" ({kinds})" if kinds else "")
            + f", {self.still_refused} still refused"
        )


@dataclass
class RunsReport:
    examined: int = 0
    changed: int = 0
    fields: Counter = field(default_factory=Counter)  # which fields changed, over all runs
    now_refused: list[str] = field(default_factory=list)  # run ids whose body today's parser refuses
    missing_body: int = 0

    def line(self) -> str:
        text = f"runs: {self.examined} examined, {self.changed} changed"
        if self.fields:
            text += " (" + ", ".join(f"{name} in {n}" for name, n in self.fields.most_common()) + ")"
        text += f", {len(self.now_refused)} now refused (left as they were)"
        if self.missing_body:
            text += f", {self.missing_body} without their body"
        return text


def reprocess_quarantine(
    *, dry_run: bool = False, on_item: Callable[[], None] = lambda: None
) -> QuarantineReport:
    """Every quarantined body not yet reprocessed, oldest first. One that now parses is stored
    with its original arrival time and marked reprocessed (kept, so the quarantine page can show
    what became of it); one still refused gets today's reason."""
    report = QuarantineReport()
    waiting = RejectedDelivery.objects.filter(reprocessed_at__isnull=True).order_by("id")
    last = 0
    while batch := list(waiting.filter(id__gt=last)[:BATCH_SIZE]):
        last = batch[-1].id
        parsed: list[tuple[RejectedDelivery, Incoming]] = []
        for rejected in batch:
            report.examined += 1
            on_item()
            raw = bytes(rejected.raw)
            try:
                parsed.append((rejected, Incoming(
                    parse(raw), raw, rejected.received_at, rejected.headers_json, rejected.source
                )))  # fmt: skip
            except Refused as refusal:
                report.still_refused += 1
                if not dry_run and (refusal.reason, refusal.field) != (rejected.reason, rejected.field):
                    RejectedDelivery.objects.filter(pk=rejected.pk).update(
                        reason=refusal.reason, field=refusal.field, http_status=refusal.http_status
                    )
        if dry_run:
            report.stored["would be stored"] += len(parsed)
        elif parsed:
            for kind in _store_and_mark(parsed):
                report.stored[kind] += 1
    return report


def _store_and_mark(parsed: list[tuple[RejectedDelivery, Incoming]]) -> list[str]:
    """Store the bodies and mark them reprocessed in one transaction, so a crash in between
    cannot store a body twice. Nothing races it: store_many takes the storing lock before it reads
    on PostgreSQL, and SQLite's transactions hold the write lock from their start."""
    with transaction.atomic():
        outcomes = store_many([item for _, item in parsed])
        RejectedDelivery.objects.filter(pk__in=[r.pk for r, _ in parsed]).update(reprocessed_at=timezone.now())
        return [outcome.kind for outcome in outcomes]


def reprocess_runs(*, dry_run: bool = False, on_item: Callable[[], None] = lambda: None) -> RunsReport:
    """Every stored run, oldest first, re-parsed from the body its state came from."""
    report = RunsReport()
    last = 0
    while ids := list(Run.objects.filter(id__gt=last).order_by("id").values_list("id", flat=True)[:BATCH_SIZE]):
        last = ids[-1]
        with transaction.atomic():
            take_store_lock()  # it writes counters
            runs = Run.objects.filter(pk__in=ids).select_related("project", "job", "job_run", "failure_group")
            runs = runs.order_by("id")
            runs = list(runs.select_for_update(of=("self",)))
            bodies = _bodies(runs)
            changed: list[tuple[Run, Incoming]] = []
            for run in runs:
                report.examined += 1
                on_item()
                raw = bodies.get(run.pk)
                if raw is None:
                    report.missing_body += 1
                    continue
                try:
                    parsed = parse(raw)
                except Refused:
                    report.now_refused.append(run.run_id)
                    continue
                fields = _differences(run, parsed)
                if fields:
                    report.changed += 1
                    report.fields.update(fields)
                    changed.append((run, Incoming(parsed, raw, run.last_received_at)))
            if changed and not dry_run:
                reapply(changed)
    return report


def _bodies(runs: list[Run]) -> dict[int, bytes]:
    wanted = {(run.pk, run.content_sha256) for run in runs}
    rows = Delivery.objects.filter(
        run_id__in=[run.pk for run in runs], sha256__in={sha for _, sha in wanted}
    ).values_list("run_id", "sha256", "raw")
    return {run_id: bytes(raw) for run_id, sha, raw in rows if (run_id, sha) in wanted}


def _differences(run: Run, parsed: ParsedRun) -> list[str]:
    changed = [name for name in STATE_FIELDS if getattr(run, name) != getattr(parsed, name)]
    identity = {
        "project": (run.project.project_id, parsed.project_id),
        "job": (run.job.job_id if run.job_id else "", parsed.job_id if parsed.job_id else ""),
        "job_run": (
            run.job_run.job_run_id if run.job_run_id else "",
            parsed.job_run_id if parsed.job_id and parsed.job_run_id else "",
        ),
    }
    changed += [name for name, (stored, now) in identity.items() if stored != now]
    if parsed.is_failure and run.failure_group_id and "error_message" not in changed:
        group = run.failure_group
        if group.fingerprint != parsed.cause[1]:
            changed.append("failure_group")  # the normaliser changed
    elif parsed.is_failure != bool(run.failure_group_id):
        changed.append("failure_group")
    return changed
