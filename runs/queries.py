"""The read side, shared by the pages and the JSON API: every list is one indexed query of one
page (keyset on id, newest first), and every total comes from a counter row."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from django.db.models import Q, QuerySet, Sum
from django.utils.dateparse import parse_datetime, parse_date
from django.utils import timezone
from datetime import UTC, time

from runs.models import FailureGroup, Job, JobRun, Project, RejectedDelivery, Run, RunTally

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
            return tuple(dict.fromkeys(out))

        def one(name: str) -> str:
            values = many(name) if name != "q" else (str(query.get("q") or "").strip(),)
            return values[0] if values else ""

        return cls(
            statuses=many("status"),
            project=one("project"),
            job=one("job"),
            job_run=one("job_run"),
            api=one("api"),
            error_code=one("error_code"),
            failure_group=_int(one("failure_group"), "failure_group"),
            q=one("q")[:200],
            since=_moment(one("since"), "since", end=False),
            until=_moment(one("until"), "until", end=True),
            limit=min(max(_int(one("limit"), "limit") or DEFAULT_LIMIT, 1), MAX_LIMIT),
            cursor=_int(one("cursor"), "cursor"),
        )

    def is_empty(self) -> bool:
        return self == RunFilter(limit=self.limit, cursor=self.cursor)


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
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            if day is None:
                raise ValueError
            moment = datetime.combine(day, time.max if end else time.min)
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
    if f.error_code:
        runs = runs.filter(error_code=f.error_code)
    if f.failure_group is not None:
        runs = runs.filter(failure_group_id=f.failure_group)
    if f.q:
        runs = runs.filter(
            Q(run_id=f.q)
            | Q(api_name__icontains=f.q)
            | Q(error_message__icontains=f.q)
            | Q(parameters_json__icontains=f.q)
        )
    low, high = id_bounds(f.since, f.until)
    if low is not None:
        runs = runs.filter(id__gte=low)
    if high is not None:
        runs = runs.filter(id__lte=high)
    return runs.order_by("-id")


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


def run_page(f: RunFilter) -> Page:
    runs = filter_runs(f).select_related("project", "job", "job_run")
    if f.cursor is not None:
        runs = runs.filter(id__lt=f.cursor)
    items = list(runs[: f.limit + 1])
    more = len(items) > f.limit
    items = items[: f.limit]
    return Page(items, str(items[-1].id) if more else None)


def runs_after(f: RunFilter, after_id: int, limit: int = MAX_LIMIT) -> list[Run]:
    """Runs newer than a row-id cursor that match the filter (the live run list)."""
    runs = filter_runs(f).filter(id__gt=after_id).select_related("project", "job", "job_run")
    return list(runs[:limit])


def run_detail(run_id: str) -> Run | None:
    return (
        Run.objects.select_related("project", "job", "job_run", "failure_group")
        .filter(run_id=run_id)
        .first()
    )


def deliveries_of(run: Run):
    return run.deliveries.order_by("id").defer("raw")


def job_run_by_id(job_run_id: str) -> JobRun | None:
    return JobRun.objects.select_related("job__project").filter(job_run_id=job_run_id).first()


def projects_with_jobs() -> list[Project]:
    return list(Project.objects.prefetch_related("jobs").order_by("name", "project_id"))


def latest_job_runs(job: Job, limit: int = 10) -> list[JobRun]:
    return list(job.job_runs.order_by("-last_received_at", "-id")[:limit])


@dataclass(frozen=True)
class FailureFilter:
    project: str = ""
    job: str = ""
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None


def failure_page(f: FailureFilter) -> Page:
    groups = FailureGroup.objects.select_related("project", "sample_run").order_by(
        "-last_seen", "-id"
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
