"""The run list and job run pages link to exports that keep the filters in view."""

import csv
import io

import pytest

from tests.conftest import documented_body

pytestmark = pytest.mark.django_db


def test_run_list_download_links_keep_the_current_filters(signed_in, sink):
    sink.post(documented_body("d-1", status="failed", job_run="jr-x"))
    sink.post(documented_body("d-2", job_run="jr-x"))
    page = signed_in.get("/runs/?status=failed&job_run=jr-x").content.decode()
    href = "/api/runs/export?status=failed&amp;job_run=jr-x&amp;format=csv"
    assert href in page
    rows = list(csv.DictReader(io.StringIO(b"".join(signed_in.get(href.replace("&amp;", "&")).streaming_content).decode())))
    assert [row["run_id"] for row in rows] == ["d-1"]


def test_htmx_filter_change_updates_the_download_links(signed_in, sink):
    sink.post(documented_body("d-3"))
    fragment = signed_in.get("/runs/?status=completed", headers={"HX-Request": "true"}).content.decode()
    assert "/api/runs/export?status=completed&amp;format=jsonl" in fragment


def test_job_run_page_offers_its_results_as_rows(signed_in, sink):
    sink.post(documented_body("d-4", job_run="jr-r", result=[{"title": "a"}, {"title": "b"}]))
    from runs.models import JobRun

    page = signed_in.get(f"/job-runs/{JobRun.objects.get().pk}/").content.decode()
    assert "/api/job-runs/jr-r/results.csv" in page
    rows = list(csv.DictReader(io.StringIO(b"".join(signed_in.get("/api/job-runs/jr-r/results.csv").streaming_content).decode())))
    assert [row["title"] for row in rows] == ["a", "b"]
