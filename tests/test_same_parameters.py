"""Runs with the same parameters are found through a short key of (API, parameters digest); runs
whose pairs share a key are still told apart, and runs stored before the key existed get theirs
from migration 0005."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from runs import payload, queries
from runs.models import Run
from tests.conftest import documented_body


def digest(parameters) -> str:
    return payload.parameters_digest(parameters)


@pytest.mark.django_db
def test_a_shared_key_never_mixes_apis_or_parameters(sink, signed_in, monkeypatch):
    monkeypatch.setattr(payload, "parameters_key", lambda api, digest: 7)  # every pair collides
    monkeypatch.setattr(queries, "parameters_key", lambda api, digest: 7)
    sink.post(documented_body("a1", parameters={"q": 1}, job_run="jr-1"))
    sink.post(documented_body("a2", parameters={"q": 1}, job_run="jr-2"))
    sink.post(documented_body("b1", parameters={"q": 1}, api="other-api", job_run="jr-3"))
    sink.post(documented_body("a3", parameters={"q": 2}, job_run="jr-4"))
    assert set(Run.objects.values_list("parameters_key", flat=True)) == {7}

    twins = queries.same_parameters(Run.objects.get(run_id="a1"))
    assert [run.run_id for run in twins] == ["a2"]
    listed = signed_in.get(
        f"/api/runs?project=proj-1&api=product-details&parameters={digest({'q': 1})}"
    ).json()["items"]
    assert [item["run_id"] for item in listed] == ["a2", "a1"]


@pytest.mark.django_db
def test_an_update_that_changes_the_parameters_moves_the_key(sink):
    sink.post(documented_body("m1", parameters={"q": 1}))
    sink.post(documented_body("m1", parameters={"q": 2}))
    run = Run.objects.get()
    assert run.parameters_key == payload.parameters_key("product-details", digest({"q": 2}))


@pytest.mark.django_db(transaction=True)
def test_migration_0005_fills_the_key_of_runs_stored_before_it():
    executor = MigrationExecutor(connection)
    before, after = [("runs", "0004_fewer_run_indexes")], [("runs", "0005_compact_run_indexes")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    project = old.get_model("runs", "Project").objects.create(
        project_id="p", first_received_at="2026-01-01T00:00:00Z", last_received_at="2026-01-01T00:00:00Z"
    )
    for n, (api, parameters) in enumerate([("a", {"x": 1}), ("b", {"x": 1}), ("a", [])]):
        old.get_model("runs", "Run").objects.create(
            run_id=f"r{n}", project=project, api_name=api, status="completed",
            parameters_sha256=digest(parameters), content_sha256="0" * 64,
            first_received_at="2026-01-01T00:00:00Z", last_received_at="2026-01-01T00:00:00Z",
        )  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    for run in Run.objects.all():
        assert run.parameters_key == payload.parameters_key(run.api_name, run.parameters_sha256)
    assert len({run.parameters_key for run in Run.objects.all()}) == 3
