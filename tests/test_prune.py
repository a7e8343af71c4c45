"""prune: old runs and their deliveries go, counters stay exact, failure groups keep an example."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from runs.ingest import receive
from runs.models import Delivery, FailureGroup, JobRun, Run, RunTally
from tests.conftest import documented_body, newer_body, waits_its_turn_on_the_storing_lock
from tests.recount import counter_mismatches

pytestmark = pytest.mark.django_db


def post(body: dict, *, days_ago: float = 0, twice: bool = False) -> None:
    at = timezone.now() - timedelta(days=days_ago)
    raw = json.dumps(body).encode()
    assert receive(raw, received_at=at).accepted
    if twice:
        assert receive(raw, received_at=at).kind == "duplicate"


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def history():
    """Old and new runs across two job runs, with two failure groups."""
    for i in range(6):
        post(documented_body(f"old-ok-{i}", job_run="jr-old"), days_ago=40 + i, twice=i == 0)
    post(documented_body("old-fail-a1", job_run="jr-old", status="failed", message="Boom 1"), days_ago=50)
    post(documented_body("old-fail-a2", job_run="jr-old", status="failed", message="Boom 2"), days_ago=45)
    post(newer_body("old-fail-b", failed=True, job_run="jr-old"), days_ago=45)
    post(newer_body("new-fail-b", failed=True, job_run="jr-new"), days_ago=1)
    post(documented_body("new-ok", job_run="jr-new"), days_ago=2)


def run_ids() -> set[str]:
    return set(Run.objects.values_list("run_id", flat=True))


def test_old_runs_go_with_their_deliveries_and_counters_follow(history):
    out = prune("--older-than", "30d", "--batch-size", "2")

    # old-fail-a2 is group A's latest failure: kept. Group B's latest (new-fail-b) is new anyway.
    assert run_ids() == {"old-fail-a2", "new-fail-b", "new-ok"}
    assert "Deleted" in out and "8 runs, 9 deliveries" in out
    assert "kept 1 old runs that failure groups show as their latest" in out
    assert set(Delivery.objects.values_list("run__run_id", flat=True)) == run_ids()
    assert counter_mismatches() == []
    group_a = FailureGroup.objects.get(sample_run__run_id="old-fail-a2")
    assert group_a.count == 1
    assert JobRun.objects.get(job_run_id="jr-old").total == 1


@pytest.mark.django_db(transaction=True)  # stored runs commit, and with them the lock goes
def test_on_postgresql_prune_takes_its_turn_on_the_storing_lock(history):
    """Prune writes counters, and on PostgreSQL counters are written by one transaction at a
    time: two that updated the same counter rows in different orders would wait on each other."""
    if connection.vendor != "postgresql":
        pytest.skip("the storing lock is PostgreSQL's")
    waits_its_turn_on_the_storing_lock(lambda: prune("--older-than", "30d"))
    assert "8 runs, 9 deliveries" in prune("--older-than", "30d")  # once the other's turn is over
    assert counter_mismatches() == []


def test_a_job_run_left_without_runs_is_removed(history):
    prune("--older-than", "30d")
    FailureGroup.objects.update(sample_run=None)  # nothing protects the old failure any more
    prune("--older-than", "30d")
    assert not JobRun.objects.filter(job_run_id="jr-old").exists()
    assert not FailureGroup.objects.filter(message__startswith="Boom").exists()
    assert run_ids() == {"new-fail-b", "new-ok"}
    assert not RunTally.objects.filter(count=0).exists()
    assert counter_mismatches() == []


def test_keep_failed_keeps_every_failed_run(history):
    prune("--older-than", "30d", "--keep-failed")
    assert run_ids() == {"old-fail-a1", "old-fail-a2", "old-fail-b", "new-fail-b", "new-ok"}
    assert counter_mismatches() == []


def test_dry_run_reports_and_changes_nothing(history):
    runs_before, deliveries_before = Run.objects.count(), Delivery.objects.count()
    out = prune("--older-than", "30d", "--dry-run")
    assert out.startswith("Would delete") and "8 runs, 9 deliveries" in out
    assert (Run.objects.count(), Delivery.objects.count()) == (runs_before, deliveries_before)


def test_the_age_can_come_from_the_environment(history, settings):
    settings.RETENTION_DAYS = 44  # $SINKDASH_RETENTION_DAYS
    prune()
    assert {"old-ok-4", "old-ok-5", "old-fail-a1", "old-fail-b"}.isdisjoint(run_ids())
    assert {"old-ok-0", "old-ok-3", "old-fail-a2"} <= run_ids()
    assert counter_mismatches() == []


@pytest.mark.django_db(transaction=True)  # VACUUM cannot run inside the test's transaction
def test_vacuum_gives_the_space_back(history, settings):
    out = prune("--older-than", "30d", "--vacuum")
    if "sqlite" in settings.DATABASES["default"]["ENGINE"]:
        assert "Space: VACUUM: the database file shrank by" in out
    else:
        assert "Space: ran VACUUM" in out


@pytest.mark.parametrize("args", [[], ["--older-than", "soon"], ["--older-than", "0d"]])
def test_a_missing_or_bad_age_is_a_usage_error(args, settings):
    settings.RETENTION_DAYS = 0
    with pytest.raises(CommandError) as usage:
        prune(*args)
    assert usage.value.returncode == 2


@pytest.mark.django_db(transaction=True)  # the loop closes its connection between rounds
def test_retention_days_are_applied_by_the_server_in_the_background(history, monkeypatch):
    from runs.management.commands import serve

    rounds = []

    def stop_after_one_round(seconds):
        rounds.append(seconds)
        raise SystemExit  # ends the endless loop after its first pass

    monkeypatch.setattr(serve.time, "sleep", stop_after_one_round)
    with pytest.raises(SystemExit):
        serve.prune_forever(44)
    assert rounds == [serve.PRUNE_EVERY_SECONDS]
    assert {"old-ok-4", "old-ok-5", "old-fail-a1", "old-fail-b"}.isdisjoint(run_ids())
    assert {"old-ok-0", "old-ok-3", "old-fail-a2"} <= run_ids()
    assert counter_mismatches() == []
