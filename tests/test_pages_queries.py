"""Pages and API lists ask the database a fixed number of questions however many rows they show:
no query per row (a deferred field read by a template, a relation not selected), which at a million
runs would turn a 50-row page into 50 more round trips."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.models import FailureGroup, Job, JobRun, Project
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
