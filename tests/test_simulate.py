"""simulate: realistic deliveries over real HTTP to a running sinkdash."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from runs.models import Delivery, Run
from runs.payload import parse
from runs.samples import Fleet, deliveries


@pytest.mark.django_db(transaction=True)
def test_simulate_sends_deliveries_that_the_sink_accepts(live_server):
    out = io.StringIO()
    call_command(
        "simulate", "--url", live_server.url, "--count", "60", "--rate", "0", "--seed", "3",
        "--failure-rate", "0.4", "--duplicate-rate", "0.1", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip

    summary = out.getvalue()
    assert f"Sent 60 deliveries to {live_server.url}" in summary
    assert "60 2xx" in summary and "0 errors" in summary
    assert Delivery.objects.count() == 60
    repeats = Delivery.objects.filter(outcome="duplicate").count()
    assert repeats > 0 and f"{repeats} duplicate" in summary
    assert Run.objects.count() == 60 - repeats
    assert Run.objects.filter(status="failed").exclude(error_code="").exists()
    assert Run.objects.filter(job__isnull=False).values("job_run").distinct().count() >= 2
    raws = [json.loads(bytes(raw)) for raw in Delivery.objects.values_list("raw", flat=True)]
    assert any("started_at" in r["apiInfo"] for r in raws)  # the newer shape
    assert any(isinstance(r["apiInfo"]["result"], dict) and "status" in r["apiInfo"]["result"] for r in raws)


@pytest.mark.django_db(transaction=True)
def test_a_wrong_token_is_reported_as_errors(live_server):
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(
            "simulate", "--url", live_server.url, "--count", "3", "--rate", "0", "--token", "wrong",
            stdout=out, stderr=io.StringIO(),
        )  # fmt: skip
    assert failed.value.returncode == 1
    assert "0 2xx" in out.getvalue() and "HTTP 401: 3" in out.getvalue()
    assert not Run.objects.exists()


def test_the_sample_bodies_cover_real_codes_shapes_and_cancellations():
    fleet = Fleet(seed=11, failure_rate=0.3, cancel_rate=0.1)
    parsed = [parse(raw) for _, (raw, _) in zip(range(600), deliveries(fleet))]
    statuses = {p.status for p in parsed}
    assert {"completed", "failed", "cancelled", "terminated"} <= statuses
    codes = {p.error_code for p in parsed if p.status == "failed"}
    assert {"script-timeout", "script-execution-exception", "auth-session-not-ready", "result-too-big-error"} <= codes
    assert all(p.error_category for p in parsed if p.status == "failed")
    assert any(not p.job_id for p in parsed)  # runs started through the Run API alone
    assert Fleet(seed=5).next_raw() == Fleet(seed=5).next_raw()  # seeded: the same bodies again
