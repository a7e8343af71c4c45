"""The overview: projects, jobs and their latest job runs from counters, the chart, failures, live."""

import pytest

from runs.models import Delivery, FailureGroup, Job, JobRun, Project
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


def test_empty_overview_says_how_to_connect(signed_in):
    response = signed_in.get("/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "No deliveries yet" in body
    assert 'href="/connect/"' in body


def test_overview_shows_projects_jobs_and_job_run_counters(sink, signed_in):
    sink.post(documented_body("r1"))
    sink.post(documented_body("r2", status="failed"))
    sink.post(documented_body("r3", job_run="jr-2"))
    body = signed_in.get("/").content.decode()
    assert "shop" in body and "nightly" in body
    assert "jr-1" in body and "jr-2" in body
    assert "50%" in body  # jr-1: one completed of two
    assert "3</strong> runs" in body
    assert "script-execution-exception" in body  # recent failure groups
    assert "<svg class=\"chart\"" in body
    assert 'aria-label="1 completed, 1 failed, 0 other"' in body


def test_overview_links_each_project_job_and_job_run(sink, signed_in):
    sink.post(documented_body("r1"))
    body = signed_in.get("/").content.decode()
    assert 'href="/projects/' in body and 'href="/jobs/' in body and 'href="/job-runs/' in body


def test_overview_has_no_inline_style_or_script(sink, signed_in):
    sink.post(documented_body("r1", status="failed"))
    body = signed_in.get("/").content.decode()
    assert "style=" not in body
    assert "<script>" not in body and "<style" not in body


def test_htmx_request_gets_the_live_part_only(sink, signed_in):
    sink.post(documented_body("r1"))
    response = signed_in.get("/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert 'id="overview"' in body


def test_live_poll_answers_204_until_a_delivery_arrives(sink, signed_in):
    sink.post(documented_body("r1"))
    cursor = Delivery.objects.latest("id").id
    nothing = signed_in.get(f"/?after={cursor}", headers={"HX-Request": "true"})
    assert nothing.status_code == 204
    sink.post(newer_body("r2", failed=True))
    moved = signed_in.get(f"/?after={cursor}", headers={"HX-Request": "true"})
    assert moved.status_code == 200
    body = moved.content.decode()
    assert "<html" not in body
    assert "script-timeout" in body  # the new failure group appeared
    assert f"after={Delivery.objects.latest('id').id}" in body  # the poller moved its cursor


def test_history_restore_gets_the_whole_page(sink, signed_in):
    sink.post(documented_body("r1"))
    headers = {"HX-Request": "true", "HX-History-Restore-Request": "true"}
    assert "<html" in signed_in.get("/", headers=headers).content.decode()


def test_counts_in_the_millions_are_grouped_and_ids_in_links_are_not(sink, signed_in):
    sink.post(documented_body("r1", status="failed"))
    Project.objects.update(run_count=1_234_567, failed_count=12_345)
    Job.objects.update(run_count=1_234_000)
    JobRun.objects.update(total=1_000_001, completed=999_000, failed=1_001, other=0)
    group = FailureGroup.objects.get()
    group.pk, group.fingerprint, group.count = 1_000_000, "f" * 64, 45_678  # saved as a second group
    group.save(force_insert=True)

    body = signed_in.get("/").content.decode()
    assert "1,234,567 runs" in body and "12,345 failed" in body and "1,234,000 runs" in body
    assert '<td class="num">1,000,001</td>' in body and ">1,001</a>" in body
    assert "45,678 runs" in body
    assert "failure_group=1000000" in body  # an id, as it is
    job_run = JobRun.objects.get()
    page = signed_in.get(f"/job-runs/{job_run.pk}/").content.decode()
    assert "<strong>1,000,001</strong> runs" in page and "<strong>999,000</strong> completed" in page
    assert "45,678" in signed_in.get("/failures/").content.decode()
