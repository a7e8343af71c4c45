"""The dashboard pages: server-rendered; htmx swaps the {% partialdef %} parts.

Each view parses the query string, calls one read function in runs.queries (shared with the JSON
API) and renders its template, or only the page's swappable part when htmx asks.

Live updates are htmx polling against a row-id cursor, not Server-Sent Events: the cursor (the
newest Run or Delivery id the page has seen) lives in the page and the rows live in the database,
so any server process, WSGI or ASGI, SQLite or PostgreSQL, can answer the next poll, and no
process keeps a connection or state per open tab. A poll with nothing new is one primary-key
lookup answered with 204, which htmx leaves alone. The run list carries two cursors: run ids for
new rows, delivery ids for rows a later body changed (within the ids it shows). app.js fires the
ticks, only while the tab is visible (and, for the run list, not paused), because htmx's own
conditional triggers need eval, which the CSP forbids.
"""

import json
from urllib.parse import urlencode
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from runs import charts, queries
from runs.api import raw_response
from runs.models import Status

# A result bigger than this is shown as a preview with a download link, so a 2 MB result does not
# make a 2 MB page; raw bodies shown inline are cut at the same length.
PREVIEW_CHARS = 20_000
# Deliveries a run's page lists, oldest first. Each is a row, and a sender caught in a loop could
# post the same body thousands of times; GET /api/runs/<id> lists them all.
DELIVERIES_SHOWN = 100
NO_CHANGE = 204


@login_not_required
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def _page(
    request: HttpRequest, template: str, context: dict, part: str = "content", status: int = 200
) -> HttpResponse:
    """The whole page, or only `part` for an htmx request. A history restore (Back after htmx
    pushed a URL, with the cache off) needs the whole page."""
    htmx = getattr(request, "htmx", None)
    name = f"{template}#{part}" if htmx and not htmx.history_restore_request else template
    response = render(request, name, context, status=status)
    # The same URL answers with a page or a fragment: caches (and the back button) must tell them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def _cursor(request: HttpRequest, name: str = "after") -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


def _unchanged(request: HttpRequest) -> bool:
    """A live poll that nothing new has arrived for since its cursor."""
    after = _cursor(request)
    return after is not None and not queries.delivered_after(after)


def _live(request: HttpRequest) -> bool:
    return _cursor(request) is not None


def _bad_filter(request: HttpRequest, template: str, error: queries.BadFilter, context=None):
    context = {"error": str(error), **(context or {})}
    return _page(request, template, context, "results", status=400)


def favicon(request: HttpRequest) -> HttpResponse:
    # Browsers ask for /favicon.ico whatever the page links; a 404 would show as a console error.
    # Behind the wall like every page (the sign-in page links the icon itself).
    return redirect(static("sinkdash/icon.svg"), permanent=True)


# --- Overview


def overview(request: HttpRequest) -> HttpResponse:
    if _unchanged(request):
        return HttpResponse(status=NO_CHANGE)
    since = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    projects = queries.projects_with_jobs()
    latest = queries.latest_job_runs_of([j for p in projects for j in p.jobs.all()], 3)
    context = {
        "projects": [(p, [(j, latest[j.pk]) for j in p.jobs.all()]) for p in projects],
        "summary": queries.summary(),
        "bars": charts.hourly_bars(queries.tallies_by_hour(since)),
        "chart": charts,
        "failures": queries.failure_page(queries.FailureFilter(limit=6)).items,
        "cursor": queries.latest_delivery_id(),
    }
    return _page(request, "runs/overview.html", context, "live")


# --- The run list


def _run_list_context(f: queries.RunFilter) -> dict:
    projects = queries.jobs_by_project()
    return {
        "filter": f,
        "statuses": list(dict.fromkeys([*Status.values, *f.statuses])),
        "projects": projects,
        "error_codes": queries.error_codes_seen(),
        "since_value": f.since.strftime("%Y-%m-%dT%H:%M") if f.since else "",
        "until_value": f.until.strftime("%Y-%m-%dT%H:%M") if f.until else "",
        "group": queries.failure_group_by_pk(f.failure_group) if f.failure_group else None,
        "search_window": queries.SEARCH_WINDOW,
    }


def run_list(request: HttpRequest) -> HttpResponse:
    try:
        f = queries.RunFilter.from_query(request.GET)
    except queries.BadFilter as error:
        return _bad_filter(request, "runs/list.html", error, _run_list_context(queries.RunFilter()))
    after = _cursor(request)
    if after is not None:
        return _new_runs(request, f, after)
    page = queries.run_page(f)
    # Only the first page follows new runs; an "older" page stays put.
    live_cursor = queries.latest_run_id() if f.cursor is None else None
    context = {
        **_run_list_context(f),
        "runs": page.items,
        "next_cursor": page.next_cursor,
        "total": queries.filter_total(f),
        "live_cursor": live_cursor,
        "delivery_cursor": queries.latest_delivery_id(),
        # The oldest run the page shows: a change to a run below it has no row here to redraw.
        "shown_from": page.items[-1].id if page.items else (live_cursor or 0) + 1,
    }
    return _page(request, "runs/list.html", context, "results")


def _new_runs(request: HttpRequest, f: queries.RunFilter, after: int) -> HttpResponse:
    """The live list's poll: rows newer than the run cursor that match the filters, rows already
    listed that a later body changed (redrawn, or removed once they no longer match), and the
    poller with both cursors moved on."""
    delivered, shown_from = _cursor(request, "delivered"), _cursor(request, "shown") or 0
    top = queries.latest_delivery_id()
    if delivered is not None and delivered >= top:
        return HttpResponse(status=NO_CHANGE)  # no body arrived at all since the last poll
    runs = queries.runs_after(f, after)
    if delivered is None:  # a poller from before the delivery cursor: new rows only
        if not runs:
            return HttpResponse(status=NO_CHANGE)
        changed, gone = [], []
    else:
        changed, gone = queries.runs_updated(f, delivered, top, (shown_from, after))
    context = {
        "runs": runs, "changed": changed, "gone": gone, "fresh": True,
        "live_cursor": runs[0].id if runs else after, "delivery_cursor": top, "shown_from": shown_from,
    }  # fmt: skip
    return render(request, "runs/list.html#new-rows", context)


# --- One run


def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    run = queries.run_detail(run_id)
    if run is None:
        raise Http404(f"no run with id {run_id!r}")
    state_delivery, state_raw = queries.state_body(run)
    result_json, extra_json = queries.result_and_extra(state_raw)
    deliveries = list(queries.deliveries_of(run)[:DELIVERIES_SHOWN])
    context = {
        "run": run,
        **_previews(message=run.error_message, parameters=_pretty(run.parameters_json), result=_pretty(result_json)),
        "has_result": result_json != "null",
        "result_size": len(result_json.encode()),
        "extra": _pretty(extra_json) if extra_json != "{}" else "",
        # The body the run's state came from, whole, for what the previews cut: looked up, not
        # found among the deliveries listed, which are only the first DELIVERIES_SHOWN.
        "state_delivery": state_delivery,
        "deliveries": deliveries,
        "same_parameters": queries.same_parameters(run),
        "same_parameters_url": _same_parameters_url(run),
    }
    return _page(request, "runs/run.html", context)


def _same_parameters_url(run) -> str:
    """The run list narrowed to this API's runs with these exact parameters, in every job run."""
    if not (run.api_name and run.parameters_sha256):
        return ""
    query = {"project": run.project.project_id, "api": run.api_name, "parameters": run.parameters_sha256}
    return f"{reverse('run-list')}?{urlencode(query)}"


def _indented(value: object) -> str:
    """Pretty JSON, non-ASCII readable, except when it holds a lone surrogate (legal in JSON as an
    escape), which only the escaped form can carry into a UTF-8 page."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, indent=2)
    return text


def _pretty(text: str) -> str:
    """Stored JSON text pretty-printed; the template escapes it like any other text."""
    try:
        return _indented(json.loads(text))
    except ValueError:
        return text


def run_result(request: HttpRequest, run_id: str) -> HttpResponse:
    run = queries.run_detail(run_id)
    if run is None:
        raise Http404(f"no run with id {run_id!r}")
    result_json, _ = queries.state_of(run)
    return raw_response(result_json.encode(), "result.json")


def _cut(text: str) -> tuple[str, bool]:
    """The start of a long text a page shows, and whether it is cut. Scraped pages end up in
    messages, parameters and results, up to the body's 10 MB: a run whose message held 5 MB made
    a page of 7.9 MB."""
    return text[:PREVIEW_CHARS], len(text) > PREVIEW_CHARS


def _previews(**texts: str) -> dict[str, str | bool]:
    """<name>_preview and <name>_cut (_cut) of each text, for a template."""
    previews: dict[str, str | bool] = {}
    for name, text in texts.items():
        previews[f"{name}_preview"], previews[f"{name}_cut"] = _cut(text)
    return previews


def _body_preview(raw: bytes) -> tuple[str, bool]:
    text = raw.decode("utf-8", errors="replace")
    try:
        text = _indented(json.loads(text))
    except ValueError:
        pass
    return _cut(text)


@require_GET
def delivery_body(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = queries.delivery_for_view(delivery_id)
    if delivery is None:
        raise Http404(f"no delivery {delivery_id}")
    return _body_page(request, "delivery", delivery, f"/api/deliveries/{delivery.pk}/raw")


def _body_page(request: HttpRequest, name: str, item, download: str) -> HttpResponse:
    """A stored body (a delivery's or a refused one) as escaped text, with its headers."""
    body, cut = _body_preview(bytes(item.raw))
    context = {name: item, "body": body, "cut": cut, "headers": _pretty(item.headers_json), "download": download}
    return _page(request, "runs/body.html", context)


# --- Failures, projects, jobs, job runs


def failures(request: HttpRequest) -> HttpResponse:
    if _unchanged(request):
        return HttpResponse(status=NO_CHANGE)
    project, job = request.GET.get("project", "").strip(), request.GET.get("job", "").strip()
    try:
        cursor = queries._int(request.GET.get("cursor", ""), "cursor")
    except queries.BadFilter as error:
        return _bad_filter(request, "runs/failures.html", error, {"projects": queries.projects_with_jobs()})
    page = queries.failure_page(queries.FailureFilter(project, job, cursor=cursor))
    today = timezone.now().date()
    days = queries.failure_days([g.id for g in page.items], today - timedelta(days=13))
    jobs = queries.failure_jobs(page.items)
    context = {
        "groups": [
            (g, charts.sparkline(days.get(g.id, {}), today), jobs.get(g.id, [])) for g in page.items
        ],
        "next_cursor": page.next_cursor,
        "project": project,
        "job": job,
        "projects": queries.projects_with_jobs(),
        "cursor": queries.latest_delivery_id() if cursor is None else None,
    }
    return _page(request, "runs/failures.html", context, "live" if _live(request) else "results")


def project_detail(request: HttpRequest, pk: int) -> HttpResponse:
    project = queries.project_by_pk(pk)
    if project is None:
        raise Http404("no such project")
    if _unchanged(request):
        return HttpResponse(status=NO_CHANGE)
    jobs = list(project.jobs.all())
    latest = queries.latest_job_runs_of(jobs, 5)
    context = {
        "project": project,
        "jobs": [(j, latest[j.pk]) for j in jobs],
        "failures": queries.failure_page(queries.FailureFilter(project.project_id, limit=10)).items,
        "runs": queries.latest_runs_of_project(project),
        "cursor": queries.latest_delivery_id(),
    }
    return _page(request, "runs/project.html", context, "live")


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = queries.job_by_pk(pk)
    if job is None:
        raise Http404("no such job")
    if _unchanged(request):
        return HttpResponse(status=NO_CHANGE)
    f = queries.FailureFilter(job.project.project_id, job.job_id, limit=10)
    context = {
        "job": job,
        "project": job.project,
        "job_runs": queries.latest_job_runs(job, 50),
        "failures": queries.failure_page(f).items,
        "cursor": queries.latest_delivery_id(),
    }
    return _page(request, "runs/job.html", context, "live")


def job_run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job_run = queries.job_run_by_pk(pk)
    if job_run is None:
        raise Http404("no such job run")
    if _unchanged(request):
        return HttpResponse(status=NO_CHANGE)
    context = {
        "job_run": job_run,
        "job": job_run.job,
        "project": job_run.job.project,
        "failed_runs": queries.job_run_runs(job_run, failed=True),
        "other_runs": queries.job_run_runs(job_run, failed=False),
        "run_query": urlencode(
            {"project": job_run.job.project.project_id, "job": job_run.job.job_id, "job_run": job_run.job_run_id}
        ),
        "cursor": queries.latest_delivery_id(),
    }
    return _page(request, "runs/job_run.html", context, "live")


# --- The quarantine


def rejected(request: HttpRequest) -> HttpResponse:
    try:
        cursor = queries._int(request.GET.get("cursor", ""), "cursor")
    except queries.BadFilter as error:
        return _bad_filter(request, "runs/rejected.html", error)
    page = queries.rejected_page(cursor=cursor)
    context = {"items": page.items, "next_cursor": page.next_cursor}
    return _page(request, "runs/rejected.html", context, "results")


@require_GET
def rejected_body(request: HttpRequest, rejected_id: int) -> HttpResponse:
    item = queries.rejected_for_view(rejected_id)
    if item is None:
        raise Http404(f"no rejected delivery {rejected_id}")
    return _body_page(request, "rejected", item, f"/api/rejected/{item.pk}/raw")


# --- Connecting Intuned


def _sink_url(request: HttpRequest) -> str:
    if settings.PUBLIC_URL:
        return f"{settings.PUBLIC_URL}/api/sink"
    return request.build_absolute_uri("/api/sink")


def _connect_context(request: HttpRequest, token: str) -> dict:
    url = _sink_url(request)
    sink = {"type": "webhook", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
    sample = json.dumps(
        {
            "apiInfo": {
                "name": "sample",
                "parameters": {},
                "runId": "sinkdash-sample-run",
                "result": {"status": "completed", "result": {"hello": "sinkdash"}, "statusCode": 200},
            },
            "project": {"id": "sample-project", "name": "sample"},
        }
    )
    curl = (
        f"curl -sS -X POST '{url}' -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' --data '{sample}'"
    )
    return {"sink_url": url, "sink_json": json.dumps(sink, indent=2, ensure_ascii=False), "curl": curl, "revealed": token != _HIDDEN}


_HIDDEN = "••••••••"


def connect(request: HttpRequest) -> HttpResponse:
    if _unchanged(request) and _cursor(request, "refused") == queries.latest_rejected_id():
        return HttpResponse(status=NO_CHANGE)
    context = {
        **_connect_context(request, _HIDDEN),
        "last_delivery": queries.latest_delivery(),
        "last_rejected": queries.latest_rejected(),
        "cursor": queries.latest_delivery_id(),
        "refused_cursor": queries.latest_rejected_id(),
    }
    return _page(request, "runs/connect.html", context, "received" if _live(request) else "content")


@require_POST
def connect_token(request: HttpRequest) -> HttpResponse:
    """The sink token, only on a signed-in POST (the wall covers this view), so it is never in a
    page's HTML until someone asks for it."""
    response = render(request, "runs/connect.html#setup", _connect_context(request, settings.SINK_TOKEN))
    response["Cache-Control"] = "no-store"
    return response
