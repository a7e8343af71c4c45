"""Exports: the filtered run list as CSV or JSONL and a job run's results as rows, streamed."""

import csv
import io
import json
import warnings

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from runs import export
from runs.ingest import receive
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


def post(body: dict) -> None:
    assert receive(json.dumps(body).encode()).accepted


def csv_rows(response) -> list[dict]:
    assert response.status_code == 200
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_runs_export_as_csv_has_the_documented_columns(signed_in):
    post(documented_body("r-1", parameters={"url": "https://shop.example/p/1", "n": [1, 2]}))
    post(newer_body("r-2", failed=True, job="weekly", job_run="jr-9"))
    post(documented_body("r-3", project="proj-2", job=None))

    response = signed_in.get("/api/runs/export?format=csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="runs-')
    assert response["Content-Disposition"].endswith('.csv"')
    text = b"".join(response.streaming_content).decode()
    header = text.splitlines()[0]
    assert header == (
        "run_id,status,api_name,project_id,project_name,job_id,job_run_id,status_code,"
        "error_code,error_category,error_message,received_at,parameters"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["run_id"] for r in rows] == ["r-3", "r-2", "r-1"]  # newest first, like the list
    failed = rows[1]
    assert failed["status"] == "failed"
    assert failed["error_code"] == "script-timeout"
    assert failed["error_category"] == "execution"
    assert failed["error_message"] == "Execution Timed Out"
    assert (failed["job_id"], failed["job_run_id"]) == ("weekly", "jr-9")
    assert json.loads(rows[2]["parameters"]) == {"url": "https://shop.example/p/1", "n": [1, 2]}
    assert rows[2]["status_code"] == "200"


def test_cells_that_a_spreadsheet_would_run_are_neutralised(signed_in):
    post(documented_body("=HYPERLINK(\"http://evil\")", status="failed", message="+cmd|' /C calc'!A0"))
    post(documented_body("r-2", status="failed", message="@SUM(1+1)", api="-2+3"))
    post(documented_body("r-3", status="failed", message="\tTab", api="plain, \"quoted\"\nline"))

    rows = csv_rows(signed_in.get("/api/runs/export?format=csv"))

    by_id = {r["run_id"]: r for r in rows}
    assert "'=HYPERLINK(\"http://evil\")" in by_id
    assert by_id["'=HYPERLINK(\"http://evil\")"]["error_message"] == "'+cmd|' /C calc'!A0"
    assert by_id["r-2"]["error_message"] == "'@SUM(1+1)"
    assert by_id["r-2"]["api_name"] == "'-2+3"
    assert by_id["r-3"]["error_message"] == "'\tTab"
    assert by_id["r-3"]["api_name"] == 'plain, "quoted"\nline'  # CSV quoting round-trips


def test_the_run_list_filters_apply_to_the_export(signed_in):
    post(documented_body("a-ok", api="list"))
    post(documented_body("a-bad", api="list", status="failed"))
    post(documented_body("b-bad", api="details", status="failed", project="proj-2"))

    def ids(query: str) -> list[str]:
        return [r["run_id"] for r in csv_rows(signed_in.get(f"/api/runs/export?{query}"))]

    assert ids("status=failed") == ["b-bad", "a-bad"]
    assert ids("status=failed&project=proj-1") == ["a-bad"]
    assert ids("api=list") == ["a-bad", "a-ok"]
    assert ids("q=b-bad") == ["b-bad"]
    assert ids("limit=1") == ["b-bad", "a-bad", "a-ok"]  # an export is never one page
    assert signed_in.get("/api/runs/export?since=yesterday").status_code == 422


def test_a_large_export_is_read_page_by_page(signed_in, monkeypatch):
    for i in range(7):
        post(documented_body(f"r-{i}"))
    monkeypatch.setattr(export, "PAGE_SIZE", 2)
    rows = csv_rows(signed_in.get("/api/runs/export"))
    assert [r["run_id"] for r in rows] == [f"r-{i}" for i in range(6, -1, -1)]


@pytest.mark.parametrize("statuses", [(), ("failed", "cancelled")])  # one keyset stream, or two merged
def test_runs_of_megabytes_are_written_a_few_at_a_time(signed_in, monkeypatch, statuses):
    # Scraped pages end up in messages, parameters and results: a chunk of the download holds
    # about CHUNK_BYTES of them, not a query's page of runs whatever their size.
    page = "<div class='row'>scraped</div>\n" * 10_000  # 310 KB of message, 320 KB of body
    for i in range(6):
        post(documented_body(f"r-{i}", status="failed" if i % 2 else "cancelled", message=page))
    monkeypatch.setattr(export, "CHUNK_BYTES", 1_000_000)
    newest_first = [f"r-{i}" for i in range(5, -1, -1)]
    f = export.RunFilter(statuses=statuses)
    jsonl = [chunk.splitlines() for chunk in export.runs_jsonl(f)]
    assert [len(lines) for lines in jsonl] == [1] * 6  # message and body: 630 KB a run
    assert [json.loads(line)["run_id"] for lines in jsonl for line in lines] == newest_first
    limit = csv.field_size_limit(1_000_000)  # the reader's default is 128 KB a cell
    try:
        header, *chunks = [list(csv.reader(io.StringIO(chunk))) for chunk in export.runs_csv(f)]
    finally:
        csv.field_size_limit(limit)
    assert [len(rows) for rows in chunks] == [3, 3]  # the message: 310 KB a run
    assert header == [export.RUN_COLUMNS] and [row[0] for rows in chunks for row in rows] == newest_first


def test_runs_export_as_jsonl_holds_parameters_and_result_as_json(signed_in):
    big = 2**70  # more than 64 bits: kept exactly, as the stored text holds it
    post(documented_body("r-1", result=[{"title": "Boot", "price": 9.5, "id": big}]))
    post(newer_body("r-2", output={"price": 1}, parameters=[1, "two"]))

    response = signed_in.get("/api/runs/export?format=jsonl")

    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"].endswith('.jsonl"')
    lines = b"".join(response.streaming_content).decode().splitlines()
    runs = [json.loads(line) for line in lines]
    assert [r["run_id"] for r in runs] == ["r-2", "r-1"]
    assert runs[1]["result"] == [{"title": "Boot", "price": 9.5, "id": big}]
    assert runs[1]["parameters"] == {"url": "https://shop.example/p/1"}
    assert runs[0]["parameters"] == [1, "two"]
    assert runs[0]["result"] == {"price": 1}
    assert runs[0]["started_at"].startswith("2026-11-30T08:00:00")
    assert runs[0]["extra"] == {}
    assert runs[1]["project_id"] == "proj-1" and runs[1]["job_run_id"] == "jr-1"


def test_an_unknown_format_or_no_sign_in_is_refused(client, signed_in):
    assert signed_in.get("/api/runs/export?format=xlsx").status_code == 422
    client.logout()
    assert client.get("/api/runs/export").status_code == 401


def test_job_run_results_become_one_row_per_object(signed_in):
    post(documented_body("r-1", job_run="jr-7", result=[{"title": "Boot", "price": 9.5}, {"title": "=1+1", "tags": ["a"]}]))
    post(newer_body("r-2", job_run="jr-7", output={"title": "Hat", "stock": None, "sale": True}))
    post(documented_body("r-3", job_run="jr-7", result="just text"))  # not objects: no rows
    post(documented_body("r-4", job_run="jr-7", status="failed"))
    post(documented_body("r-5", job_run="jr-other", result={"title": "elsewhere"}))

    response = signed_in.get("/api/job-runs/jr-7/results.csv")

    assert response["Content-Disposition"] == 'attachment; filename="job-run-jr-7-results.csv"'
    text = b"".join(response.streaming_content).decode()
    assert text.splitlines()[0] == "run_id,title,price,tags,stock,sale"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [
        {"run_id": "r-1", "title": "Boot", "price": "9.5", "tags": "", "stock": "", "sale": ""},
        {"run_id": "r-1", "title": "'=1+1", "price": "", "tags": '["a"]', "stock": "", "sale": ""},
        {"run_id": "r-2", "title": "Hat", "price": "", "tags": "", "stock": "", "sale": "true"},
    ]


def test_results_of_an_unknown_job_run_are_404(signed_in):
    assert signed_in.get("/api/job-runs/nope/results.csv").status_code == 404


def test_export_under_asgi_streams_an_async_iterator_without_warnings(async_client, user):
    # async_to_sync from this thread runs the view's sync_to_async work here, on the test's
    # database connection.
    async def run():
        await sync_to_async(post)(documented_body("r-1"))
        await async_client.aforce_login(user)
        response = await async_client.get("/api/runs/export?format=csv")
        assert response.status_code == 200
        assert response.is_async
        return b"".join([chunk async for chunk in response.streaming_content]).decode()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = async_to_sync(run)()
    assert text.splitlines()[1].startswith("r-1,completed,")
