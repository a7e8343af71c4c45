"""Retries, updates and late old bodies: one run per runId, counters that always add up."""

import json

import pytest

from runs import queries
from runs.models import Delivery, FailureGroup, Job, JobRun, Project, Run
from runs.queries import summary
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


def counters():
    job_run = JobRun.objects.get()
    return {
        "job_run": (job_run.total, job_run.completed, job_run.failed, job_run.other),
        "project": tuple(Project.objects.values_list("run_count", "failed_count").get()),
        "job": tuple(Job.objects.values_list("run_count", "failed_count").get()),
        "groups": sorted(FailureGroup.objects.values_list("count", flat=True)),
        "summary": summary().by_status,
    }


def test_repeated_identical_body_is_stored_once_and_counted_as_a_delivery(sink):
    body = documented_body("dup-1", status="failed")
    first, second = sink.post(body), sink.post(body)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["outcome"] == "duplicate"
    run = Run.objects.get()
    assert run.delivery_count == 2
    assert Delivery.objects.filter(run=run).count() == 2
    assert counters()["job_run"] == (1, 0, 1, 0)
    assert counters()["groups"] == [1]


def test_later_different_body_updates_the_run_and_counters_follow(sink):
    sink.post(documented_body("upd-1", status="failed"))
    response = sink.post(documented_body("upd-1", result={"price": 1}))
    assert response.status_code == 200 and response.json()["outcome"] == "updated"
    run = Run.objects.get()
    assert run.status == "completed" and run.failure_group is None
    assert json.loads(queries.state_of(run)[0]) == {"price": 1}  # the result of the newer body
    assert counters() == {
        "job_run": (1, 1, 0, 0),
        "project": (1, 0),
        "job": (1, 0),
        "groups": [0],
        "summary": {"completed": 1},
    }


def test_retry_of_an_older_body_after_a_newer_one_does_not_undo_it(sink):
    failed = documented_body("ooo-1", status="failed")
    sink.post(failed)
    sink.post(documented_body("ooo-1"))  # the run was re-run and completed
    late_retry = sink.post(failed)  # the sender's retry of the first body arrives last
    assert late_retry.json()["outcome"] == "duplicate"
    assert Run.objects.get().status == "completed"
    assert counters()["job_run"] == (1, 1, 0, 0)


def test_body_that_ended_earlier_than_the_stored_state_is_stale(sink):
    sink.post(newer_body("ts-1", ended_at="2026-11-30T09:00:00Z"))
    older = sink.post(newer_body("ts-1", failed=True, ended_at="2026-11-30T08:00:00Z"))
    assert older.status_code == 200 and older.json()["outcome"] == "stale"
    run = Run.objects.get()
    assert run.status == "completed" and run.delivery_count == 2
    assert Delivery.objects.filter(outcome="stale").count() == 1
    assert counters()["job_run"] == (1, 1, 0, 0)


def test_body_that_ended_later_wins(sink):
    sink.post(newer_body("ts-2", ended_at="2026-11-30T08:00:00Z"))
    newer = sink.post(newer_body("ts-2", failed=True, ended_at="2026-11-30T09:00:00Z"))
    assert newer.json()["outcome"] == "updated"
    assert Run.objects.get().status == "failed"
    assert counters()["job_run"] == (1, 0, 1, 0)


def test_without_times_arrival_order_decides(sink):
    sink.post(documented_body("arr-1"))
    sink.post(documented_body("arr-1", status="failed"))
    assert Run.objects.get().status == "failed"


def test_run_moving_between_job_runs_moves_its_counts(sink):
    sink.post(documented_body("mv-1", job_run="jr-a"))
    sink.post(documented_body("mv-1", job_run="jr-b", status="failed"))
    totals = dict(JobRun.objects.values_list("job_run_id", "total"))
    assert totals == {"jr-a": 0, "jr-b": 1}
