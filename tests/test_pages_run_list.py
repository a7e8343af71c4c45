"""The run list: every filter in the query string, alone and combined, htmx fragments, keyset
pages, totals from counters, and live rows that respect the filters."""

import re

import pytest

from runs.models import Delivery, Run
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(sink):
    """Two projects, two jobs, three job runs, four statuses, two APIs, two error codes."""
    bodies = [
        documented_body("c-1", api="product-details"),
        documented_body("f-1", status="failed", api="product-details", message="price missing on page"),
        documented_body("c-2", api="category-list", job_run="jr-2"),
        newer_body("t-1", reason={"type": "terminated", "message": "Max runs exceeded"}),
        newer_body("f-2", failed=True, api="category-list", job="weekly", job_run="jr-3",
                   parameters={"url": "https://shop.example/special"}),
        documented_body("o-1", project="proj-2", project_name="other", job="daily", job_run="jr-9"),
    ]  # fmt: skip
    for body in bodies:
        assert sink.post(body).status_code == 201


def listed(response) -> list[str]:
    return listed_in(response.content.decode())


def listed_in(html: str) -> list[str]:
    return re.findall(r'<a href="/runs/([^/"]+)/">', html)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", {"c-1", "f-1", "c-2", "t-1", "f-2", "o-1"}),
        ("status=failed", {"f-1", "f-2"}),
        ("status=failed&status=terminated", {"f-1", "f-2", "t-1"}),
        ("status=failed,completed", {"f-1", "f-2", "c-1", "c-2", "o-1"}),
        ("project=proj-2", {"o-1"}),
        ("job=weekly", {"f-2"}),
        ("job_run=jr-2", {"c-2"}),
        ("api=category-list", {"c-2", "f-2"}),
        ("error_code=script-timeout", {"f-2"}),
        ("q=price+missing", {"f-1"}),
        ("q=special", {"f-2"}),
        ("q=c-2", {"c-2"}),
        ("status=failed&api=product-details", {"f-1"}),
        ("status=completed&project=proj-1&job=nightly", {"c-1", "c-2"}),
        ("status=completed&job=nightly&job_run=jr-2&api=category-list", {"c-2"}),
        ("project=proj-2&status=failed", set()),
        ("since=2000-01-01&until=2999-12-31&status=failed", {"f-1", "f-2"}),
        ("since=2999-01-01", set()),
    ],
)
def test_filters_narrow_the_list(runs, signed_in, query, expected):
    response = signed_in.get(f"/runs/?{query}")
    assert response.status_code == 200
    assert set(listed(response)) == expected


def test_filter_by_failure_group_lists_that_groups_runs(runs, sink, signed_in):
    sink.post(documented_body("f-3", status="failed", message="price missing on page", job_run="jr-2"))
    group = Run.objects.get(run_id="f-1").failure_group_id
    response = signed_in.get(f"/runs/?failure_group={group}")
    assert set(listed(response)) == {"f-1", "f-3"}
    assert "2</strong> runs" in response.content.decode()  # FailureGroup.count, not a COUNT(*)


def test_form_controls_show_the_current_filter(runs, signed_in):
    body = signed_in.get("/runs/?status=failed&project=proj-2&q=hello&since=2026-01-02T03:04").content.decode()
    assert 'value="failed" checked' in body
    assert 'value="completed">' in body  # unchecked
    assert '<option value="proj-2" selected>' in body
    assert 'name="q" value="hello"' in body
    assert 'name="since" value="2026-01-02T03:04"' in body
    assert "<label>Project" in body and "<legend>Status</legend>" in body


@pytest.mark.parametrize("query", ["failure_group=abc", "since=yesterday", "until=2026-13-45", "cursor=x"])
def test_a_filter_that_cannot_be_read_is_a_clear_400(signed_in, query):
    response = signed_in.get(f"/runs/?{query}")
    assert response.status_code == 400
    body = response.content.decode()
    assert "This filter cannot be used" in body
    assert query.split("=")[0] in body


def test_htmx_filter_change_gets_the_results_fragment(runs, signed_in):
    response = signed_in.get("/runs/?status=failed", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="filters"' not in body
    assert body.lstrip().startswith('<section id="results"')
    assert set(listed(response)) == {"f-1", "f-2"}
    assert "HX-Request" in response["Vary"]


def test_bad_filter_over_htmx_is_a_400_fragment(signed_in):
    response = signed_in.get("/runs/?since=nope", headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "<html" not in response.content.decode()


def test_totals_come_from_counters(runs, signed_in):
    assert "6</strong> runs" in signed_in.get("/runs/").content.decode()
    assert "2</strong> runs" in signed_in.get("/runs/?status=failed").content.decode()
    assert "1</strong> run," in signed_in.get("/runs/?project=proj-2").content.decode()
    assert "2</strong> runs" in signed_in.get("/runs/?job_run=jr-1&status=completed,failed").content.decode()
    assert "not counted" in signed_in.get("/runs/?q=price").content.decode()


def test_older_pages_follow_the_keyset_cursor(sink, signed_in):
    for i in range(7):
        sink.post(documented_body(f"p-{i}"))
    first = signed_in.get("/runs/?limit=3")
    assert listed(first) == ["p-6", "p-5", "p-4"]
    cursor = re.search(r'href="/runs/\?limit=3&amp;cursor=(\d+)"', first.content.decode())[1]
    second = signed_in.get(f"/runs/?limit=3&cursor={cursor}")
    assert listed(second) == ["p-3", "p-2", "p-1"]
    assert "back to newest" in second.content.decode()
    assert 'id="live-runs"' not in second.content.decode()  # an older page does not grow


def test_live_poll_returns_only_new_rows_that_match(runs, sink, signed_in):
    page = signed_in.get("/runs/?status=failed").content.decode()
    poll = re.search(r'id="live-runs"[^>]*hx-get="([^"]+)"', page)[1].replace("&amp;", "&")
    assert signed_in.get(poll, headers={"HX-Request": "true"}).status_code == 204
    sink.post(documented_body("new-ok"))
    # A body arrived that this list does not show: no rows, only the poller, moved past it.
    skipped = signed_in.get(poll, headers={"HX-Request": "true"})
    assert listed(skipped) == []
    delivered = Delivery.objects.latest("id").id
    assert f"delivered={delivered}" in skipped.content.decode()
    sink.post(newer_body("new-bad", failed=True))
    response = signed_in.get(poll, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert listed(response) == ["new-bad"]
    assert "<html" not in body
    assert 'hx-swap-oob="true"' in body
    newest = Run.objects.get(run_id="new-bad").id
    assert f"after={newest}" in body and "status=failed" in body


def test_live_poll_redraws_rows_a_later_body_changed(sink, signed_in):
    sink.post(documented_body("flaky", status="failed"))
    sink.post(documented_body("steady"))
    everything = signed_in.get("/runs/").content.decode()
    failed_only = signed_in.get("/runs/?status=failed").content.decode()
    polls = [re.search(r'id="live-runs"[^>]*hx-get="([^"]+)"', page)[1].replace("&amp;", "&")
             for page in (everything, failed_only)]  # fmt: skip
    assert sink.post(documented_body("flaky", result={"ok": "second try"})).status_code == 200
    pk = Run.objects.get(run_id="flaky").pk

    redrawn = signed_in.get(polls[0], headers={"HX-Request": "true"}).content.decode()
    row = re.search(rf'<tr id="run-{pk}"[^>]*>.*?</tr>', redrawn, re.S)[0]
    assert ">completed</span>" in row  # app.js puts it in place of the old row
    assert listed_in(redrawn) == ["flaky"]  # that row only: "steady" did not change

    removed = signed_in.get(polls[1], headers={"HX-Request": "true"}).content.decode()
    assert f'<tr data-gone="{pk}" hidden></tr>' in removed
    assert listed_in(removed) == []


def test_empty_list_says_so(signed_in):
    body = signed_in.get("/runs/").content.decode()
    assert "No runs match these filters yet" in body


def test_rows_show_badge_text_error_and_links(runs, signed_in):
    body = signed_in.get("/runs/?status=failed").content.decode()
    assert '<span class="badge bad">failed</span>' in body
    assert "script-timeout" in body and "Execution Timed Out" in body
    assert 'href="/projects/' in body and 'href="/jobs/' in body and 'href="/job-runs/' in body
    assert "<time datetime=" in body and 'title="' in body
