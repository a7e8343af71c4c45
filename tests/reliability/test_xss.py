"""A corpus of XSS payloads in every field any page renders, in both payload shapes: no page
(walked from the URL resolver, full and htmx fragment) contains one unescaped or turns one into an
element, attribute or javascript: link, and every HTML answer carries a strict CSP."""

import json

import pytest

from tests.conftest import Sink
from tests.html_elements import Elements
from tests.reliability.conftest import record
from tests.reliability.pages import page_paths

pytestmark = pytest.mark.django_db

CORPUS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</textarea><svg onload=alert(1)>",
    "</title><script>alert(1)</script>",
    "<iframe src=javascript:alert(1)></iframe>",
    '<a href="javascript:alert(1)">x</a>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "{{7*7}}{% debug %}${7*7}",
    "\u202e<script>alert(1)</script>",
    '<div hx-get="/api/runs" hx-trigger="load" hx-on::load="alert(1)">',
]
# What URL fields (trace_url, log_url, doc_url) may hold that must never become a live link.
BAD_URLS = ["javascript:alert(1)", " JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "\x01javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)"]  # fmt: skip
LIVE_SCHEMES = ("javascript:", "data:", "vbscript:")
URL_ATTRIBUTES = ("href", "src", "action", "formaction", "hx-get", "hx-post", "hx-put", "hx-delete", "xlink:href")


def hostile_bodies(n: int, payload: str, url: str) -> list[dict]:
    """Both shapes, failed and completed, with the payload in every field a page may render."""
    documented = {
        "apiInfo": {
            "name": f"api-{n}-{payload}",
            "parameters": {"q": payload, payload: [payload, {payload: payload}]},
            "runId": f"doc-{n}-{payload}",
            "result": {"status": "failed", "error": f"code-{payload}", "message": f"message {payload}",
                       "statusCode": 500, payload: payload},
            payload: payload,
        },
        "workspaceId": payload,
        "project": {"id": f"p-{n}-{payload}", "name": f"name-{payload}"},
        "projectJob": {"id": f"j-{payload}"},
        "projectJobRun": {"id": f"jr-{payload}"},
        "authSession": {"id": f"as-{payload}"},
        f"unknown-{payload}": payload,
    }
    completed = json.loads(json.dumps(documented))
    completed["apiInfo"]["runId"] = f"ok-{n}-{payload}"
    completed["apiInfo"]["result"] = {"status": "completed", "result": {payload: [payload]}, "statusCode": 200}
    newer = {
        "apiInfo": {
            "name": f"newer-{payload}",
            "parameters": [payload],
            "runId": f"new-{n}-{payload}",
            "result": None,
            "started_at": "2026-11-30T08:00:00Z",
            "ended_at": "2026-11-30T08:00:12Z",
            "error": {"code": f"script-{payload}", "message": payload, "category": f"cat-{payload}",
                      "doc_url": url, "details": {payload: payload}},
            "reason": None,
            "trace_url": url,
            "log_url": url,
        },
        "workspaceId": payload,
        "project": {"id": f"p-{n}-{payload}", "name": payload},
        "projectJob": {"id": f"j-{payload}"},
        "projectJobRun": {"id": f"jr-{payload}"},
    }
    cancelled = json.loads(json.dumps(newer))
    cancelled["apiInfo"].update(runId=f"cancel-{n}-{payload}", error=None,
                                reason={"type": f"terminated-{payload}", "message": payload})  # fmt: skip
    return [documented, completed, newer, cancelled]


def _scheme(value: str) -> str:
    # Browsers drop controls and whitespace anywhere in a scheme: "java\tscript:" is javascript:.
    return "".join(ch for ch in value if ord(ch) > 32).lower()


def assert_harmless(html: str, where: str) -> None:
    for payload in CORPUS:
        if "<" in payload:
            assert payload not in html, (where, payload)
    parsed = Elements()
    parsed.feed(html)
    assert not parsed.script_text, where
    for tag, attrs in parsed.tags:
        assert tag not in ("img", "iframe", "object", "embed", "base", "math", "mglyph"), (where, tag, attrs)
        for name, value in attrs.items():
            assert not name.startswith("on") and not name.startswith("hx-on"), (where, tag, name)
            if name in URL_ATTRIBUTES and value:
                assert not _scheme(value).startswith(LIVE_SCHEMES), (where, tag, name, value)
        if tag == "script":
            assert (attrs.get("src") or "").startswith("/static/"), (where, attrs)


def strict_csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = [w.lower() for w in words[1:]]
    return directives


def assert_strict_csp(response, where: str) -> None:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{where}: no Content-Security-Policy"
    directives = strict_csp(header)
    script = directives.get("script-src", directives.get("default-src"))
    assert script, (where, header)
    for source in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"):
        assert source not in script, (where, header)
    style = directives.get("style-src", directives.get("default-src"))
    assert "'unsafe-inline'" not in style, (where, header)
    assert directives.get("object-src") == ["'none'"], (where, header)
    assert directives.get("base-uri") in (["'none'"], ["'self'"]), (where, header)
    assert directives.get("frame-ancestors") == ["'none'"], (where, header)


@pytest.fixture
def hostile_site(signed_in, settings):
    settings.QUARANTINE_MAX_COUNT = 10_000
    sink = Sink(signed_in)
    for n, payload in enumerate(CORPUS):
        for body in hostile_bodies(n, payload, BAD_URLS[n % len(BAD_URLS)]):
            response = sink.post(body)
            assert response.status_code == 201, response.content
        sink.post(payload.encode())  # refused: not JSON, kept in the quarantine
        sink.post(json.dumps({"apiInfo": {"runId": 5, "name": payload}}).encode())  # refused: 422
    return signed_in


def test_no_page_renders_a_payload_and_every_page_has_a_strict_csp(hostile_site):
    client = hostile_site
    paths = page_paths(query_values=CORPUS[:3] + BAD_URLS[:1])
    fetched = html_pages = 0
    for path in paths:
        for headers in ({}, {"HX-Request": "true"}):
            response = client.get(path, headers=headers)
            fetched += 1
            assert response.status_code in (200, 204, 400), (path, response.status_code)
            if not response.get("Content-Type", "").startswith("text/html"):
                # Downloads (result.json) must never be sniffed into a page.
                assert response["X-Content-Type-Options"] == "nosniff", path
                assert "attachment" in response.get("Content-Disposition", ""), path
                continue
            if response.status_code == 204:
                continue
            html_pages += 1
            assert_harmless(response.content.decode(), path)
            assert_strict_csp(response, path)
    revealed = client.post("/connect/token", headers={"HX-Request": "true"})
    assert_harmless(revealed.content.decode(), "/connect/token")
    assert_strict_csp(revealed, "/connect/token")
    record("xss", payloads=len(CORPUS), bad_urls=len(BAD_URLS), runs_with_payloads=len(CORPUS) * 4,
           paths=len(paths), requests=fetched + 1, html_responses_checked=html_pages + 1)  # fmt: skip


def test_payloads_are_shown_as_text_not_dropped(hostile_site):
    """Escaping, not deleting: a user must see what the delivery really said."""
    from django.urls import reverse

    for n, payload in enumerate(CORPUS[:3]):
        html = hostile_site.get(reverse("run", args=[f"doc-{n}-{payload}"])).content.decode()
        assert payload.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace(
            "'", "&#x27;") in html, payload  # fmt: skip
    template = hostile_site.get(reverse("run", args=[f"doc-8-{CORPUS[8]}"])).content.decode()
    assert "{{7*7}}" in template and "{% debug %}" in template  # shown, never evaluated


def test_error_pages_do_not_echo_a_payload(hostile_site):
    for payload in CORPUS[:3]:
        from urllib.parse import quote

        response = hostile_site.get(f"/runs/{quote('missing-' + payload)}/")
        assert response.status_code == 404
        assert_harmless(response.content.decode(), "404")
