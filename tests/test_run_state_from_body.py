"""A run's result and unknown fields are read from the body its state came from, not kept twice:
every page, the API and the exports show the state body's, and going back to migration 0005 puts
them on the runs again."""

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from runs import queries
from runs.models import Run
from tests.conftest import documented_body, newer_body


@pytest.mark.django_db
def test_result_and_extra_come_from_the_state_body_not_an_older_or_stale_one(sink, signed_in):
    first = newer_body("s-1", output={"price": 1}, ended_at="2026-11-30T08:00:12Z")
    newer = newer_body("s-1", output={"price": 2}, ended_at="2026-11-30T09:00:00Z")
    newer["apiInfo"]["attempt"] = 2
    older = newer_body("s-1", output={"price": 0}, ended_at="2026-11-30T07:00:00Z")
    for body, outcome in ((first, "created"), (newer, "updated"), (older, "stale")):
        assert sink.post(body).json()["outcome"] == outcome

    assert queries.state_of(Run.objects.get()) == ('{"price":2}', '{"apiInfo":{"attempt":2}}')
    detail = signed_in.get("/api/runs/s-1").json()
    assert (detail["result"], detail["extra"]) == ({"price": 2}, {"apiInfo": {"attempt": 2}})
    assert json.loads(signed_in.get("/runs/s-1/result.json").content) == {"price": 2}
    exported = signed_in.get("/api/runs/export?format=jsonl").getvalue().decode()
    assert json.loads(exported)["result"] == {"price": 2}
    page = signed_in.get("/runs/s-1/").content.decode()
    assert "&quot;price&quot;: 2" in page and "&quot;attempt&quot;: 2" in page


@pytest.mark.django_db(transaction=True)
def test_going_back_to_0005_refills_result_and_extra_from_the_bodies(sink):
    body = documented_body("m-1", result={"big": 2**70})
    body["extraTop"] = "kept"
    sink.post(body)
    sink.post(documented_body("m-2", status="failed"))
    executor = MigrationExecutor(connection)
    executor.migrate([("runs", "0005_compact_run_indexes")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT run_id, result_json, extra_json FROM runs_run ORDER BY run_id")
        assert cursor.fetchall() == [
            ("m-1", '{"big":1180591620717411303424}', '{"extraTop":"kept"}'),
            ("m-2", "null", "{}"),
        ]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert queries.state_of(Run.objects.get(run_id="m-1"))[0] == '{"big":1180591620717411303424}'
