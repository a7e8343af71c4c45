"""Everything a delivery carries is hostile text: on every page, every field comes out escaped."""

import json

import pytest

from runs.models import Delivery, FailureGroup, Job, JobRun, Project, RejectedDelivery, Run
from tests.html_elements import Elements

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(1)>'
HOSTILE = SCRIPT + ATTR


@pytest.fixture
def hostile(sink):
    body = {
        "apiInfo": {
            "name": HOSTILE,
            "parameters": {"q": HOSTILE, HOSTILE: [HOSTILE]},
            "runId": "run-" + HOSTILE,
            "result": {"status": "failed", "error": HOSTILE, "message": HOSTILE, "statusCode": 500},
            "trace_url": "javascript:alert(1)",
            "log_url": "https://x.example/" + ATTR,
            "started_at": "2026-11-30T08:00:00Z",
            HOSTILE: HOSTILE,
        },
        "workspaceId": HOSTILE,
        "project": {"id": "p-" + HOSTILE, "name": HOSTILE},
        "projectJob": {"id": "j-" + HOSTILE},
        "projectJobRun": {"id": "jr-" + HOSTILE},
        "authSession": {"id": "as-" + HOSTILE},
        HOSTILE: HOSTILE,
    }
    assert sink.post(body).status_code == 201
    completed = json.loads(json.dumps(body))
    completed["apiInfo"]["runId"] = "ok-" + HOSTILE
    completed["apiInfo"]["result"] = {"status": "completed", "result": {HOSTILE: HOSTILE}, "statusCode": 200}
    assert sink.post(completed).status_code == 201
    sink.post(HOSTILE.encode())  # refused, kept in the quarantine
    sink.post(json.dumps({"apiInfo": {"runId": 5, "name": HOSTILE}}).encode())
    return Run.objects.get(run_id="run-" + HOSTILE)


def pages(run: Run) -> list[str]:
    from django.urls import reverse

    delivery = Delivery.objects.filter(run=run).first()
    rejected = RejectedDelivery.objects.first()
    return [
        "/", "/runs/", "/runs/?status=failed", f"/runs/?q={SCRIPT}", reverse("run", args=[run.run_id]),
        reverse("run", args=["ok-" + HOSTILE]), "/failures/", f"/projects/{Project.objects.get().pk}/",
        f"/jobs/{Job.objects.get().pk}/", f"/job-runs/{JobRun.objects.get().pk}/", "/rejected/",
        f"/rejected/{rejected.pk}/", f"/deliveries/{delivery.pk}/", "/connect/",
        f"/runs/?failure_group={FailureGroup.objects.get().pk}", f"/runs/?api={HOSTILE}&error_code={ATTR}",
    ]  # fmt: skip


def assert_escaped(html: str, where: str) -> None:
    assert SCRIPT not in html, where
    assert "<img src=x" not in html, where
    parsed = Elements()
    parsed.feed(html)
    assert not parsed.script_text, where
    for tag, attrs in parsed.tags:
        assert tag != "img", where
        assert not any(name.startswith("on") for name in attrs), (where, tag, attrs)
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/"), where
        for name in ("href", "src", "hx-get", "hx-post"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:"), (where, tag)


def test_hostile_strings_are_escaped_on_every_page(hostile, signed_in):
    for path in pages(hostile):
        for headers in ({}, {"HX-Request": "true"}):
            response = signed_in.get(path, headers=headers)
            assert response.status_code in (200, 400), (path, response.status_code)
            html = response.content.decode()
            assert_escaped(html, path)
    # And the hostile text is really shown (escaped), not dropped.
    detail = signed_in.get(pages(hostile)[4]).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in detail


def test_hostile_strings_are_escaped_in_live_fragments(hostile, sink, signed_in):
    for path in ["/runs/?after=0", "/?after=0", "/failures/?after=0", "/connect/?after=0",
                 f"/job-runs/{JobRun.objects.get().pk}/?after=0"]:  # fmt: skip
        response = signed_in.get(path, headers={"HX-Request": "true"})
        assert response.status_code == 200, path
        assert_escaped(response.content.decode(), path)
    revealed = signed_in.post("/connect/token", headers={"HX-Request": "true"})
    assert_escaped(revealed.content.decode(), "/connect/token")
