"""The read API: runs with every filter and keyset pages, one run in full, job runs, projects,
failures, the quarantine and the summary."""

import json
from urllib.parse import quote

import pytest
from django.utils import timezone

from runs import queries
from runs.models import Run
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def loaded(sink):
    sink.post(documented_body("a1", api="list", job_run="jr-1"))
    sink.post(documented_body("a2", status="failed", api="details", job_run="jr-1",
                              parameters={"url": "https://shop.example/p/2"}))  # fmt: skip
    sink.post(newer_body("a3", failed=True, job="weekly", job_run="jr-2"))
    sink.post(documented_body("b1", project="proj-2", project_name="other", job="j2", job_run="jr-3"))
    sink.post(documented_body("b2", status="paused", project="proj-2", job="j2", job_run="jr-3"))


def run_ids(client, query=""):
    response = client.get(f"/api/runs?{query}")
    assert response.status_code == 200, response.content
    return [item["run_id"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", ["b2", "b1", "a3", "a2", "a1"]),
        ("status=failed", ["a3", "a2"]),
        ("status=failed&status=paused", ["b2", "a3", "a2"]),
        ("status=completed,paused", ["b2", "b1", "a1"]),
        ("project=proj-2", ["b2", "b1"]),
        ("job=weekly", ["a3"]),
        ("job=nightly&project=proj-1", ["a2", "a1"]),
        ("job_run=jr-1", ["a2", "a1"]),
        ("job_run=jr-1&status=failed", ["a2"]),
        ("api=list", ["a1"]),
        ("error_code=script-timeout", ["a3"]),
        ("q=shop.example/p/2", ["a2"]),
        ("q=a3", ["a3"]),
        ("q=timed out", ["a3"]),
        ("project=nope", []),
    ],
)
def test_run_filters(signed_in, loaded, query, expected):
    assert run_ids(signed_in, query) == expected


def test_run_item_fields(signed_in, loaded):
    item = signed_in.get("/api/runs?q=a2").json()["items"][0]
    assert set(item) == {
        "run_id", "status", "api_name", "project_id", "project_name", "job_id", "job_run_id",
        "status_code", "error_code", "error_message", "error_category", "received_at",
    }  # fmt: skip
    assert item["project_name"] == "shop" and item["job_run_id"] == "jr-1"
    assert item["error_category"] == "execution" and item["status_code"] == 500


def test_time_range(signed_in, loaded):
    now = timezone.now()
    Run.objects.filter(run_id__in=["a1", "a2"]).update(first_received_at=now - timezone.timedelta(days=3))
    since = (now - timezone.timedelta(days=1)).isoformat()
    assert run_ids(signed_in, f"since={since.replace('+', '%2B')}") == ["b2", "b1", "a3"]
    today = now.date().isoformat()
    assert run_ids(signed_in, f"until={today}") == ["b2", "b1", "a3", "a2", "a1"]
    assert run_ids(signed_in, "since=2999-01-01") == []


def test_keyset_pages_are_stable_while_new_runs_arrive(signed_in, loaded, sink):
    first = signed_in.get("/api/runs?limit=2").json()
    assert [i["run_id"] for i in first["items"]] == ["b2", "b1"]
    sink.post(documented_body("new-one"))
    second = signed_in.get(f"/api/runs?limit=2&cursor={first['next_cursor']}").json()
    assert [i["run_id"] for i in second["items"]] == ["a3", "a2"]
    third = signed_in.get(f"/api/runs?limit=2&cursor={second['next_cursor']}").json()
    assert [i["run_id"] for i in third["items"]] == ["a1"] and third["next_cursor"] is None


@pytest.mark.parametrize("query", [
    "limit=abc", "cursor=x", "since=yesterday", "failure_group=z",
    "parameters=not-a-digest&project=proj-1&api=product-details", "parameters=" + "a" * 64,
])  # fmt: skip
def test_bad_filter_values_are_422(signed_in, query):
    response = signed_in.get(f"/api/runs?{query}")
    assert response.status_code == 422
    assert query.split("=")[0] in response.json()["detail"]


@pytest.mark.parametrize("path", [
    "/api/runs?project=proj-1&project=proj-2", "/api/failures?cursor=1&cursor=2", "/api/rejected?limit=5&limit=9",
])  # fmt: skip
def test_a_one_value_parameter_given_twice_is_422_not_its_last_value(signed_in, loaded, path):
    response = signed_in.get(path)
    assert response.status_code == 422
    assert path.split("?")[1].split("=")[0] in response.json()["detail"]


def test_unknown_parameters_are_ignored_even_twice(signed_in, loaded):
    assert run_ids(signed_in, "utm=a&utm=b&status=failed") == run_ids(signed_in, "status=failed") == ["a3", "a2"]


def test_limit_is_capped_at_200(signed_in, sink):
    for n in range(205):
        sink.post(documented_body(f"l-{n}"))
    assert len(signed_in.get("/api/runs?limit=1000").json()["items"]) == 200


def test_a_page_of_runs_holds_as_many_whole_messages_as_fit(signed_in, sink, monkeypatch):
    # Scraped pages in messages: the page stops early and its cursor goes on from there.
    monkeypatch.setattr(queries, "PAGE_MESSAGE_CHARS", 500_000)
    page = "<div class='row'>scraped</div>\n" * 10_000  # 310,000 characters
    messages = {f"m-{i}": f"{i}: {page}" for i in range(5)}
    for run_id, message in messages.items():
        sink.post(documented_body(run_id, status="failed", message=message))
    sink.post(documented_body("huge", status="failed", message=page * 3))  # more than fits alone
    pages, cursor = [], ""
    while True:
        body = signed_in.get(f"/api/runs?limit=50{cursor}").json()
        pages.append([item["run_id"] for item in body["items"]])
        for item in body["items"]:
            assert item["error_message"] == messages.get(item["run_id"], page * 3)
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert pages == [["huge"], ["m-4"], ["m-3"], ["m-2"], ["m-1"], ["m-0"]]
    monkeypatch.setattr(queries, "PAGE_MESSAGE_CHARS", 700_000)
    assert run_ids(signed_in, "limit=50&status=failed&cursor=" + str(Run.objects.get(run_id="huge").pk)) == ["m-4", "m-3"]


def test_run_detail(signed_in, loaded, sink):
    sink.post(newer_body("a3", failed=True, job="weekly", job_run="jr-2"))  # a repeat
    detail = signed_in.get("/api/runs/a3").json()
    assert detail["status"] == "failed"
    assert detail["parameters"] == {"url": "https://shop.example/p/7"}
    assert detail["trace_url"] == "https://files.example/trace.zip"
    assert detail["started_at"].startswith("2026-11-30T08:00:00")
    assert detail["delivery_count"] == 2
    assert [d["size"] > 0 for d in detail["deliveries"]] == [True, True]
    assert detail["deliveries"][0]["sha256"] == detail["deliveries"][1]["sha256"]


@pytest.mark.parametrize("run_id", ["a/b?c#d", "line\nbreak\tid", "export-not"])
def test_run_detail_of_any_run_id(signed_in, sink, run_id):
    sink.post(newer_body(run_id))
    detail = signed_in.get("/api/runs/" + quote(run_id, safe="/"))
    assert detail.status_code == 200
    assert detail.json()["run_id"] == run_id


def test_runs_with_the_same_parameters(signed_in, sink):
    sink.post(documented_body("p1", parameters={"q": "boots", "page": 1}))
    sink.post(documented_body("p2", parameters={"page": 1, "q": "boots"}, job_run="jr-9"))
    sink.post(documented_body("p3", parameters={"q": "boots", "page": 2}))
    digest = signed_in.get("/api/runs/p1").json()["parameters_sha256"]
    found = signed_in.get(f"/api/runs?project=proj-1&api=product-details&parameters={digest}").json()
    assert [item["run_id"] for item in found["items"]] == ["p2", "p1"]
    exported = signed_in.get(f"/api/runs/export?format=jsonl&project=proj-1&api=product-details&parameters={digest}")
    assert [json.loads(line)["run_id"] for line in b"".join(exported.streaming_content).splitlines()] == ["p2", "p1"]


def test_unknown_run_delivery_and_job_run_are_404(signed_in):
    assert signed_in.get("/api/runs/nope").status_code == 404
    assert signed_in.get("/api/deliveries/999/raw").status_code == 404
    assert signed_in.get("/api/job-runs/nope").status_code == 404


def test_job_run_counters(signed_in, loaded):
    data = signed_in.get("/api/job-runs/jr-3").json()
    assert (data["total"], data["completed"], data["failed"], data["other"]) == (2, 1, 0, 1)
    assert data["first_received_at"] <= data["last_received_at"]


def test_projects_with_jobs(signed_in, loaded):
    projects = {p["project_id"]: p for p in signed_in.get("/api/projects").json()}
    assert projects["proj-1"]["run_count"] == 3 and projects["proj-1"]["failed_count"] == 2
    assert sorted(j["job_id"] for j in projects["proj-1"]["jobs"]) == ["nightly", "weekly"]


def test_failures_most_recent_first(signed_in, loaded):
    items = signed_in.get("/api/failures").json()["items"]
    assert [(i["error_code"], i["count"], i["sample_run_id"]) for i in items] == [
        ("script-timeout", 1, "a3"),
        ("script-execution-exception", 1, "a2"),
    ]
    assert signed_in.get("/api/failures?project=proj-2").json()["items"] == []


def test_rejected_and_its_raw_body(signed_in, sink):
    sink.post(b"<html>not json</html>")
    items = signed_in.get("/api/rejected").json()["items"]
    assert len(items) == 1 and items[0]["http_status"] == 400
    raw = signed_in.get(f"/api/rejected/{items[0]['id']}/raw")
    assert raw.content == b"<html>not json</html>"
    assert raw["Content-Type"] == "application/octet-stream"


def test_summary_from_counters(signed_in, loaded):
    assert signed_in.get("/api/summary").json() == {
        "total": 5, "by_status": {"completed": 2, "failed": 2, "paused": 1},
    }  # fmt: skip


def test_api_token_reads_without_a_session(client, loaded, settings):
    settings.API_TOKEN = "read-token"
    assert client.get("/api/summary", headers={"Authorization": "Bearer read-token"}).status_code == 200
    assert client.get("/api/summary", headers={"Authorization": "Bearer other"}).status_code == 401
    settings.API_TOKEN = ""
    assert client.get("/api/summary", headers={"Authorization": "Bearer "}).status_code == 401


def test_sink_token_does_not_open_the_read_api(client, loaded, settings):
    headers = {"Authorization": f"Bearer {settings.SINK_TOKEN}"}
    assert client.get("/api/runs", headers=headers).status_code == 401


@pytest.mark.parametrize("path, field", [("/api/failures?limit=x", "limit"), ("/api/deliveries/abc/raw", "delivery_id")])
def test_parameters_of_the_wrong_type_get_the_same_error_shape(signed_in, path, field):
    response = signed_in.get(path)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert field in response.json()["detail"]


def test_several_statuses_page_newest_first_across_statuses(signed_in, sink):
    for n in range(7):
        sink.post(documented_body(f"m-{n}", status=["failed", "completed", "paused"][n % 3]))
    first = signed_in.get("/api/runs?status=failed&status=paused&limit=2").json()
    assert [i["run_id"] for i in first["items"]] == ["m-6", "m-5"]
    second = signed_in.get(f"/api/runs?status=failed&status=paused&limit=2&cursor={first['next_cursor']}").json()
    assert [i["run_id"] for i in second["items"]] == ["m-3", "m-2"]
    third = signed_in.get(f"/api/runs?status=failed&status=paused&limit=2&cursor={second['next_cursor']}").json()
    assert [i["run_id"] for i in third["items"]] == ["m-0"] and third["next_cursor"] is None


def test_export_with_several_statuses_is_newest_first(signed_in, sink, monkeypatch):
    monkeypatch.setattr("runs.export.PAGE_SIZE", 2)
    for n in range(7):
        sink.post(documented_body(f"e-{n}", status=["failed", "completed", "paused"][n % 3]))
    response = signed_in.get("/api/runs/export?format=jsonl&status=failed&status=paused")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["e-6", "e-5", "e-3", "e-2", "e-0"]


def test_pasted_run_id_finds_that_run_and_text_search_is_bounded(signed_in, sink, monkeypatch):
    sink.post(documented_body("needle-1", parameters={"parent": "needle-2"}))
    sink.post(documented_body("needle-2"))
    assert run_ids(signed_in, "q=needle-2") == ["needle-2"]  # the exact id, by its index
    assert run_ids(signed_in, "q=needle") == ["needle-1"]  # text: found in needle-1's parameters
    monkeypatch.setattr("runs.queries.SEARCH_WINDOW", 1)
    sink.post(documented_body("newest", parameters={"x": "needle"}))
    assert run_ids(signed_in, "q=needle") == ["newest"]  # older matches lie outside the window
