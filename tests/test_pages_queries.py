"""Pages and API lists ask the database a fixed number of questions however many rows they show:
no query per row (a deferred field read by a template, a relation not selected), which at a million
runs would turn a 50-row page into 50 more round trips."""

import re
from html import escape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import queries
from runs.models import FailureGroup, Job, JobRun, Project, Run
from runs.templatetags.sinkdash import clip
from tests.conftest import documented_body

pytestmark = pytest.mark.django_db


def load(sink, start: int, count: int) -> None:
    # One job for the first ten runs, then a new job every ten: the overview and project pages
    # list each job's latest job runs, so they must not ask once per job either.
    for i in range(start, start + count):
        failed = i % 2 == 0
        body = documented_body(
            f"q-{i}", status="failed" if failed else "completed", job=f"job-{i // 10}", job_run=f"jr-{i % 3}",
            parameters={"url": "https://shop.example/p/same"},
            message=f"TimeoutError: selector #{i % 4} not found",
        )  # fmt: skip
        assert sink.post(body).status_code == 201


def pages() -> list[str]:
    job_run = JobRun.objects.filter(job_run_id="jr-0").order_by("id").first()
    return [
        "/", "/runs/", "/runs/?status=failed", "/runs/q-2/", "/failures/",
        f"/projects/{Project.objects.get().pk}/", f"/jobs/{Job.objects.order_by('id').first().pk}/",
        f"/job-runs/{job_run.pk}/",
        f"/runs/?failure_group={FailureGroup.objects.first().pk}",
        "/api/runs", "/api/failures", "/api/runs/q-2",
    ]  # fmt: skip


def queries_per_page(client) -> dict[str, int]:
    counts = {}
    for url in pages():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200, url
        counts[url] = len(captured)
    return counts


def test_queries_do_not_grow_with_the_rows_shown(sink, signed_in):
    load(sink, 0, 6)
    few = queries_per_page(signed_in)
    load(sink, 6, 40)
    many = queries_per_page(signed_in)
    assert many == few


# A scraped page in an error message: messages are bounded only by the body's 10 MB.
PAGE = "<div class='row'>scraped &amp; kept, ünï\u0301</div>\n" * 40_000  # about 1.9 MB


def _whole_messages_read(captured) -> list[str]:
    """The statements that read error_message itself, not through SUBSTR (which is what the lists'
    previews are made with, SUBSTRING on PostgreSQL)."""
    column = re.compile(r'(?:"\w+"\.)?"error_message"')
    preview = re.compile(r'SUBSTR(?:ING)?\((?:"\w+"\.)?"error_message"')
    return [q["sql"] for q in captured if len(column.findall(q["sql"])) > len(preview.findall(q["sql"]))]


def test_lists_load_the_start_of_error_messages_and_the_api_the_whole(sink, signed_in):
    load(sink, 0, 6)
    message = "TimeoutError on https://shop.example/p/1: " + PAGE
    body = documented_body(
        "big-1", status="failed", message=message, job="job-0", job_run="jr-1",
        parameters={"url": "https://shop.example/p/same"},
    )  # fmt: skip
    assert sink.post(body).status_code == 201
    job_run = Run.objects.select_related("job_run").get(run_id="big-1").job_run
    group = FailureGroup.objects.get(sample_run__run_id="big-1")
    lists = [
        "/", "/runs/", "/runs/?status=failed", "/failures/", f"/runs/?failure_group={group.pk}",
        f"/projects/{Project.objects.get().pk}/", f"/jobs/{job_run.job_id}/", f"/job-runs/{job_run.pk}/",
        "/api/failures",
    ]  # fmt: skip
    for url in lists:
        with CaptureQueriesContext(connection) as captured:
            response = signed_in.get(url)
        assert response.status_code == 200, url
        assert _whole_messages_read(captured) == [], url
    # The row shows what the whole message would: its first 140 characters, escaped.
    runs = queries.run_page(queries.RunFilter(statuses=("failed",))).items
    assert runs[0].run_id == "big-1" and "error_message" in runs[0].get_deferred_fields()
    assert runs[0].error_preview == message[: queries.MESSAGE_PREVIEW_CHARS]
    row = signed_in.get("/runs/?status=failed").content.decode()
    assert escape(clip(message, 140)) in row and "&lt;div class=&#x27;row&#x27;&gt;scraped &amp;amp;" in row
    # The same-parameters list on another run's page, and the run's own page, which shows it all.
    assert "error_message" in queries.same_parameters(Run.objects.get(run_id="q-0"))[0].get_deferred_fields()
    assert escape(PAGE[:5000]) in signed_in.get("/runs/big-1/").content.decode()
    # GET /api/runs returns each message whole.
    with CaptureQueriesContext(connection) as captured:
        items = signed_in.get("/api/runs?status=failed").json()["items"]
    assert items[0]["error_message"] == message and _whole_messages_read(captured)
