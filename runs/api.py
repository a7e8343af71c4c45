"""The JSON API (django-ninja): the sink that Intuned posts to, and the read routes behind sign-in.

OpenAPI docs are at /api/docs (signed-in users only, served from ninja's bundled static files).
"""

import json
import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils.datastructures import MultiValueDict
from ninja import NinjaAPI, Query, Schema, Status
from ninja.errors import ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer, django_auth

from runs import converters, export, queries  # noqa: F401  (converters: "run_id" in paths)
from runs.sink import accept
from runs.models import Delivery, RejectedDelivery, Run


class ApiToken(HttpBearer):
    """`Authorization: Bearer $SINKDASH_API_TOKEN` for scripts; unset, it never matches."""

    def authenticate(self, request: HttpRequest, token: str) -> str | None:
        expected = settings.API_TOKEN
        if expected and secrets.compare_digest(token.encode(), expected.encode()):
            return "api-token"
        return None


class OneValueEach(Parser):
    """A query parameter that takes one value, given more than once, is refused (422) instead of
    silently meaning its last value: `?cursor=5&cursor=9` has no one meaning. It reaches the
    schema as a list, which the parameter's type refuses; unknown names are still ignored."""

    def parse_querydict(self, data: MultiValueDict, list_fields: list[str], request: HttpRequest) -> dict:
        values = super().parse_querydict(data, list_fields, request)
        for name in data:
            if name not in list_fields and len(data.getlist(name)) > 1:
                values[name] = data.getlist(name)
        return values


api = NinjaAPI(
    title="sinkdash",
    version="1",
    description="Receives Intuned webhook-sink deliveries and serves what they hold.",
    auth=[django_auth, ApiToken()],
    docs_decorator=login_required,
    urls_namespace="api",
    parser=OneValueEach(),
)


class Error(Schema):
    detail: str
    field: str | None = None


class Accepted(Schema):
    run_id: str
    outcome: str
    delivery_id: int


@api.exception_handler(ValidationError)
def invalid_parameter(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Ninja's own 422 (a parameter of the wrong type) in the same shape as every other error."""
    first = exc.errors[0] if exc.errors else {}
    field = ".".join(str(part) for part in first.get("loc", [])[1:]) or None
    detail = f"{field}: {first.get('msg', 'invalid value')}" if field else "invalid request"
    return api.create_response(request, {"detail": detail, "field": field}, status=422)


@api.exception_handler(queries.BadFilter)
def bad_filter(request: HttpRequest, exc: queries.BadFilter) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=422)


SINK_RESPONSES = {200: Accepted, 201: Accepted, 400: Error, 401: Error, 413: Error, 422: Error, 503: Error}
SINK_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
    "security": [{"SinkToken": []}],
}


@api.post("/sink", auth=None, response=SINK_RESPONSES, openapi_extra=SINK_BODY,
          summary="Receive one Intuned sink delivery")  # fmt: skip
@api.post("/sink/", auth=None, response=SINK_RESPONSES, include_in_schema=False)
async def sink(request: HttpRequest):
    """One Run's JSON body, whatever the Content-Type says, with `Authorization: Bearer <sink
    token>`. 201 for a new run, 200 for an update, a repeat or an older body; 2xx only once the run
    and its delivery are committed. In production asgi.py serves this path through the lean
    endpoint in runs.sink; both call the same `accept`."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raw = None
    answer = await accept(raw, dict(request.headers.items()))
    response = api.create_response(request, answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response


class RunItem(Schema):
    run_id: str
    status: str
    api_name: str
    project_id: str
    project_name: str
    job_id: str | None
    job_run_id: str | None
    status_code: int | None
    error_code: str
    error_message: str
    error_category: str
    received_at: datetime

    @classmethod
    def of(cls, run: Run) -> dict[str, Any]:
        return {
            "run_id": run.run_id,
            "status": run.status,
            "api_name": run.api_name,
            "project_id": run.project.project_id,
            "project_name": run.project.name,
            "job_id": run.job.job_id if run.job_id else None,
            "job_run_id": run.job_run.job_run_id if run.job_run_id else None,
            "status_code": run.status_code,
            "error_code": run.error_code,
            "error_message": run.error_message,
            "error_category": run.error_category,
            "received_at": run.first_received_at,
        }


class RunPage(Schema):
    items: list[RunItem]
    next_cursor: str | None


class RunQuery(Schema):
    status: list[str] = []
    project: str = ""
    job: str = ""
    job_run: str = ""
    api: str = ""
    error_code: str = ""
    failure_group: str = ""
    parameters: str = ""
    q: str = ""
    since: str = ""
    until: str = ""
    limit: str = ""
    cursor: str = ""


@api.get("/runs", response={200: RunPage, 422: Error}, summary="Runs, newest first, filtered")
def list_runs(request: HttpRequest, filters: Query[RunQuery]):
    page = queries.run_page(queries.RunFilter.from_query(filters.dict()), messages=True)
    return {"items": [RunItem.of(run) for run in page.items], "next_cursor": page.next_cursor}


@api.get(
    "/runs/export",
    response={200: None, 422: Error},
    summary="The filtered run list as a CSV or JSONL download",
)
def export_runs(request: HttpRequest, filters: Query[RunQuery], format: str = "csv"):
    """Every run the filters match (limit and cursor are ignored), newest first, streamed.
    Registered before /runs/{run_id}, which would otherwise take "export" for a run id."""
    if format not in ("csv", "jsonl"):
        return Status(422, {"detail": "format must be csv or jsonl", "field": "format"})
    f = queries.RunFilter.from_query(filters.dict())
    name = f"runs-{export.stamp()}.{format}"
    if format == "csv":
        return export.download(request, export.runs_csv(f), name, "text/csv")
    return export.download(request, export.runs_jsonl(f), name, "application/x-ndjson")


class DeliveryItem(Schema):
    id: int
    received_at: datetime
    size: int
    sha256: str
    outcome: str
    source: str


class RunDetail(RunItem):
    parameters: Any
    parameters_sha256: str  # GET /api/runs?project=&api=&parameters=<this> lists its twins
    result: Any
    extra: dict[str, Any]
    auth_session_id: str
    started_at: datetime | None
    ended_at: datetime | None
    trace_url: str
    log_url: str
    error_doc_url: str
    last_received_at: datetime
    delivery_count: int
    deliveries: list[DeliveryItem]


@api.get("/runs/{run_id:run_id}", response={200: RunDetail, 404: Error}, summary="One run in full")
def get_run(request: HttpRequest, run_id: str):
    run = queries.run_detail(run_id)
    if run is None:
        return Status(404, {"detail": f"no run with id {run_id!r}"})
    result_json, extra_json = queries.state_of(run)
    return {
        **RunItem.of(run),
        "parameters": json.loads(run.parameters_json),
        "parameters_sha256": run.parameters_sha256,
        "result": json.loads(result_json),
        "extra": json.loads(extra_json),
        "auth_session_id": run.auth_session_id,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "trace_url": run.trace_url,
        "log_url": run.log_url,
        "error_doc_url": run.error_doc_url,
        "last_received_at": run.last_received_at,
        "delivery_count": run.delivery_count,
        "deliveries": list(
            queries.deliveries_of(run).values("id", "received_at", "size", "sha256", "outcome", "source")
        ),
    }


@api.get(
    "/deliveries/{delivery_id}/raw",
    response={200: None, 404: Error, 422: Error},
    summary="The exact bytes of one delivery",
)
def delivery_raw(request: HttpRequest, delivery_id: int):
    return stored_bytes(Delivery, delivery_id, "delivery")


def stored_bytes(model, pk: int, name: str):
    """The exact bytes kept on a row, as a download, or a 404 naming what was asked for."""
    raw = model.objects.filter(pk=pk).values_list("raw", flat=True).first()
    if raw is None:
        return Status(404, {"detail": f"no {model._meta.verbose_name} {pk}"})
    return raw_response(bytes(raw), f"{name}-{pk}.json")


def raw_response(raw: bytes, filename: str) -> HttpResponse:
    # Served as an attachment of an opaque type, so a browser never renders hostile bytes as a page.
    response = HttpResponse(raw, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class JobRunCounts(Schema):
    job_run_id: str
    job_id: str
    project_id: str
    total: int
    completed: int
    failed: int
    other: int
    first_received_at: datetime
    last_received_at: datetime


@api.get("/job-runs/{job_run_id}", response={200: JobRunCounts, 404: Error}, summary="Counters of a job run")
def get_job_run(request: HttpRequest, job_run_id: str):
    job_run = queries.job_run_by_id(job_run_id)
    if job_run is None:
        return Status(404, {"detail": f"no job run with id {job_run_id!r}"})
    return {
        "job_run_id": job_run.job_run_id,
        "job_id": job_run.job.job_id,
        "project_id": job_run.job.project.project_id,
        "total": job_run.total,
        "completed": job_run.completed,
        "failed": job_run.failed,
        "other": job_run.other,
        "first_received_at": job_run.first_received_at,
        "last_received_at": job_run.last_received_at,
    }


@api.get(
    "/job-runs/{job_run_id}/results.csv",
    response={200: None, 404: Error},
    summary="A job run's results as CSV: one row per result object",
)
def job_run_results(request: HttpRequest, job_run_id: str):
    """For runs whose result is an object or a list of objects; columns are run_id and the union
    of the objects' keys (nested values as JSON)."""
    job_runs = export.job_runs_named(job_run_id)
    if not job_runs:
        return Status(404, {"detail": f"no job run with id {job_run_id!r}"})
    name = f"job-run-{export.safe_filename(job_run_id)}-results.csv"
    return export.download(request, export.job_run_results_csv(job_runs), name, "text/csv")


class JobItem(Schema):
    job_id: str
    run_count: int
    failed_count: int
    last_received_at: datetime


class ProjectItem(Schema):
    project_id: str
    name: str
    workspace_id: str
    run_count: int
    failed_count: int
    last_received_at: datetime
    jobs: list[JobItem]


@api.get("/projects", response=list[ProjectItem], summary="Projects with their jobs and counters")
def list_projects(request: HttpRequest):
    return [
        {
            "project_id": p.project_id,
            "name": p.name,
            "workspace_id": p.workspace_id,
            "run_count": p.run_count,
            "failed_count": p.failed_count,
            "last_received_at": p.last_received_at,
            "jobs": [
                {
                    "job_id": j.job_id,
                    "run_count": j.run_count,
                    "failed_count": j.failed_count,
                    "last_received_at": j.last_received_at,
                }
                for j in p.jobs.all()
            ],
        }
        for p in queries.projects_with_jobs()
    ]


class FailureItem(Schema):
    id: int
    error_code: str
    error_category: str
    message: str
    api_name: str
    project_id: str
    count: int
    first_seen: datetime
    last_seen: datetime
    sample_run_id: str | None


class FailurePage(Schema):
    items: list[FailureItem]
    next_cursor: str | None


@api.get("/failures", response={200: FailurePage, 422: Error}, summary="Failure groups, most recently seen first")
def list_failures(
    request: HttpRequest, project: str = "", job: str = "", limit: int = 50, cursor: int | None = None
):
    f = queries.FailureFilter(project, job, min(max(limit, 1), queries.MAX_LIMIT), cursor)
    page = queries.failure_page(f)
    items = [
        {
            "id": g.id,
            "error_code": g.error_code,
            "error_category": g.error_category,
            "message": g.message,
            "api_name": g.api_name,
            "project_id": g.project.project_id,
            "count": g.count,
            "first_seen": g.first_seen,
            "last_seen": g.last_seen,
            "sample_run_id": g.sample_run.run_id if g.sample_run else None,
        }
        for g in page.items
    ]
    return {"items": items, "next_cursor": page.next_cursor}


class RejectedItem(Schema):
    id: int
    received_at: datetime
    http_status: int
    reason: str
    field: str
    size: int
    sha256: str
    source: str


class RejectedPage(Schema):
    items: list[RejectedItem]
    next_cursor: str | None


@api.get("/rejected", response={200: RejectedPage, 422: Error}, summary="Quarantined deliveries, newest first")
def list_rejected(request: HttpRequest, limit: int = 50, cursor: int | None = None):
    page = queries.rejected_page(min(max(limit, 1), queries.MAX_LIMIT), cursor)
    fields = RejectedItem.model_fields
    return {
        "items": [{name: getattr(r, name) for name in fields} for r in page.items],
        "next_cursor": page.next_cursor,
    }


@api.get("/rejected/{rejected_id}/raw", response={200: None, 404: Error, 422: Error}, summary="A refused body")
def rejected_raw(request: HttpRequest, rejected_id: int):
    return stored_bytes(RejectedDelivery, rejected_id, "rejected")


class SummaryOut(Schema):
    total: int
    by_status: dict[str, int]


@api.get("/summary", response=SummaryOut, summary="Run totals by status, from counters")
def get_summary(request: HttpRequest):
    s = queries.summary()
    return {"total": s.total, "by_status": s.by_status}
