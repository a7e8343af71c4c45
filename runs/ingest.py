"""Storing deliveries: parsed bodies become Runs, their Deliveries, and the counters that follow.

Every path that takes in bodies (the webhook, import_runs, reprocess) ends in `store_many`, so the
rules below hold everywhere:

- A run is identified by `apiInfo.runId`. Bytes this run has already received (same sha256) are a
  duplicate: counted as one more delivery, never applied again. Intuned retries a delivery with the
  same bytes for up to an hour, so this alone keeps a late retry of an old body from undoing a newer
  state.
- A different body for a known run is applied when it is not older than the stored state: when both
  bodies say when the run ended (or started), the later moment wins and a tie goes to the newer
  arrival; when either body has no time, arrival order decides. An older body is kept as a
  delivery with outcome "stale" and changes nothing else.
- Counters on Project, Job, JobRun, FailureGroup, RunTally, FailureDay and FailureJob change in the same
  transaction as the Runs. A batch adds its contributions up first (`Tally`) and writes each
  counter row once, in primary-key order, so concurrent batches cannot deadlock on PostgreSQL.

Batches exist for speed: the importer stores thousands of bodies per transaction, and the webhook
commits the deliveries that arrived while the previous commit was running together (runs.sink).
"""

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from runs.models import (
    Delivery,
    FailureDay,
    FailureGroup,
    FailureJob,
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
# A PostgreSQL batch that loses a race to insert the same new row is simply run again.
_ATTEMPTS = 3


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


@dataclass(frozen=True, slots=True)
class Incoming:
    """One accepted body on its way into the database."""

    parsed: ParsedRun
    raw: bytes
    at: datetime
    headers_json: str = "{}"
    source: str = "webhook"
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.raw).hexdigest())


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
    return receive_many([(raw, headers or {})], source=source, received_at=received_at)[0]


def receive_many(
    bodies: list[tuple[bytes, dict[str, str]]],
    *,
    source: str = "webhook",
    received_at: datetime | None = None,
) -> list[Outcome]:
    """Parse and store several bodies in one transaction (refusals are quarantined on their own).
    Returns once everything is committed; raises DatabaseError if it could not be."""
    at = received_at or timezone.now()
    outcomes: list[Outcome | None] = [None] * len(bodies)
    accepted: list[tuple[int, Incoming]] = []
    for index, (raw, headers) in enumerate(bodies):
        headers_json = safe_headers(headers)
        try:
            parsed = parse(raw)
        except Refused as refusal:
            outcomes[index] = quarantine(raw, refusal, headers_json=headers_json, source=source, at=at)
            continue
        accepted.append((index, Incoming(parsed, raw, at, headers_json, source)))
    if accepted:
        stored = store_committed([item for _, item in accepted])
        for (index, _), outcome in zip(accepted, stored, strict=True):
            outcomes[index] = outcome
    return outcomes  # type: ignore[return-value]


def store_committed(items: list[Incoming]) -> list[Outcome]:
    """store_many in a transaction of its own, run again if it lost an insert race."""
    for attempt in range(_ATTEMPTS):
        try:
            with transaction.atomic():
                return store_many(items)
        except IntegrityError:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


# Any constant: the key of the PostgreSQL advisory lock that orders storing transactions.
_STORE_LOCK = 0x51_4E_4B_44


def _commit_in_id_order() -> None:
    """On PostgreSQL, let one storing transaction run at a time across all server processes, so
    new runs become visible in the order of their ids and the live pages' row-id cursor never
    steps over a run that a slower transaction commits later. They queue on the project's
    counter rows anyway; SQLite has a single writer already."""
    if connection.vendor == "postgresql":
        _execute("SELECT pg_advisory_xact_lock(%s)", [_STORE_LOCK])


def store(
    parsed: ParsedRun, raw: bytes, *, headers_json: str = "{}", source: str, at: datetime
) -> Outcome:
    """Store one parsed body inside the caller's transaction."""
    return store_many([Incoming(parsed, raw, at, headers_json, source)])[0]


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


def store_many(items: list[Incoming]) -> list[Outcome]:
    """Store bodies inside the caller's transaction, with the same result as storing them one by
    one in order. A run that appears twice waits for the next round, so each round sees the
    state its earlier bodies left."""
    _commit_in_id_order()
    outcomes: list[Outcome | None] = [None] * len(items)
    remaining = list(enumerate(items))
    while remaining:
        this_round, later, seen = [], [], set()
        for index, item in remaining:
            (later if item.parsed.run_id in seen else this_round).append((index, item))
            seen.add(item.parsed.run_id)
        for (index, _), outcome in zip(this_round, _store_round([i for _, i in this_round]), strict=True):
            outcomes[index] = outcome
        remaining = later
    return outcomes  # type: ignore[return-value]


class NewRun:
    """A run about to be inserted: just what the counters and failure groups need, so a batch
    of new runs is written as plain rows instead of model instances (the importer's hot path)."""

    __slots__ = (
        "parsed", "sha256", "run_id", "project_id", "job_id", "job_run_id", "status", "api_name",
        "error_code", "error_category", "first_received_at", "last_received_at", "failure_group_id",
        "pk", "delivery_count",
    )  # fmt: skip

    def __init__(self, item: Incoming, project: Project, job: Job | None, job_run: JobRun | None):
        p = item.parsed
        self.parsed, self.sha256, self.run_id = p, item.sha256, p.run_id
        self.project_id, self.job_id = project.pk, job.pk if job else None
        self.job_run_id = job_run.pk if job_run else None
        self.status, self.api_name = p.status, p.api_name
        self.error_code, self.error_category = p.error_code, p.error_category
        self.first_received_at = self.last_received_at = item.at
        self.failure_group_id = None
        self.pk = None
        self.delivery_count = 0

    def row(self) -> tuple:
        p = self.parsed
        return (
            p.run_id, self.project_id, self.job_id, self.job_run_id, p.api_name, p.status,
            p.status_code, p.error_code, p.error_message, p.error_category, p.error_doc_url,
            p.parameters_json, p.parameters_sha256, p.result_json, p.extra_json, p.auth_session_id,
            _moment(p.started_at), _moment(p.ended_at), p.trace_url, p.log_url,
            self.failure_group_id, self.sha256, self.delivery_count,
            _moment(self.first_received_at), _moment(self.last_received_at),
        )  # fmt: skip


_RUN_COLUMNS = (
    "run_id", "project_id", "job_id", "job_run_id", "api_name", "status", "status_code",
    "error_code", "error_message", "error_category", "error_doc_url", "parameters_json",
    "parameters_sha256", "result_json", "extra_json", "auth_session_id", "started_at", "ended_at",
    "trace_url", "log_url", "failure_group_id", "content_sha256", "delivery_count",
    "first_received_at", "last_received_at",
)  # fmt: skip
_DELIVERY_COLUMNS = ("run_id", "received_at", "raw", "sha256", "size", "headers_json", "source", "outcome")


def _store_round(items: list[Incoming]) -> list[Outcome]:
    """Store bodies of distinct runs: a fixed number of queries whatever the batch size."""
    projects = _projects(items)
    jobs = _jobs(items, projects)
    job_runs = _job_runs(items, projects, jobs)
    run_ids = [i.parsed.run_id for i in items]
    known = _rows(f"SELECT id FROM {_table(Run)} WHERE run_id IN ({_marks(run_ids)})", run_ids)
    existing = {
        run.run_id: run
        for run in Run.objects.select_for_update().filter(pk__in=[pk for (pk,) in known])
    } if known else {}  # fmt: skip
    received = set(
        Delivery.objects.filter(
            run_id__in=[run.pk for run in existing.values()], sha256__in={i.sha256 for i in items}
        ).values_list("run_id", "sha256")
    ) if existing else set()  # fmt: skip

    tally = Tally()
    kinds: list[str] = []
    runs: list[Run | NewRun] = []
    applied: list[tuple[Run | NewRun, Incoming]] = []
    for item in items:
        p = item.parsed
        project = projects[p.project_id]
        job = jobs.get((project.pk, p.job_id))
        job_run = job_runs.get((job.pk, p.job_run_id)) if job else None
        tally.touch(project, job, job_run, item.at)
        run = existing.get(p.run_id)
        if run is None:
            run = NewRun(item, project, job, job_run)
            kind = "created"
        elif (run.pk, item.sha256) in received:
            kind = "duplicate"
        elif _older(p, run):
            kind = "stale"
        else:
            tally.add(run, -1)
            _apply(run, p, project, job, job_run, item.sha256)
            kind = "updated"
        if kind in ("created", "updated"):
            applied.append((run, item))
        run.delivery_count += 1
        run.last_received_at = item.at
        kinds.append(kind)
        runs.append(run)

    _assign_failure_groups(applied)
    new = [run for run in runs if isinstance(run, NewRun)]
    for run, pk in zip(new, _insert(Run, _RUN_COLUMNS, [run.row() for run in new]), strict=True):
        run.pk = pk
    for run, kind in zip(runs, kinds):
        if kind == "updated":
            run.save()
    repeats = [run.pk for run, kind in zip(runs, kinds) if kind in ("duplicate", "stale")]
    if repeats:
        Run.objects.filter(pk__in=repeats).update(
            delivery_count=F("delivery_count") + 1, last_received_at=max(i.at for i in items)
        )
    for run, _ in applied:
        tally.add(run, +1)
    tally.write()
    delivery_ids = _insert(Delivery, _DELIVERY_COLUMNS, [
        (run.pk, _moment(item.at), item.raw, item.sha256, len(item.raw), item.headers_json,
         item.source, kind)
        for run, item, kind in zip(runs, items, kinds)
    ])  # fmt: skip
    return [
        Outcome(kind, run_id=run.run_id, delivery_id=pk, http_status=201 if kind == "created" else 200)
        for run, kind, pk in zip(runs, kinds, delivery_ids, strict=True)
    ]


def _older(parsed: ParsedRun, run: Run) -> bool:
    stored = run.ended_at or run.started_at
    incoming = parsed.happened_at
    return stored is not None and incoming is not None and incoming < stored


_STATE_FIELDS = (
    "api_name", "status", "status_code", "error_code", "error_message", "error_category",
    "error_doc_url", "parameters_json", "parameters_sha256", "result_json", "extra_json",
    "auth_session_id", "started_at", "ended_at", "trace_url", "log_url",
)  # fmt: skip


def _apply(
    run: Run, parsed: ParsedRun, project: Project, job: Job | None, job_run: JobRun | None, sha: str
) -> None:
    run.project, run.job, run.job_run = project, job, job_run
    run.content_sha256 = sha
    for name in _STATE_FIELDS:
        setattr(run, name, getattr(parsed, name))


def _projects(items: list[Incoming]) -> dict[str, Project]:
    latest = {i.parsed.project_id: i for i in items}  # the last body names the project best
    keys = list(latest)
    found = {
        pid: Project(id=pk, project_id=pid, name=name, workspace_id=workspace)
        for pk, pid, name, workspace in _rows(
            f"SELECT id, project_id, name, workspace_id FROM {_table(Project)}"
            f" WHERE project_id IN ({_marks(keys)})",
            keys,
        )
    }
    missing = [
        Project(
            project_id=pid, name=i.parsed.project_name, workspace_id=i.parsed.workspace_id,
            first_received_at=i.at, last_received_at=i.at,
        )  # fmt: skip
        for pid, i in latest.items()
        if pid not in found
    ]
    for project in Project.objects.bulk_create(missing):
        found[project.project_id] = project
    for pid, item in latest.items():
        project, p = found[pid], item.parsed
        renamed = (p.project_name and p.project_name != project.name) or (
            p.workspace_id and p.workspace_id != project.workspace_id
        )
        if renamed:
            project.name = p.project_name or project.name
            project.workspace_id = p.workspace_id or project.workspace_id
            Project.objects.filter(pk=project.pk).update(name=project.name, workspace_id=project.workspace_id)
    return found


def _jobs(items: list[Incoming], projects: dict[str, Project]) -> dict[tuple[int, str], Job]:
    wanted = {
        (projects[i.parsed.project_id].pk, i.parsed.job_id): i.at for i in items if i.parsed.job_id
    }
    return _children(Job, "project_id", "job_id", wanted)


def _job_runs(
    items: list[Incoming], projects: dict[str, Project], jobs: dict[tuple[int, str], Job]
) -> dict[tuple[int, str], JobRun]:
    wanted: dict[tuple[int, str], datetime] = {}
    for i in items:
        job = jobs.get((projects[i.parsed.project_id].pk, i.parsed.job_id))
        if job is not None and i.parsed.job_run_id:
            wanted[(job.pk, i.parsed.job_run_id)] = i.at
    return _children(JobRun, "job_id", "job_run_id", wanted)


def _children(model, parent: str, key: str, wanted: dict[tuple[int, str], datetime]) -> dict:
    """The rows of model named by (parent id, key) pairs, creating those that are new (a job in a
    project, a job run in a job)."""
    if not wanted:
        return {}
    found = {
        (parent_pk, name): model(id=pk, **{parent: parent_pk, key: name})
        for pk, parent_pk, name in _rows_in(model, parent, key, wanted)
    }
    missing = [
        model(**{parent: parent_pk, key: name}, first_received_at=at, last_received_at=at)
        for (parent_pk, name), at in wanted.items()
        if (parent_pk, name) not in found
    ]
    for row in model.objects.bulk_create(missing):
        found[(getattr(row, parent), getattr(row, key))] = row
    return {pair: found[pair] for pair in wanted}


def _assign_failure_groups(pairs: list[tuple["Run | NewRun", Incoming]]) -> None:
    """Point each failed run at the group of its cause (creating groups), and others at none."""
    # A list, not a dict: runs not yet inserted have no primary key and cannot be hashed.
    keys: list[tuple[Run | NewRun, tuple[int, str, str, str, str]]] = []
    for run, item in pairs:
        _set_group(run, None)
        if item.parsed.is_failure:
            message = normalise_message(item.parsed.error_message)
            keys.append((run, (run.project_id, run.api_name, run.error_code, fingerprint(message), message)))
    if not keys:
        return
    found = {
        (g.project_id, g.api_name, g.error_code, g.fingerprint): g
        for g in FailureGroup.objects.filter(
            project_id__in={k[0] for _, k in keys}, fingerprint__in={k[3] for _, k in keys}
        )
    }
    at = max(item.at for _, item in pairs)
    missing: dict[tuple, FailureGroup] = {}
    for run, key in keys:
        if key[:4] not in found and key[:4] not in missing:
            missing[key[:4]] = FailureGroup(
                project_id=key[0], api_name=key[1], error_code=key[2], fingerprint=key[3],
                message=key[4], error_category=run.error_category, first_seen=at, last_seen=at,
            )  # fmt: skip
    for group in FailureGroup.objects.bulk_create(list(missing.values())):
        found[(group.project_id, group.api_name, group.error_code, group.fingerprint)] = group
    for run, key in keys:
        _set_group(run, found[key[:4]])


def _set_group(run: "Run | NewRun", group: FailureGroup | None) -> None:
    if isinstance(run, Run):
        run.failure_group = group  # keeps the model's cached relation in step
    else:
        run.failure_group_id = group.pk if group else None


@dataclass
class Tally:
    """A batch's changes to every counter, added up so each counter row is written once.

    `add` is the one place that knows what a run contributes to which counter; prune and reprocess
    use it too (through `count_run`)."""

    projects: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    jobs: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    job_runs: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    groups: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    group_samples: dict[int, "Run | NewRun"] = field(default_factory=dict)
    buckets: dict[tuple[int, datetime, str], int] = field(default_factory=lambda: defaultdict(int))
    days: dict[tuple[int, date], int] = field(default_factory=lambda: defaultdict(int))
    group_jobs: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    touched: dict[type, dict[int, datetime]] = field(default_factory=lambda: defaultdict(dict))

    def touch(self, project: Project, job: Job | None, job_run: JobRun | None, at: datetime) -> None:
        """A delivery arrived for these parents (their "last received" moves, even for repeats)."""
        for row in (project, job, job_run):
            if row is not None:
                seen = self.touched[type(row)]
                seen[row.pk] = max(seen.get(row.pk, at), at)

    def add(self, run: Run, sign: int) -> None:
        failed = 1 if run.status == "failed" else 0
        self.projects[run.project_id][0] += sign
        self.projects[run.project_id][1] += sign * failed
        if run.job_id:
            self.jobs[run.job_id][0] += sign
            self.jobs[run.job_id][1] += sign * failed
        if run.job_run_id:
            column = {"completed": 1, "failed": 2}.get(run.status, 3)
            self.job_runs[run.job_run_id][0] += sign
            self.job_runs[run.job_run_id][column] += sign
        hour = run.first_received_at.replace(minute=0, second=0, microsecond=0)
        self.buckets[(run.project_id, hour, run.status)] += sign
        if run.failure_group_id:
            self.groups[run.failure_group_id] += sign
            self.days[(run.failure_group_id, run.first_received_at.date())] += sign
            if run.job_id:
                self.group_jobs[(run.failure_group_id, run.job_id)] += sign
            if sign > 0:
                self.group_samples[run.failure_group_id] = run

    def write(self) -> None:
        """One executemany per counter table, rows in primary-key order."""
        touched = self.touched
        _add_to_rows(Project, ("run_count", "failed_count"), self.projects, touched[Project])
        _add_to_rows(Job, ("run_count", "failed_count"), self.jobs, touched[Job])
        _add_to_rows(JobRun, ("total", "completed", "failed", "other"), self.job_runs, touched[JobRun])
        if self.groups:
            rows = []
            for pk in sorted(self.groups):
                sample = self.group_samples.get(pk)
                rows.append((
                    self.groups[pk], sample.pk if sample else None,
                    _moment(sample.last_received_at) if sample else None, pk,
                ))  # fmt: skip
            _execute_many(
                f"UPDATE {_table(FailureGroup)} SET count = count + %s,"
                " sample_run_id = COALESCE(%s, sample_run_id), last_seen = COALESCE(%s, last_seen)"
                " WHERE id = %s",
                rows,
            )
        _add_counts(RunTally, ("project_id", "hour", "status"), self.buckets)
        _add_counts(FailureDay, ("group_id", "day"), self.days)
        _add_counts(FailureJob, ("group_id", "job_id"), self.group_jobs)


def _add_to_rows(model, columns: tuple[str, ...], deltas: dict, touched: dict[int, datetime]) -> None:
    """Add per-row deltas to counter columns, and move last_received_at where a delivery came."""
    pks = sorted(set(deltas) | set(touched))
    if not pks:
        return
    zero = (0,) * len(columns)
    sets = ", ".join(f"{column} = {column} + %s" for column in columns)
    _execute_many(
        f"UPDATE {_table(model)} SET {sets}, last_received_at = COALESCE(%s, last_received_at)"
        " WHERE id = %s",
        [(*deltas.get(pk, zero), _moment(touched.get(pk)), pk) for pk in pks],
    )


def _add_counts(model, key_columns: tuple[str, ...], counts: dict[tuple, int]) -> None:
    """Add to count rows keyed by key_columns, creating the rows that do not exist yet."""
    counts = {key: n for key, n in counts.items() if n}
    if not counts:
        return
    # Keys as the database stores them, so they compare equal to the rows read back.
    db_keys = {tuple(_db_value(v) for v in key): key for key in counts}
    first = key_columns[0]
    firsts = list({key[0] for key in db_keys})
    # The existing rows, found through the unique index that starts with the first key column.
    found = {
        tuple(_db_value(v) for v in row[1:]): row[0]
        for row in _rows(
            f"SELECT id, {', '.join(key_columns)} FROM {_table(model)} WHERE {first} IN ({_marks(firsts)})",
            firsts,
        )
    }
    updates, inserts = [], []
    for db_key, key in sorted(db_keys.items()):
        pk = found.get(db_key)
        if pk is not None:
            updates.append((counts[key], pk))
        elif counts[key] > 0:
            inserts.append((*db_key, counts[key]))
    if updates:
        _execute_many(f"UPDATE {_table(model)} SET count = count + %s WHERE id = %s", updates)
    if inserts:
        _insert(model, (*key_columns, "count"), inserts)


def _db_value(value):
    if isinstance(value, datetime):
        return _moment(value)
    if isinstance(value, date):
        return connection.ops.adapt_datefield_value(value)
    return value


# Raw SQL where the ORM's per-query cost dominates the webhook's hot path: the statements are
# simple, and the ORM still builds the rows they point at.
def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _marks(values) -> str:
    return ", ".join(["%s"] * len(values))


_moments: dict[datetime, object] = {}


def _moment(value: datetime | None):
    """A datetime as the database takes it. Batches repeat the same few moments (the arrival
    time) thousands of times, so adapted values are remembered for a while."""
    if value is None:
        return None
    adapted = _moments.get(value)
    if adapted is None:
        if len(_moments) > 10_000:
            _moments.clear()
        adapted = _moments[value] = connection.ops.adapt_datetimefield_value(value)
    return adapted


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _execute_many(sql: str, rows: list[tuple]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _execute(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _insert(model, columns: tuple[str, ...], rows: list[tuple]) -> list[int]:
    """Insert rows and return their ids in order (RETURNING, as Django's bulk_create relies on)."""
    ids: list[int] = []
    per_statement = max(1, min(500, 30000 // len(columns)))  # SQLite allows 32766 parameters
    one = f"({_marks(columns)})"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql = (
            f"INSERT INTO {_table(model)} ({', '.join(columns)}) VALUES {', '.join([one] * len(chunk))}"
            " RETURNING id"
        )
        ids.extend(pk for (pk,) in _rows(sql, [value for row in chunk for value in row]))
    return ids


def _rows_in(model, parent: str, key: str, wanted) -> list[tuple]:
    """(id, parent, key) of the rows whose (parent, key) pair is wanted."""
    parents, keys = list({k[0] for k in wanted}), list({k[1] for k in wanted})
    rows = _rows(
        f"SELECT id, {parent}, {key} FROM {_table(model)}"
        f" WHERE {parent} IN ({_marks(parents)}) AND {key} IN ({_marks(keys)})",
        parents + keys,
    )
    return [row for row in rows if (row[1], row[2]) in wanted]


def count_run(run: Run, sign: int) -> None:
    """Add (+1) or remove (-1) one stored run's contribution to every counter, now."""
    tally = Tally()
    tally.add(run, sign)
    tally.write()
