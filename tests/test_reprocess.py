"""reprocess: stored raw bodies run through today's parser, so a parser fix reaches old data."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from runs import payload, reprocess
from runs.ingest import receive
from runs.models import Delivery, JobRun, RejectedDelivery, Run
from tests.conftest import documented_body, newer_body, waits_its_turn_on_the_storing_lock
from tests.recount import counter_mismatches

pytestmark = pytest.mark.django_db
real_parse = payload.parse


def run_reprocess(*args: str) -> str:
    out = io.StringIO()
    call_command("reprocess", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def parser_that_accepts_numeric_run_ids(raw: bytes) -> payload.ParsedRun:
    """Today's parser plus one new rule: a numeric apiInfo.runId is read as its digits."""
    body = json.loads(raw)
    if isinstance(body.get("apiInfo", {}).get("runId"), int):
        body["apiInfo"]["runId"] = str(body["apiInfo"]["runId"])
        raw = json.dumps(body).encode()
    return real_parse(raw)


def test_a_quarantined_body_is_stored_once_the_parser_learns_its_shape(monkeypatch):
    body = documented_body("ignored", status="failed", job_run="jr-5")
    body["apiInfo"]["runId"] = 12345
    raw = json.dumps(body).encode()
    first_arrival = timezone.now() - timedelta(days=3)
    assert receive(raw, received_at=first_arrival).kind == "rejected"
    assert "runId must be a string" in RejectedDelivery.objects.get().reason

    assert "0 now stored, 1 still refused" in run_reprocess()  # today's parser still refuses it
    assert not Run.objects.exists()

    monkeypatch.setattr(reprocess, "parse", parser_that_accepts_numeric_run_ids)
    out = run_reprocess()

    assert "1 bodies examined, 1 now stored (1 created), 0 still refused" in out
    run = Run.objects.get()
    assert run.run_id == "12345"
    assert run.status == "failed"
    assert run.first_received_at == first_arrival
    delivery = Delivery.objects.get()
    assert bytes(delivery.raw) == raw  # the exact bytes that were refused
    assert RejectedDelivery.objects.get().reprocessed_at is not None
    assert JobRun.objects.get(job_run_id="jr-5").failed == 1
    assert counter_mismatches() == []
    assert "0 bodies examined" in run_reprocess()  # done once, not again


def test_a_still_refused_body_gets_todays_reason(monkeypatch):
    receive(b'{"apiInfo": {"name": "x"}}')

    def stricter(raw: bytes):
        raise payload.Refused(422, "a newer reason", field="apiInfo.runId")

    monkeypatch.setattr(reprocess, "parse", stricter)
    run_reprocess()
    rejected = RejectedDelivery.objects.get()
    assert (rejected.reason, rejected.field, rejected.reprocessed_at) == ("a newer reason", "apiInfo.runId", None)


def parser_that_reads_state(raw: bytes) -> payload.ParsedRun:
    """Today's parser plus one new rule: a run with no other status takes `apiInfo.state`."""
    parsed = real_parse(raw)
    state = json.loads(raw)["apiInfo"].get("state")
    if parsed.status == "unknown" and state:
        # As parse() would: a failure carries its cause.
        cause = payload.failure_cause(parsed.error_message) if state == "failed" else None
        return parsed._replace(status=state, cause=cause)
    return parsed


def test_all_reapplies_stored_runs_whose_parsed_state_changed(monkeypatch):
    unknown = newer_body("r-state", job_run="jr-1")
    unknown["apiInfo"]["result"] = None
    unknown["apiInfo"]["state"] = "failed"
    receive(json.dumps(unknown).encode())
    receive(json.dumps(newer_body("r-same", job_run="jr-1")).encode())
    assert Run.objects.get(run_id="r-state").status == "unknown"
    assert JobRun.objects.get().other == 1

    assert "0 changed" in run_reprocess("--all")  # nothing to change with today's parser

    monkeypatch.setattr(reprocess, "parse", parser_that_reads_state)
    assert "2 examined, 1 changed (status in 1, failure_group in 1)" in run_reprocess("--all", "--dry-run")
    assert Run.objects.get(run_id="r-state").status == "unknown"

    out = run_reprocess("--all")

    assert "runs: 2 examined, 1 changed (status in 1, failure_group in 1)" in out
    run = Run.objects.get(run_id="r-state")
    assert run.status == "failed"
    assert run.failure_group is not None  # a failure now, so it has a group
    job_run = JobRun.objects.get()
    assert (job_run.total, job_run.completed, job_run.failed, job_run.other) == (2, 1, 1, 0)
    assert counter_mismatches() == []
    assert "0 changed" in run_reprocess("--all")


@pytest.mark.django_db(transaction=True)  # stored runs commit, and with them the lock goes
def test_on_postgresql_reprocess_all_takes_its_turn_on_the_storing_lock(monkeypatch):
    """Re-applying runs writes counters, which on PostgreSQL one transaction writes at a time."""
    if connection.vendor != "postgresql":
        pytest.skip("the storing lock is PostgreSQL's")
    unknown = newer_body("r-state", job_run="jr-1")
    unknown["apiInfo"]["result"] = None
    unknown["apiInfo"]["state"] = "failed"
    receive(json.dumps(unknown).encode())
    monkeypatch.setattr(reprocess, "parse", parser_that_reads_state)
    waits_its_turn_on_the_storing_lock(lambda: run_reprocess("--all"))
    assert "1 changed" in run_reprocess("--all")  # once the other's turn is over
    assert Run.objects.get(run_id="r-state").status == "failed"
    assert counter_mismatches() == []
