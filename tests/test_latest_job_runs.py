"""The overview, project and job pages show each job's latest job runs: newest first, at most the
number asked for, for every job at once, and none for a job that has not run."""

import pytest

from runs import queries
from runs.models import Job
from tests.conftest import documented_body

pytestmark = pytest.mark.django_db


def test_each_job_gets_its_own_latest_job_runs_newest_first(sink):
    for job, job_runs in (("nightly", 5), ("hourly", 2)):
        for n in range(job_runs):
            assert sink.post(documented_body(f"{job}-{n}", job=job, job_run=f"{job}-jr-{n}")).status_code == 201
    # A later delivery makes an older job run the latest one.
    assert sink.post(documented_body("nightly-again", job="nightly", job_run="nightly-jr-1")).status_code == 201
    jobs = list(Job.objects.order_by("job_id"))

    latest = queries.latest_job_runs_of(jobs, 3)

    by_name = {job.job_id: [jr.job_run_id for jr in latest[job.pk]] for job in jobs}
    assert by_name == {
        "nightly": ["nightly-jr-1", "nightly-jr-4", "nightly-jr-3"],
        "hourly": ["hourly-jr-1", "hourly-jr-0"],
    }
    assert [jr.job_run_id for jr in queries.latest_job_runs(jobs[1], 50)][:2] == ["nightly-jr-1", "nightly-jr-4"]


def test_a_job_without_job_runs_has_none(sink):
    body = documented_body("orphan")
    del body["projectJobRun"]
    assert sink.post(body).status_code == 201
    job = Job.objects.get()
    assert queries.latest_job_runs_of([job], 3) == {job.pk: []}
    assert queries.latest_job_runs_of([], 3) == {}
