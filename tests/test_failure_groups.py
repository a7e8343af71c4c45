"""A failure's group is its cause: project, API, error code and message with numbers and URLs
normalised away. Later batches find the groups earlier ones made, whichever project they are in."""

import json

import pytest
from django.db import connection

from runs import ingest, payload
from runs.ingest import receive_many
from runs.models import FailureGroup, Run
from tests.conftest import documented_body

pytestmark = pytest.mark.django_db

# The same message under four causes: two projects, two APIs, two error codes.
CAUSES = [
    ("proj-1", "product-details", "script-execution-exception"),
    ("proj-2", "product-details", "script-execution-exception"),
    ("proj-1", "listing", "script-execution-exception"),
    ("proj-1", "product-details", "script-timeout"),
]


def batch(prefix: str, timeout_ms: int) -> list[tuple[bytes, dict]]:
    message = f"TimeoutError: locator('.price') not visible after {timeout_ms}ms"
    return [
        (json.dumps(documented_body(f"{prefix}-{i}", status="failed", project=project, api=api,
                                    error=code, message=message)).encode(), {})
        for i, (project, api, code) in enumerate(CAUSES)
    ]  # fmt: skip


def test_each_cause_has_one_group_that_later_batches_find_again():
    receive_many(batch("a", 30000))  # one transaction: every group is new
    receive_many(batch("b", 45000))  # another: every group exists, in either project
    receive_many(batch("c", 45000)[1:2] + batch("d", 5000)[1:2])  # one cause twice in a batch

    groups = {
        (g.project.project_id, g.api_name, g.error_code): g.count
        for g in FailureGroup.objects.select_related("project")
    }
    assert groups == {CAUSES[0]: 2, CAUSES[1]: 4, CAUSES[2]: 2, CAUSES[3]: 2}
    for run in Run.objects.select_related("project", "failure_group"):
        group = run.failure_group
        assert (group.project_id, group.api_name, group.error_code) == (run.project_id, run.api_name, run.error_code)


def test_parsing_gives_a_failure_its_cause_and_nothing_else_one():
    failed = payload.parse(batch("e", 30000)[0][0])
    assert failed.cause == (
        "TimeoutError: locator('.price') not visible after <n>ms",
        payload.fingerprint("TimeoutError: locator('.price') not visible after <n>ms"),
    )
    assert payload.parse(json.dumps(documented_body("e-ok")).encode()).cause is None


def test_a_batch_finds_its_groups_by_fingerprint_however_many_its_project_has():
    """Storing looks a batch's groups up through failure_group_by_fingerprint. Through the unique
    cause, which starts with the project, every batch with a failure read all of its project's
    groups: 5 ms a batch at 50,000. The plan asked for is that of the look-up storing sends."""
    receive_many(batch("f", 30000)[:1])  # the project, and one real group
    project = FailureGroup.objects.get().project
    now = project.first_received_at
    FailureGroup.objects.bulk_create(
        FailureGroup(project=project, api_name="product-details", error_code="script-execution-exception",
                     fingerprint=f"{n:064x}", message=f"cause {n}", first_seen=now, last_seen=now)
        for n in range(5_000)
    )  # fmt: skip
    failed = payload.parse(batch("g", 30000)[0][0])
    query, params = ingest._failure_groups_query([failed], ingest._failure_causes([failed]))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE runs_failuregroup")  # as autovacuum would by now
            cursor.execute("EXPLAIN " + query, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + query, params)
        plan = "\n".join(str(row) for row in cursor.fetchall())

    assert "failure_group_by_fingerprint" in plan, plan
