"""/failures/: groups most recent first, with sparkline and the jobs affected, filterable by
project and job, each opening the run list filtered to it; new groups appear live."""

import re

import pytest

from runs.models import Delivery, FailureGroup
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def failures(sink):
    sink.post(documented_body("f-1", status="failed", message="price missing on https://a.example/1"))
    sink.post(documented_body("f-2", status="failed", message="price missing on https://a.example/2", job="weekly"))
    sink.post(newer_body("f-3", failed=True, project="proj-2", job="daily"))
    sink.post(documented_body("ok"))


def group_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'<a href="/runs/\?failure_group=(\d+)"><code>', response.content.decode())]


def test_groups_are_listed_most_recent_first_with_count_and_links(failures, signed_in):
    response = signed_in.get("/failures/")
    body = response.content.decode()
    newest_first = list(FailureGroup.objects.order_by("-last_seen", "-id").values_list("id", flat=True))
    assert group_ids(response) == newest_first
    assert "price missing on &lt;url&gt;" in body  # the normalised message
    assert "nightly, weekly" in body or "weekly, nightly" in body  # jobs affected
    assert '<svg class="spark"' in body
    assert "script-timeout" in body and "execution" in body


def test_filter_by_project_and_job(failures, signed_in):
    proj2 = FailureGroup.objects.get(project__project_id="proj-2").id
    assert group_ids(signed_in.get("/failures/?project=proj-2")) == [proj2]
    assert group_ids(signed_in.get("/failures/?job=daily")) == [proj2]
    assert group_ids(signed_in.get("/failures/?project=proj-1&job=daily")) == []


def test_htmx_filter_change_gets_a_fragment(failures, signed_in):
    response = signed_in.get("/failures/?project=proj-2", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<section id="results"')


def test_a_new_failure_group_appears_on_the_next_poll(failures, sink, signed_in):
    cursor = Delivery.objects.latest("id").id
    poll = f"/failures/?after={cursor}"
    assert signed_in.get(poll, headers={"HX-Request": "true"}).status_code == 204
    sink.post(documented_body("f-4", status="failed", error="auth-check-failed", message="login shown"))
    response = signed_in.get(poll, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "auth-check-failed" in response.content.decode()
    assert "<html" not in response.content.decode()


def test_bad_cursor_is_a_400(signed_in):
    assert signed_in.get("/failures/?cursor=x").status_code == 400


def test_no_failures_says_so(sink, signed_in):
    sink.post(documented_body("ok"))
    assert "No failures." in signed_in.get("/failures/").content.decode()
