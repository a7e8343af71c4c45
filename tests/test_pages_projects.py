"""Project, job and job run pages: counters from the parent rows, links everywhere, live counters."""

import pytest

from runs.models import Delivery, Job, JobRun, Project
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def job_run(sink) -> JobRun:
    sink.post(documented_body("c-1"))
    sink.post(documented_body("c-2"))
    sink.post(documented_body("f-1", status="failed"))
    sink.post(newer_body("t-1", reason={"type": "terminated", "message": "Max runs exceeded"}))
    sink.post(documented_body("other-jr", job_run="jr-2"))
    return JobRun.objects.get(job_run_id="jr-1")


def test_project_page_shows_jobs_job_runs_failures_and_latest_runs(job_run, signed_in):
    project = Project.objects.get()
    body = signed_in.get(f"/projects/{project.pk}/").content.decode()
    assert "5</strong> runs" in body and "1 failed" in body
    assert f'href="/jobs/{job_run.job_id}/"' in body
    assert f'href="/job-runs/{job_run.pk}/"' in body
    assert "script-execution-exception" in body
    assert 'href="/runs/c-1/"' in body
    assert 'href="/runs/?project=proj-1"' in body


def test_job_page_lists_job_runs_with_counters_and_success_rate(job_run, signed_in):
    job = Job.objects.get()
    body = signed_in.get(f"/jobs/{job.pk}/").content.decode()
    assert "jr-1" in body and "jr-2" in body
    assert "50%" in body  # jr-1: 2 of 4 completed
    assert "100%" in body  # jr-2
    assert 'aria-label="2 completed, 1 failed, 1 other"' in body


def test_job_run_page_shows_progress_counters_and_failures_first(job_run, signed_in):
    body = signed_in.get(f"/job-runs/{job_run.pk}/").content.decode()
    assert "<strong>4</strong> runs" in body
    assert "<strong>2</strong> completed" in body
    assert "<strong>1</strong> failed" in body
    assert "<strong>1</strong> other" in body
    assert body.index('href="/runs/f-1/"') < body.index('href="/runs/c-2/"')
    assert 'href="/runs/other-jr/"' not in body
    assert "job_run=jr-1" in body


def test_job_run_counters_move_on_the_next_poll(job_run, sink, signed_in):
    cursor = Delivery.objects.latest("id").id
    poll = f"/job-runs/{job_run.pk}/?after={cursor}"
    assert signed_in.get(poll, headers={"HX-Request": "true"}).status_code == 204
    sink.post(documented_body("f-2", status="failed"))
    response = signed_in.get(poll, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert "<strong>5</strong> runs" in body and "<strong>2</strong> failed" in body


@pytest.mark.parametrize("page", ["projects", "jobs"])
def test_project_and_job_pages_poll_too(job_run, sink, signed_in, page):
    pk = job_run.job.project_id if page == "projects" else job_run.job_id
    cursor = Delivery.objects.latest("id").id
    assert signed_in.get(f"/{page}/{pk}/?after={cursor}", headers={"HX-Request": "true"}).status_code == 204
    sink.post(documented_body("c-9"))
    response = signed_in.get(f"/{page}/{pk}/?after={cursor}", headers={"HX-Request": "true"})
    assert response.status_code == 200 and "<html" not in response.content.decode()


@pytest.mark.parametrize("path", ["/projects/999/", "/jobs/999/", "/job-runs/999/"])
def test_unknown_ids_are_404(signed_in, path):
    assert signed_in.get(path).status_code == 404
