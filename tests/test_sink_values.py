"""Whatever legal JSON a delivery carries comes back exactly, on SQLite and PostgreSQL alike."""

import json

import pytest
from django.db import connection

from runs.models import Delivery, Run
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db

STRANGE_VALUES = [
    "NUL \x00 inside",
    2**70,
    -(2**80),
    3.141592653589793,
    1e300,
    ["a", 1, None, True, {"deep": [1, [2, [3]]]}],
    "emoji 😀 and 中文 and \u202e",
    "lone surrogate \ud800 escaped",
    {"": "empty key", "k" * 300: "long key"},
    None,
    False,
    "",
]


@pytest.mark.parametrize("value", STRANGE_VALUES, ids=lambda v: repr(v)[:30])
def test_result_and_parameters_survive_storage(sink, signed_in, value):
    assert sink.post(documented_body("v-1", result=value, parameters=[value, {"p": value}])).status_code == 201
    detail = signed_in.get("/api/runs/v-1").json()
    assert detail["result"] == value
    assert detail["parameters"] == [value, {"p": value}]


def test_deep_but_legal_nesting_survives(sink, signed_in):
    deep = current = {}
    for _ in range(400):
        current["n"] = {}
        current = current["n"]
    assert sink.post(documented_body("deep", result=deep)).status_code == 201
    assert signed_in.get("/api/runs/deep").json()["result"] == deep


def test_nul_and_surrogates_in_text_columns_become_replacement_characters(sink):
    body = documented_body("txt", status="failed", message="bad \x00 byte \ud800 here", api="a\x00b")
    sink.post(json.dumps(body).encode())
    run = Run.objects.get()
    assert run.error_message == "bad \ufffd byte \ufffd here"
    assert run.api_name == "a\ufffdb"


def test_duplicate_keys_take_the_last_value(sink):
    raw = b'{"apiInfo": {"runId": "dk", "name": "first", "name": "second"}}'
    assert sink.post(raw).status_code == 201
    assert Run.objects.get().api_name == "second"


def test_raw_bytes_are_kept_exactly(sink, signed_in):
    raw = b'{"apiInfo":{"runId":"raw-1" ,"name":"x"}  ,"extra":  "\\u00e9"}\n'
    sink.post(raw)
    run = signed_in.get("/api/runs/raw-1").json()
    delivery = run["deliveries"][0]
    response = signed_in.get(f"/api/deliveries/{delivery['id']}/raw")
    assert (b"".join(response.streaming_content) if response.streaming else response.content) == raw
    assert response["Content-Type"] == "application/octet-stream"
    assert delivery["size"] == len(raw)


def test_odd_status_codes_do_not_break_storage(sink):
    for n, code in enumerate([2**70, "500", 1.5, None, True]):
        body = documented_body(f"sc-{n}", status_code=code, status="failed")
        assert sink.post(body).status_code == 201
    assert list(Run.objects.order_by("id").values_list("status_code", flat=True)) == [None] * 5


@pytest.mark.parametrize("moment, stored", [
    ("0001-01-01T00:30:00+01:00", None),  # 23:30 UTC on the last day before year 1
    ("9999-12-31T23:30:00-01:00", None),  # 00:30 UTC in year 10000
    ("0001-01-01T00:30:00-01:00", "0001-01-01T01:30:00Z"),
    ("2026-11-30T09:00:00+01:00", "2026-11-30T08:00:00Z"),
])  # fmt: skip
def test_times_without_a_utc_moment_in_years_1_to_9999_are_no_time(sink, signed_in, moment, stored):
    body = newer_body("t-1", started_at=moment, ended_at=moment)
    assert sink.post(body).status_code == 201
    detail = signed_in.get("/api/runs/t-1")
    assert detail.status_code == 200
    assert detail.json()["started_at"] == detail.json()["ended_at"] == stored


def test_large_values_are_compressed_with_lz4_on_postgresql(sink, signed_in):
    """Migration 0008: a scraped page in a failure's message and in its parameters is stored with
    LZ4, and comes back exactly."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's column compression")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        if not cursor.fetchone()[0]:
            pytest.skip("this PostgreSQL server was built without LZ4")
    page = "".join(f"<li class='item-{n % 7}'><a href='/p/{n}'>item {n}</a></li>" for n in range(4000))
    body = documented_body("big-1", status="failed", message=f"Error: {page}", parameters={"html": page})
    raw = json.dumps(body).encode()
    assert sink.post(raw).status_code == 201
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(d.raw), pg_column_compression(r.error_message),"
            " pg_column_compression(r.parameters_json) FROM runs_delivery d JOIN runs_run r ON r.id = d.run_id"
        )
        assert cursor.fetchall() == [("lz4", "lz4", "lz4")]
    assert bytes(Delivery.objects.get().raw) == raw
    run = Run.objects.get()
    assert run.error_message == f"Error: {page}" and json.loads(run.parameters_json) == {"html": page}
