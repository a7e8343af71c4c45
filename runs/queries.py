"""The read side, shared by the pages and the JSON API: every list is one indexed query of one
page (keyset on id, newest first), and every total comes from a counter row."""

import heapq
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time

from django.db.models import BigIntegerField, Func, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from runs import sql
from runs.payload import Refused, content, parameters_key
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

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class BadFilter(ValueError):
    """A query-string value that cannot be understood; the message names the parameter."""


@dataclass(frozen=True)
class RunFilter:
    statuses: tuple[str, ...] = ()
    project: str = ""
    job: str = ""
    job_run: str = ""
    api: str = ""
    error_code: str = ""
    failure_group: int | None = None
    parameters: str = ""  # Run.parameters_sha256: runs of one API called with the same parameters
    q: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, object]) -> "RunFilter":
        """From a QueryDict (pages) or a dict of lists/strings (API)."""

        def many(name: str) -> tuple[str, ...]:
            if hasattr(query, "getlist"):
                values = query.getlist(name)
            else:
                value = query.get(name) or []
                values = value if isinstance(value, (list, tuple)) else [value]
            out: list[str] = []
            for value in values:
                out.extend(part.strip() for part in str(value).split(",") if part.strip())
            if any(not storable(value) for value in out):
                raise BadFilter(f"{name} contains a NUL character, which no stored text has")
            return tuple(dict.fromkeys(out))

        def one(name: str) -> str:
            if name == "q":  # free text, commas and all
                q = str(query.get("q") or "").strip()
                if not storable(q):
                    raise BadFilter("q contains a NUL character, which no stored text has")
                return q
            values = many(name)
            return values[0] if values else ""

        return cls(
            statuses=many("status"),
            project=one("project"),
            job=one("job"),
            job_run=one("job_run"),
            api=one("api"),
            error_code=one("error_code"),
            failure_group=_int(one("failure_group"), "failure_group"),
            parameters=_parameters(one("parameters"), one("project"), one("api")),
            q=one("q")[:200],
            since=_moment(one("since"), "since", end=False),
            until=_moment(one("until"), "until", end=True),
            limit=min(max(_int(one("limit"), "limit") or DEFAULT_LIMIT, 1), MAX_LIMIT),
            cursor=_int(one("cursor"), "cursor"),
        )

    def is_empty(self) -> bool:
        return self == RunFilter(limit=self.limit, cursor=self.cursor)


def storable(text: str) -> bool:
    """Whether stored text could equal this. Nothing stored holds NUL (runs.payload replaces it,
    and PostgreSQL refuses it even as a query parameter), so text with one matches nothing."""
    return "\x00" not in text


def _parameters(digest: str, project: str, api: str) -> str:
    """A parameters digest narrows one project's API: only with both does run_same_parameters
    (project, api, digest, id) serve the list; alone it would read every run."""
    if not digest:
        return ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BadFilter(f"parameters must be a run's parameters digest (64 hex digits), not {digest[:80]!r}")
    if not project or not api:
        raise BadFilter("parameters needs project and api as well (the link on a run's page has them)")
    return digest


def _int(value: str, name: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadFilter(f"{name} must be a whole number, not {value!r}") from None


def _moment(value: str, name: str, *, end: bool) -> datetime | None:
    """An ISO date or date-time; a bare date means the start (since) or end (until) of that day."""
    if not value:
        return None
    try:
        day = parse_date(value) if len(value) == 10 else None
        if day is not None:
            moment = datetime.combine(day, time.max if end else time.min)
        else:
            moment = parse_datetime(value)
            if moment is None:
                raise ValueError
    except ValueError:
        raise BadFilter(f"{name} must be an ISO date or date-time, not {value!r}") from None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def _ids(model, **lookup) -> list[int]:
    return list(model.objects.filter(**lookup).values_list("id", flat=True)[:1000])


def filter_runs(f: RunFilter) -> QuerySet[Run]:
    """The filtered run queryset, newest first. Names become primary keys first, so the run
    query itself uses one (column, id) index."""
    runs = Run.objects.all()
    if f.statuses:
        runs = runs.filter(status__in=f.statuses)
    if f.project:
        runs = runs.filter(project_id__in=_ids(Project, project_id=f.project))
    if f.job:
        jobs = Job.objects.filter(job_id=f.job)
        if f.project:
            jobs = jobs.filter(project__project_id=f.project)
        runs = runs.filter(job_id__in=list(jobs.values_list("id", flat=True)[:1000]))
    if f.job_run:
        runs = runs.filter(job_run_id__in=_ids(JobRun, job_run_id=f.job_run))
    if f.api:
        runs = runs.filter(api_name=f.api)
    if f.error_code:  # `<> ''` as well: what lets the database use the partial run_by_error_code
        runs = runs.filter(error_code=f.error_code).exclude(error_code="")
    if f.failure_group is not None:
        runs = runs.filter(failure_group_id=f.failure_group)
    if f.parameters:  # _parameters made sure the project and API are given as well
        runs = runs.filter(parameters_key=parameters_key(f.api, f.parameters), parameters_sha256=f.parameters)
    if f.q:
        runs = runs.filter(_search(f.q))
    low, high = id_bounds(f.since, f.until)
    if low is not None:
        runs = runs.filter(id__gte=low)
    if high is not None:
        runs = runs.filter(id__lte=high)
    return runs.order_by("-id")


# Free text is matched with LIKE, which no index serves: bounding it to the newest runs keeps a
# search with few matches from reading the whole table (1.8 s at a million runs).
SEARCH_WINDOW = 100_000


def _search(q: str) -> Q:
    """A pasted run id finds that run through its unique index; other text is looked for in the
    API name, error message and parameters of the newest SEARCH_WINDOW runs."""
    exact = Run.objects.filter(run_id=q).values_list("id", flat=True).first()
    if exact is not None:
        return Q(id=exact)
    text = Q(api_name__icontains=q) | Q(error_message__icontains=q) | Q(parameters_json__icontains=q)
    newest = latest_run_id()
    return text & Q(id__gt=newest - SEARCH_WINDOW) if newest > SEARCH_WINDOW else text


def per_status(f: RunFilter) -> list[RunFilter]:
    """The filter split by status. `status IN (a, b) ORDER BY id` cannot walk one index in order,
    so it sorts every match (0.7 s at a million runs); one indexed query per status, merged by id,
    reads only a page from each."""
    if len(f.statuses) < 2:
        return [f]
    return [replace(f, statuses=(status,)) for status in f.statuses]


def id_bounds(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """Turn a time range into an id range through the first_received_at index: ids grow with
    arrival, so the run query can keep using its (column, id) index for the range as well."""
    low = high = None
    if since is not None:
        first = Run.objects.filter(first_received_at__gte=since).order_by("first_received_at")
        low = first.values_list("id", flat=True).first()
        if low is None:
            return 0, -1  # nothing that recent: an empty range
    if until is not None:
        last = Run.objects.filter(first_received_at__lte=until).order_by("-first_received_at")
        high = last.values_list("id", flat=True).first()
        if high is None:
            return 0, -1
    return low, high


@dataclass
class Page:
    items: list
    next_cursor: str | None


# Lists (the pages' run tables and GET /api/runs) show a run's identity, status, error and time
# of arrival, and its parents' names: nothing else is loaded. Its parameters, result and extra
# fields are read on the run's own page only (a result may be 2 MB, and a list shows 50 runs), and
# every column left out is a value less to convert and set for every row of every list.
_LISTED = (
    "id", "run_id", "status", "api_name", "status_code", "error_code", "error_category",
    "first_received_at", "project__project_id", "project__name", "job__job_id", "job_run__job_run_id",
)  # fmt: skip
_NOT_LISTED = ("parameters_json", "error_message")

# The pages' lists show the start of each error message (runs.templatetags.sinkdash.run_row clips
# it to 140 characters) and load only that much, as `error_preview`. A message has no bound but
# the body's (10 MB): scrapers put whole pages in them. 60 failed runs with 5 MB messages, 2,000
# runs in all: /runs/?status=failed took 145 ms and took its process to 762 MB on SQLite, 205 ms
# and 691 MB on PostgreSQL, to show 140 characters of each; with previews 80 ms and 166 MB (SQLite
# still reads each message through to make its SUBSTR), 15 ms and 72 MB (PostgreSQL decompresses
# just the start). A thousand characters is more than the clip needs, combining characters and
# all, unless the text is mostly combining characters: the row then shows the thousand it has.
MESSAGE_PREVIEW_CHARS = 1000
# GET /api/runs returns each run's whole message. A page stops before the run whose message would
# take the page's messages past this many characters (it keeps at least one run), and its
# next_cursor goes on from there, as a client follows it anyway: 200 runs with scraped pages in
# their messages would otherwise make a response of gigabytes, in the process that runs the sink.
PAGE_MESSAGE_CHARS = 16 * 2**20


class _Size(Func):
    """A text column's size, for bounds like PAGE_MESSAGE_CHARS and the exports' chunks: in
    characters on SQLite, which reads the text through for any measure; in bytes on PostgreSQL,
    from the stored value's header, where LENGTH would decompress every value."""

    function = "LENGTH"
    output_field = BigIntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, function="OCTET_LENGTH", **extra)


def _listed(runs: QuerySet[Run], *, messages: bool = False) -> QuerySet[Run]:
    """A list's runs, each with its `error_preview`; with `messages`, with its message's length
    (`message_chars`) instead, for run_page to load the messages that fit."""
    runs = runs.select_related("project", "job", "job_run").only(*_LISTED)
    if messages:
        return runs.annotate(message_chars=_Size("error_message"))
    return runs.annotate(error_preview=Substr("error_message", 1, MESSAGE_PREVIEW_CHARS))


def run_page(f: RunFilter, *, messages: bool = False) -> Page:
    """A page of the filtered runs; with `messages`, each with its whole error message, as many
    runs as PAGE_MESSAGE_CHARS allows."""
    pages = []
    for one in per_status(f):
        runs = _listed(filter_runs(one), messages=messages)
        if f.cursor is not None:
            runs = runs.filter(id__lt=f.cursor)
        pages.append(list(runs[: f.limit + 1]))
    items = list(heapq.merge(*pages, key=lambda run: -run.id))[: f.limit + 1]
    more = len(items) > f.limit
    items = items[: f.limit]
    if messages:
        fit = _with_messages(items)
        more, items = more or len(fit) < len(items), fit
    return Page(items, str(items[-1].id) if more else None)


def _with_messages(runs: list[Run]) -> list[Run]:
    """The first of these runs whose messages fit in PAGE_MESSAGE_CHARS (at least one), each with
    its whole error_message loaded."""
    total = 0
    for count, run in enumerate(runs):
        total += run.message_chars
        if total > PAGE_MESSAGE_CHARS and count:
            runs = runs[:count]
            break
    messages = dict(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("pk", "error_message"))
    for run in runs:
        run.error_message = messages[run.pk]
    return runs


def runs_after(f: RunFilter, after_id: int, limit: int = MAX_LIMIT) -> list[Run]:
    """Runs newer than a row-id cursor that match the filter (the live run list)."""
    runs = _listed(filter_runs(f).filter(id__gt=after_id))
    return list(runs[:limit])


def runs_updated(
    f: RunFilter, after_delivery: int, up_to_delivery: int, shown: tuple[int, int]
) -> tuple[list[Run], list[int]]:
    """Runs in the id range the live list shows that a later body changed: an "updated" delivery
    in (after_delivery, up_to_delivery]. Returns those that still match the filter, to redraw,
    and the ids of those that no longer do, to take off the list. The deliveries are read by
    primary-key range: one poll's worth of arrivals."""
    changed = list(
        Delivery.objects.filter(
            id__gt=after_delivery, id__lte=up_to_delivery, outcome=Delivery.Outcome.UPDATED,
            run_id__gte=shown[0], run_id__lte=shown[1],
        ).values_list("run_id", flat=True).distinct()[:MAX_LIMIT]
    )  # fmt: skip
    if not changed:
        return [], []
    still = list(_listed(filter_runs(f).filter(id__in=changed)))
    matching = {run.id for run in still}
    return still, sorted(set(changed) - matching, reverse=True)


def run_detail(run_id: str) -> Run | None:
    if not storable(run_id):
        return None
    return (
        Run.objects.select_related("project", "job", "job_run", "failure_group")
        .filter(run_id=run_id)
        .first()
    )


def state_of(run: Run) -> tuple[str, str]:
    """The JSON texts of the run's result and of the fields neither payload shape names, read
    from the body its state came from: a run keeps them only there (see runs.models)."""
    return result_and_extra(state_body(run)[1])


def state_body(run: Run) -> tuple[int | None, bytes | None]:
    """The id and bytes of the delivery the run's state came from (the first with its bytes: the
    same bytes are the same body); (None, None) when it is gone."""
    bodies = Delivery.objects.filter(run_id=run.pk, sha256=run.content_sha256).order_by("id")
    return bodies.values_list("pk", "raw").first() or (None, None)


def with_state_body(runs: QuerySet[Run]) -> QuerySet[Run]:
    """Runs annotated with `state_raw`, the bytes of the delivery their state came from, for lists
    that show results (exports): one look-up per run through delivery_by_run_sha. (Bodies of a
    run with the same bytes are the same body; the first stands for them.)"""
    return runs.annotate(state_raw=Subquery(_state_bodies().values("raw")[:1]))


def _state_bodies() -> QuerySet[Delivery]:
    return Delivery.objects.filter(run_id=OuterRef("pk"), sha256=OuterRef("content_sha256")).order_by("id")


def text_size(field: str):
    """An expression for the size of what a run list's `field` holds (a column, or `state_raw`),
    read without bringing the value itself to Python: for exports to read runs a few megabytes
    at a time."""
    if field == "state_raw":
        return Subquery(_state_bodies().values("size")[:1])
    return _Size(field)


def result_and_extra(raw: bytes | memoryview | None) -> tuple[str, str]:
    """A state body's result and unknown fields as JSON texts; "null" and "{}" when the body is
    gone or today's parser refuses it (reprocess lists such runs)."""
    if raw is not None:
        try:
            return content(bytes(raw))
        except Refused:
            pass
    return "null", "{}"


def deliveries_of(run: Run):
    return run.deliveries.order_by("id").defer("raw")


def job_run_by_id(job_run_id: str) -> JobRun | None:
    if not storable(job_run_id):
        return None
    return JobRun.objects.select_related("job__project").filter(job_run_id=job_run_id).first()


def projects_with_jobs() -> list[Project]:
    return list(Project.objects.prefetch_related("jobs").order_by("name", "project_id"))


def latest_job_runs(job: Job, limit: int = 10) -> list[JobRun]:
    return latest_job_runs_of([job], limit)[job.pk]


# Jobs per statement: SQLite allows 500 terms in a compound SELECT.
_JOBS_PER_UNION = 400


def latest_job_runs_of(jobs: list[Job], limit: int) -> dict[int, list[JobRun]]:
    """Each job's latest job runs (by job id), newest first, in one query for all of them: a
    UNION ALL of one LIMIT per job, each read from job_run_latest_per_job. A window over every
    job run of the jobs would read them all, and they grow with every day a job runs."""
    found: dict[int, list[JobRun]] = {job.pk: [] for job in jobs}
    one = (
        f"SELECT * FROM (SELECT * FROM {sql.table(JobRun)} WHERE job_id = %s"
        " ORDER BY last_received_at DESC, id DESC LIMIT %s) AS latest"
    )
    pks = list(found)
    for start in range(0, len(pks), _JOBS_PER_UNION):
        chunk = pks[start : start + _JOBS_PER_UNION]
        union = " UNION ALL ".join([one] * len(chunk))
        for job_run in JobRun.objects.raw(union, [value for pk in chunk for value in (pk, limit)]):
            found[job_run.job_id].append(job_run)
    for job_runs in found.values():  # a UNION ALL promises no order of its own
        job_runs.sort(key=lambda jr: (jr.last_received_at, jr.id), reverse=True)
    return found


@dataclass(frozen=True)
class FailureFilter:
    project: str = ""
    job: str = ""
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None


def failure_page(f: FailureFilter) -> Page:
    if not (storable(f.project) and storable(f.job)):
        return Page([], None)
    groups = (
        FailureGroup.objects.select_related("project", "sample_run")
        .defer(*(f"sample_run__{name}" for name in _NOT_LISTED))
        .order_by("-last_seen", "-id")
    )
    if f.project:
        groups = groups.filter(project_id__in=_ids(Project, project_id=f.project))
    if f.job:
        # A group spans jobs; this keeps the groups whose latest failure came from the job.
        groups = groups.filter(sample_run__job__job_id=f.job)
    if f.cursor is not None:
        anchor = FailureGroup.objects.filter(pk=f.cursor).values_list("last_seen", flat=True).first()
        if anchor is not None:
            groups = groups.filter(Q(last_seen__lt=anchor) | Q(last_seen=anchor, id__lt=f.cursor))
    items = list(groups[: f.limit + 1])
    more = len(items) > f.limit
    items = items[: f.limit]
    return Page(items, str(items[-1].id) if more else None)


def rejected_page(limit: int = DEFAULT_LIMIT, cursor: int | None = None) -> Page:
    rejected = RejectedDelivery.objects.defer("raw").order_by("-received_at", "-id")
    if cursor is not None:
        anchor = RejectedDelivery.objects.filter(pk=cursor).values_list("received_at", flat=True)
        if anchor:
            at = anchor[0]
            rejected = rejected.filter(Q(received_at__lt=at) | Q(received_at=at, id__lt=cursor))
    items = list(rejected[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return Page(items, str(items[-1].id) if more else None)


@dataclass
class Summary:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def summary() -> Summary:
    rows = RunTally.objects.values("status").annotate(n=Sum("count")).order_by("status")
    by_status = {row["status"]: row["n"] for row in rows if row["n"]}
    return Summary(total=sum(by_status.values()), by_status=by_status)


def tallies_by_hour(since: datetime) -> dict[datetime, dict[str, int]]:
    """Runs per hour and status since a moment, for the overview chart."""
    out: dict[datetime, dict[str, int]] = defaultdict(dict)
    rows = (
        RunTally.objects.filter(hour__gte=since)
        .values("hour", "status")
        .annotate(n=Sum("count"))
        .order_by("hour")
    )
    for row in rows:
        out[row["hour"]][row["status"]] = row["n"]
    return dict(out)


# --- The dashboard pages' reads (runs.views). Same rules: one indexed query per list, counters
# for totals.


def latest_run_id() -> int:
    """The live run list's starting cursor: ids grow with arrival, so "newer than this" is new."""
    return Run.objects.order_by("-id").values_list("id", flat=True).first() or 0


def latest_delivery_id() -> int:
    """The cursor the live counters follow: every accepted body adds a Delivery row."""
    return Delivery.objects.order_by("-id").values_list("id", flat=True).first() or 0


def delivered_after(after_id: int) -> bool:
    return Delivery.objects.filter(id__gt=after_id).exists()


def latest_delivery():
    return Delivery.objects.defer("raw").select_related("run").order_by("-id").first()


def latest_rejected() -> RejectedDelivery | None:
    return RejectedDelivery.objects.defer("raw").order_by("-received_at", "-id").first()


def filter_total(f: RunFilter) -> int | None:
    """How many runs match, when a counter row knows it; None when only a count could tell
    (free text, time ranges, API or error code filters are not counted anywhere)."""
    if f.q or f.since or f.until or f.api or f.error_code or f.parameters:
        return None
    narrowing = [name for name in ("project", "job", "job_run") if getattr(f, name)]
    statuses = set(f.statuses)
    if f.failure_group is not None:
        if narrowing or (statuses and "failed" not in statuses):
            return None if narrowing else 0
        return FailureGroup.objects.filter(pk=f.failure_group).values_list("count", flat=True).first() or 0
    if not narrowing:
        by_status = summary().by_status
        return sum(n for s, n in by_status.items() if not statuses or s in statuses)
    if f.job_run:
        job_runs = JobRun.objects.filter(job_run_id=f.job_run)
        if f.job:
            job_runs = job_runs.filter(job__job_id=f.job)
        if f.project:
            job_runs = job_runs.filter(job__project__project_id=f.project)
        rows = list(job_runs.values("total", "completed", "failed", "other")[:2])
        if len(rows) != 1:
            return 0 if not rows else None
        row = rows[0]
        if not statuses:
            return row["total"]
        if statuses <= {"completed", "failed"}:
            return sum(row[s] for s in statuses)
        return None
    if statuses and statuses != {"failed"}:
        return None
    column = "failed_count" if statuses else "run_count"
    if f.job:
        jobs = Job.objects.filter(job_id=f.job)
        if f.project:
            jobs = jobs.filter(project__project_id=f.project)
        return jobs.aggregate(n=Sum(column))["n"] or 0
    return Project.objects.filter(project_id=f.project).values_list(column, flat=True).first() or 0


def project_by_pk(pk: int) -> Project | None:
    return Project.objects.filter(pk=pk).first()


def job_by_pk(pk: int) -> Job | None:
    return Job.objects.select_related("project").filter(pk=pk).first()


def job_run_by_pk(pk: int) -> JobRun | None:
    return JobRun.objects.select_related("job__project").filter(pk=pk).first()


def failure_group_by_pk(pk: int) -> FailureGroup | None:
    return FailureGroup.objects.select_related("project").filter(pk=pk).first()


def jobs_by_project() -> list[Project]:
    """For the run list's job picker: projects and jobs are few rows, not runs."""
    return projects_with_jobs()


def error_codes_seen(limit: int = 200) -> list[str]:
    codes = FailureGroup.objects.order_by("error_code").values_list("error_code", flat=True)
    return [c for c in dict.fromkeys(codes[:2000]) if c][:limit]


def job_run_runs(job_run: JobRun, *, failed: bool, limit: int = DEFAULT_LIMIT) -> list[Run]:
    """A job run's latest failed runs, or its latest other runs (the job run page, failures first);
    both through the (job_run, status, id) index."""
    runs = _listed(Run.objects.filter(job_run=job_run))
    runs = runs.filter(status="failed") if failed else runs.exclude(status="failed")
    return list(runs.order_by("-id")[:limit])


def same_parameters(run: Run, limit: int = 20) -> list[Run]:
    """Runs of the same API with equal parameters in other job runs of the project, newest first,
    through the run_same_parameters index."""
    runs = _listed(
        Run.objects.filter(
            project_id=run.project_id,
            parameters_key=parameters_key(run.api_name, run.parameters_sha256),
            api_name=run.api_name,
            parameters_sha256=run.parameters_sha256,
        ).exclude(pk=run.pk)
    )
    if run.job_run_id:
        runs = runs.exclude(job_run_id=run.job_run_id)
    return list(runs.order_by("-id")[:limit])


def failure_days(group_ids: list[int], since) -> dict[int, dict]:
    """Failures per day for the given groups since a date (the /failures/ sparklines)."""
    out: dict[int, dict] = defaultdict(dict)
    rows = FailureDay.objects.filter(group_id__in=group_ids, day__gte=since)
    for group_id, day, count in rows.values_list("group_id", "day", "count"):
        out[group_id][day] = count
    return dict(out)


def failure_jobs(groups: list[FailureGroup]) -> dict[int, list[str]]:
    """The jobs each group's failures came from, most failures first, from the FailureJob
    counters: one query for a page of groups."""
    jobs: dict[int, list[str]] = defaultdict(list)
    rows = (
        FailureJob.objects.filter(group_id__in=[g.id for g in groups], count__gt=0)
        .order_by("group_id", "-count", "job__job_id")
        .values_list("group_id", "job__job_id")
    )
    for group_id, job_id in rows:
        jobs[group_id].append(job_id)
    return jobs


def delivery_for_view(delivery_id: int):
    return Delivery.objects.select_related("run").filter(pk=delivery_id).first()


def rejected_for_view(rejected_id: int) -> RejectedDelivery | None:
    return RejectedDelivery.objects.filter(pk=rejected_id).first()


def latest_rejected_id() -> int:
    return RejectedDelivery.objects.order_by("-id").values_list("id", flat=True).first() or 0


def latest_runs_of_project(project: Project, limit: int = 10) -> list[Run]:
    runs = _listed(Run.objects.filter(project=project))
    return list(runs.order_by("-id")[:limit])
