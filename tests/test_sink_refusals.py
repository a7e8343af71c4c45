"""Bodies that are not a run get a JSON error that says what is wrong, and land in the quarantine."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import ingest, queries
from runs.models import RejectedDelivery, Run
from tests.conftest import documented_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"apiInfo": {"runId": "\xff\xfe"}}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"apiInfo": {"runId": "r", "x": NaN}}', "not valid JSON"),
    ],
)
def test_unparseable_body_is_400_and_quarantined(sink, raw, words):
    response = sink.post(raw)
    assert response.status_code == 400
    assert words in response.json()["detail"]
    rejected = RejectedDelivery.objects.get()
    assert bytes(rejected.raw) == raw
    assert rejected.http_status == 400 and words in rejected.reason
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "body, field, words",
    [
        ([documented_body("r")], None, "must be a JSON object, not an array"),
        ("just a string", None, "not a string"),
        ({"workspaceId": "w"}, "apiInfo", "apiInfo is missing"),
        ({"apiInfo": {"name": "x"}}, "apiInfo.runId", "apiInfo.runId is missing"),
        ({"apiInfo": {"runId": 42}}, "apiInfo.runId", "must be a string, not a number"),
        ({"apiInfo": {"runId": ""}}, "apiInfo.runId", "missing"),
        ({"apiInfo": {"runId": "r" * 201}}, "apiInfo.runId", "longer than 200"),
    ],
)
def test_json_that_is_not_a_run_is_422_naming_the_field(sink, body, field, words):
    response = sink.post(body)
    assert response.status_code == 422
    assert words in response.json()["detail"]
    assert response.json()["field"] == field
    rejected = RejectedDelivery.objects.get()
    assert json.loads(bytes(rejected.raw)) == body
    assert rejected.field == (field or "")


def test_refused_body_keeps_its_headers_without_credentials(sink, settings):
    sink.post(b"nope", content_type="text/plain")
    rejected = RejectedDelivery.objects.get()
    headers = json.loads(rejected.headers_json)
    assert headers["Content-Type"] == "text/plain"
    assert settings.SINK_TOKEN not in rejected.headers_json


def test_body_over_the_limit_is_413_json(sink, settings):
    settings.MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = documented_body("r-big", result={"blob": "x" * 2000})
    response = sink.post(body)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert not Run.objects.exists()


def test_default_limit_takes_a_two_megabyte_result(sink):
    body = documented_body("r-2mb", result={"html": "<p>" + "x" * (2 * 2**20) + "</p>"})
    assert sink.post(body).status_code == 201
    result_json, _ = queries.state_of(Run.objects.get())
    assert len(result_json) > 2 * 2**20


def test_quarantine_drops_oldest_beyond_its_count(sink, settings):
    settings.QUARANTINE_MAX_COUNT = 3
    for n in range(5):
        sink.post(f"bad {n}".encode())
    kept = [bytes(r.raw) for r in RejectedDelivery.objects.order_by("id")]
    assert kept == [b"bad 2", b"bad 3", b"bad 4"]


def test_quarantine_drops_oldest_beyond_its_bytes(sink, settings):
    settings.QUARANTINE_MAX_BYTES = 250
    for n in range(5):
        sink.post(f"{n}".encode() * 100)
    kept = [bytes(r.raw)[:1] for r in RejectedDelivery.objects.order_by("id")]
    assert kept == [b"3", b"4"]


def test_bounding_the_quarantine_reads_sizes_from_its_index(sink, settings):
    """After every refused delivery the quarantine is bounded by count and total size. In SQLite
    a column stored after the raw body is reached by walking the body's overflow pages, so the
    bound reads ids and sizes from rejected_recent alone: summing sizes over 200 MB of 1.9 MB
    bodies from the rows took 51 ms, in the writer, for each refusal."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's overflow pages (PostgreSQL keeps large values apart from the row)")
    settings.QUARANTINE_MAX_BYTES = 250
    for n in range(3):
        sink.post(f"{n}".encode() * 100)

    with CaptureQueriesContext(connection) as captured:
        ingest.bound_quarantine()
    reads = [q["sql"] for q in captured if q["sql"].startswith("SELECT")]
    assert reads
    with connection.cursor() as cursor:
        for sql in reads:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            plan = " ".join(row[-1] for row in cursor.fetchall())
            assert "USING COVERING INDEX rejected_recent" in plan, (sql, plan)
