"""Both shapes of a sink body, and the examples from shared/, become the runs they describe."""

import json

import pytest

from runs import queries
from runs.models import Job, JobRun, Project, Run
from tests.conftest import documented_body, example_bytes, newer_body

pytestmark = pytest.mark.django_db


def test_documented_completed_example(sink):
    response = sink.post(example_bytes("completed.json"))
    assert response.status_code == 201
    assert response.json()["outcome"] == "created"
    run = Run.objects.get(run_id="0b6f4c1e-5d2a-4a39-9f1e-2c8d7a10e001")
    assert run.status == "completed" and run.status_code == 200
    assert run.api_name == "list-products"
    assert json.loads(run.parameters_json) == {"category": "shoes", "page": 1}
    assert json.loads(queries.state_of(run)[0]) == [{"title": "Trail runner", "price": 89.0}]
    assert run.auth_session_id == "default"
    assert run.project.project_id == "c0ffee00-1234-4abc-8def-0123456789ab"
    assert run.project.name == "shop-scraper"
    assert run.project.workspace_id == "3f1d9a20-7c4e-4b8a-a1d2-9e8f7a6b5c01"
    assert run.job.job_id == "nightly-catalog"
    assert run.job_run.job_run_id == "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b01"


def test_documented_failed_example_gets_category_from_the_code(sink):
    assert sink.post(example_bytes("failed.json")).status_code == 201
    run = Run.objects.get()
    assert run.status == "failed" and run.status_code == 500
    assert run.error_code == "script-execution-exception"
    assert run.error_category == "execution"
    assert run.error_message.startswith("TimeoutError: locator('.price')")


def test_newer_failed_example(sink):
    assert sink.post(example_bytes("newer-failed.json")).status_code == 201
    run = Run.objects.get()
    assert run.status == "failed" and run.status_code is None
    assert (run.error_code, run.error_category) == ("script-timeout", "execution")
    assert run.error_message == "Execution Timed Out"
    assert run.error_doc_url == "https://docs.intunedhq.com/docs/support/errors"
    assert run.trace_url == "https://files.example/trace.zip"
    assert run.log_url == "https://files.example/logs.jsonl"
    assert run.started_at.isoformat() == "2026-11-30T08:00:00+00:00"
    assert run.ended_at.isoformat() == "2026-11-30T08:10:00+00:00"
    assert json.loads(queries.state_of(run)[0]) is None


def test_run_api_delivery_without_a_job(sink):
    assert sink.post(example_bytes("run-api-no-job.json")).status_code == 201
    run = Run.objects.get()
    assert run.job is None and run.job_run is None
    assert json.loads(run.parameters_json) == []
    assert Project.objects.get().run_count == 1
    assert not Job.objects.exists()


def test_newer_completed_keeps_output_and_extended_payloads(sink):
    body = newer_body("n-ok")
    body["apiInfo"]["result"]["extendedPayloads"] = [{"api": "reviews", "parameters": {"id": 1}}]
    sink.post(body)
    run = Run.objects.get()
    assert run.status == "completed"
    result_json, extra_json = queries.state_of(run)
    assert json.loads(result_json) == {"price": 9.5}
    extra = json.loads(extra_json)
    assert extra["apiInfo.result"]["extendedPayloads"][0]["api"] == "reviews"


@pytest.mark.parametrize("reason_type", ["terminated", "cancelled"])
def test_newer_run_with_a_reason_takes_the_reason_type(sink, reason_type):
    body = newer_body("n-r", reason={"type": reason_type, "message": "Max runs exceeded (100)"})
    body["apiInfo"]["result"] = None
    sink.post(body)
    run = Run.objects.get()
    assert run.status == reason_type
    assert run.error_message == "Max runs exceeded (100)"
    assert JobRun.objects.get().other == 1


def test_unknown_status_is_kept_as_it_came(sink):
    sink.post(documented_body("u-1", status="paused"))
    run = Run.objects.get()
    assert run.status == "paused"
    job_run = JobRun.objects.get()
    assert (job_run.total, job_run.completed, job_run.failed, job_run.other) == (1, 0, 0, 1)


def test_content_type_is_ignored(sink):
    for n, content_type in enumerate(["text/plain", "application/x-www-form-urlencoded", ""]):
        assert sink.post(documented_body(f"ct-{n}"), content_type=content_type).status_code == 201
    assert Run.objects.count() == 3


def test_unknown_fields_are_kept(sink):
    body = documented_body("x-1")
    body["newTopLevel"] = {"a": 1}
    body["apiInfo"]["attempt"] = 3
    sink.post(body)
    assert json.loads(queries.state_of(Run.objects.get())[1]) == {"newTopLevel": {"a": 1}, "apiInfo": {"attempt": 3}}


def test_error_object_in_documented_result_is_understood(sink):
    body = documented_body("mixed", status="failed")
    body["apiInfo"]["result"]["error"] = {"code": "auth-session-not-ready", "message": "not ready"}
    sink.post(body)
    run = Run.objects.get()
    assert (run.error_code, run.error_message, run.error_category) == (
        "auth-session-not-ready", "not ready", "auth",
    )  # fmt: skip


def test_equal_parameters_get_equal_digests_whatever_their_key_order(sink):
    sink.post(documented_body("p-1", parameters={"url": "u", "page": 1}))
    sink.post(b'{"apiInfo": {"runId": "p-2", "name": "product-details", "parameters": {"page": 1, "url": "u"}}, '
              b'"project": {"id": "proj-1"}}')  # fmt: skip
    sink.post(documented_body("p-3", parameters={"url": "u", "page": 2}))
    digests = dict(Run.objects.values_list("run_id", "parameters_sha256"))
    assert digests["p-1"] == digests["p-2"] != digests["p-3"]
