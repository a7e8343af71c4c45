"""Storing deliveries: a parsed body becomes a Run, its Delivery, and the counters that follow.

Every path that takes in bodies (the webhook, import_runs, reprocess) goes through `receive` or
`store`, so the rules below hold everywhere:

- A run is identified by `apiInfo.runId`. Bytes this run has already received (same sha256) are a
  duplicate: counted as one more delivery, never applied again. Intuned retries a delivery with the
  same bytes for up to an hour, so this alone keeps a late retry of an old body from undoing a newer
  state.
- A different body for a known run is applied when it is not older than the stored state: when both
  bodies say when the run ended (or started), the later moment wins and a tie goes to the newer
  arrival; when either body has no time, arrival order decides. An older body is kept as a
  delivery with outcome "stale" and changes nothing else.
- Counters on Project, Job, JobRun, FailureGroup and RunTally change in the same transaction as
  the Run, always locked in that order so two concurrent transactions cannot deadlock.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from runs.models import (
    Delivery,
    FailureDay,
    FailureGroup,
    Job,
    JobRun,
    Project,
    RejectedDelivery,
    Run,
    RunTally,
)
from runs.payload import ParsedRun, Refused, fingerprint, normalise_message, parse

log = logging.getLogger(__name__)

# Headers that carry credentials are never stored (the sink token must not end up in a page).
_SECRET_HEADER_WORDS = ("authorization", "cookie", "token", "secret", "api-key", "apikey", "password")


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # created, updated, duplicate, stale or rejected
    run_id: str = ""
    delivery_id: int | None = None
    http_status: int = 200
    reason: str = ""
    field: str = ""

    @property
    def accepted(self) -> bool:
        return self.kind != "rejected"


def safe_headers(headers: dict[str, str]) -> str:
    kept = {
        name: value
        for name, value in headers.items()
        if not any(word in name.lower() for word in _SECRET_HEADER_WORDS)
    }
    return json.dumps(kept, ensure_ascii=False)


def receive(
    raw: bytes,
    *,
    headers: dict[str, str] | None = None,
    source: str = "webhook",
    received_at: datetime | None = None,
) -> Outcome:
    """Parse and store one body in its own transaction; refused bodies go to the quarantine."""
    received_at = received_at or timezone.now()
    headers_json = safe_headers(headers or {})
    try:
        parsed = parse(raw)
    except Refused as refusal:
        return quarantine(raw, refusal, headers_json=headers_json, source=source, at=received_at)
    # On PostgreSQL two first deliveries of one run (or project, job...) can race to insert the same
    # row; the loser's transaction fails on the unique constraint and simply runs again, finding
    # the row this time. SQLite's IMMEDIATE transactions never race this way.
    for attempt in range(3):
        try:
            with transaction.atomic():
                return store(parsed, raw, headers_json=headers_json, source=source, at=received_at)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def quarantine(
    raw: bytes, refusal: Refused, *, headers_json: str = "{}", source: str, at: datetime
) -> Outcome:
    with transaction.atomic():
        rejected = RejectedDelivery.objects.create(
            received_at=at,
            raw=raw,
            sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            headers_json=headers_json,
            source=source,
            http_status=refusal.http_status,
            reason=refusal.reason,
            field=refusal.field,
        )
        bound_quarantine()
    log.info("refused delivery %s from %s: %s", rejected.pk, source, refusal.reason)
    return Outcome(
        "rejected",
        delivery_id=rejected.pk,
        http_status=refusal.http_status,
        reason=refusal.reason,
        field=refusal.field,
    )


def bound_quarantine() -> None:
    """Drop the oldest refused bodies beyond the configured count and total size."""
    newest_first = RejectedDelivery.objects.order_by("-received_at", "-id")
    beyond_count = list(newest_first.values_list("id", flat=True)[settings.QUARANTINE_MAX_COUNT :])
    if beyond_count:
        RejectedDelivery.objects.filter(id__in=beyond_count).delete()
    total = RejectedDelivery.objects.aggregate(total=Sum("size"))["total"] or 0
    if total <= settings.QUARANTINE_MAX_BYTES:
        return
    drop = []
    for pk, size in newest_first.reverse().values_list("id", "size").iterator():
        if total <= settings.QUARANTINE_MAX_BYTES:
            break
        drop.append(pk)
        total -= size
    RejectedDelivery.objects.filter(id__in=drop).delete()


def store(
    parsed: ParsedRun, raw: bytes, *, headers_json: str = "{}", source: str, at: datetime
) -> Outcome:
    """Store one parsed body. The caller holds the transaction (one per request, or one per batch)."""
    sha = hashlib.sha256(raw).hexdigest()
    project = _project(parsed, at)
    job = _job(project, parsed, at)
    job_run = _job_run(job, parsed, at)

    run = Run.objects.select_for_update().filter(run_id=parsed.run_id).first()
    if run is None:
        run = Run(run_id=parsed.run_id, first_received_at=at, delivery_count=0)
        _apply(run, parsed, project, job, job_run, sha)
        kind = "created"
    elif run.deliveries.filter(sha256=sha).exists():
        kind = "duplicate"
    elif _older(parsed, run):
        kind = "stale"
    else:
        _count(run, -1, at)
        _apply(run, parsed, project, job, job_run, sha)
        kind = "updated"

    run.delivery_count += 1
    run.last_received_at = at
    if kind in ("created", "updated"):
        run.failure_group = _failure_group(run, parsed, at) if parsed.is_failure else None
        run.save()
        _count(run, +1, at)
    else:
        Run.objects.filter(pk=run.pk).update(
            delivery_count=F("delivery_count") + 1, last_received_at=at
        )
    delivery = Delivery.objects.create(
        run=run,
        received_at=at,
        raw=raw,
        sha256=sha,
        size=len(raw),
        headers_json=headers_json,
        source=source,
        outcome=kind,
    )
    return Outcome(
        kind, run_id=run.run_id, delivery_id=delivery.pk, http_status=201 if kind == "created" else 200
    )


def _older(parsed: ParsedRun, run: Run) -> bool:
    stored = run.ended_at or run.started_at
    incoming = parsed.happened_at
    return stored is not None and incoming is not None and incoming < stored


def _apply(
    run: Run,
    parsed: ParsedRun,
    project: Project,
    job: Job | None,
    job_run: JobRun | None,
    sha: str,
) -> None:
    run.project, run.job, run.job_run = project, job, job_run
    run.content_sha256 = sha
    for field in (
        "api_name", "status", "status_code", "error_code", "error_message", "error_category",
        "error_doc_url", "parameters_json", "result_json", "extra_json", "auth_session_id",
        "started_at", "ended_at", "trace_url", "log_url",
    ):  # fmt: skip
        setattr(run, field, getattr(parsed, field))


def _project(parsed: ParsedRun, at: datetime) -> Project:
    project = Project.objects.filter(project_id=parsed.project_id).first()
    if project is None:
        return Project.objects.create(
            project_id=parsed.project_id,
            name=parsed.project_name,
            workspace_id=parsed.workspace_id,
            first_received_at=at,
            last_received_at=at,
        )
    changes = {"last_received_at": at}
    if parsed.project_name and parsed.project_name != project.name:
        changes["name"] = parsed.project_name
    if parsed.workspace_id and parsed.workspace_id != project.workspace_id:
        changes["workspace_id"] = parsed.workspace_id
    Project.objects.filter(pk=project.pk).update(**changes)
    return project


def _job(project: Project, parsed: ParsedRun, at: datetime) -> Job | None:
    if not parsed.job_id:
        return None
    job = Job.objects.filter(project=project, job_id=parsed.job_id).first()
    if job is None:
        return Job.objects.create(
            project=project, job_id=parsed.job_id, first_received_at=at, last_received_at=at
        )
    Job.objects.filter(pk=job.pk).update(last_received_at=at)
    return job


def _job_run(job: Job | None, parsed: ParsedRun, at: datetime) -> JobRun | None:
    if job is None or not parsed.job_run_id:
        return None
    job_run = JobRun.objects.filter(job=job, job_run_id=parsed.job_run_id).first()
    if job_run is None:
        return JobRun.objects.create(
            job=job, job_run_id=parsed.job_run_id, first_received_at=at, last_received_at=at
        )
    JobRun.objects.filter(pk=job_run.pk).update(last_received_at=at)
    return job_run


def _failure_group(run: Run, parsed: ParsedRun, at: datetime) -> FailureGroup:
    message = normalise_message(parsed.error_message)
    key = {
        "project": run.project,
        "api_name": parsed.api_name,
        "error_code": parsed.error_code,
        "fingerprint": fingerprint(message),
    }
    group = FailureGroup.objects.filter(**key).first()
    if group is None:
        group = FailureGroup.objects.create(
            **key,
            message=message,
            error_category=parsed.error_category,
            first_seen=at,
            last_seen=at,
        )
    return group


def _count(run: Run, sign: int, at: datetime) -> None:
    """Add (sign=+1) or remove (sign=-1) the run's contribution to every counter."""
    failed = 1 if run.status == "failed" else 0
    Project.objects.filter(pk=run.project_id).update(
        run_count=F("run_count") + sign, failed_count=F("failed_count") + sign * failed
    )
    if run.job_id:
        Job.objects.filter(pk=run.job_id).update(
            run_count=F("run_count") + sign, failed_count=F("failed_count") + sign * failed
        )
    if run.job_run_id:
        column = run.status if run.status in ("completed", "failed") else "other"
        JobRun.objects.filter(pk=run.job_run_id).update(
            total=F("total") + sign, **{column: F(column) + sign}
        )
    if run.failure_group_id:
        changes = {"count": F("count") + sign}
        if sign > 0:
            changes.update(last_seen=at, sample_run=run)
        FailureGroup.objects.filter(pk=run.failure_group_id).update(**changes)
        day = {"group_id": run.failure_group_id, "day": run.first_received_at.date()}
        if not FailureDay.objects.filter(**day).update(count=F("count") + sign) and sign > 0:
            FailureDay.objects.create(**day, count=1)
    hour = run.first_received_at.replace(minute=0, second=0, microsecond=0)
    bucket = {"project_id": run.project_id, "hour": hour, "status": run.status}
    if not RunTally.objects.filter(**bucket).update(count=F("count") + sign) and sign > 0:
        RunTally.objects.create(**bucket, count=1)
