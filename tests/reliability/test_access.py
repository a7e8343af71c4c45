"""Nobody gets in who should not: anonymous users and wrong credentials are refused on every page
and read route, whatever the method; the sink refuses a missing or wrong token with one and the
same answer; CSRF guards every form; the sink token is never logged or shown unless a signed-in
user asks to reveal it; and the security headers are on pages, API and the sink alike, in-process
and from a real server (whose sink is a lean ASGI endpoint outside Django's middleware)."""

import json
import logging
import re
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.test import Client

from runs.models import Delivery, RejectedDelivery
from runs.signin import new_first_sign_in_path
from tests.conftest import documented_body, newer_body
from tests.reliability.conftest import (
    API_TOKEN,
    SINK_TOKEN,
    assert_no_server_errors,
    record,
    request,
)
from tests.reliability.pages import page_paths
from tests.test_sign_in import OPEN, every_route

READ_API = [p for p in every_route() if p.startswith("/api/") and p not in OPEN and not p.startswith("/api/docs")
            and p != "/api/openapi.json" and p != "/api/"]  # fmt: skip
PAGES = [p for p in every_route() if not p.startswith(("/api/", "/accounts/first/")) and p not in OPEN]
WRONG_AUTHORIZATIONS = [None, "", "Bearer", "Bearer ", "Bearer wrong", "Basic {token}", "bearer-{token}",
                        "Bearer {token}x", "Bearer x{token}", "Bearer {token} {token}", "Token {token}",
                        "Bearer " + "x" * 5000, "Bearer {token}\x00"]  # fmt: skip


def _authorization(template: str | None, token: str) -> dict[str, str]:
    return {} if template is None else {"Authorization": template.format(token=token)}


# --- Anonymous users and wrong credentials ----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def test_anonymous_users_get_nothing_from_any_page_or_read_route_whatever_the_method(client, method):
    for path in PAGES + READ_API:
        response = client.generic(method, path)
        assert response.status_code in (302, 401, 403, 405), (method, path, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith("/accounts/login/") or "/admin/login/" in response["Location"]
        assert b"run_id" not in response.content, (method, path)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "credentials",
    [{"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {settings.SINK_TOKEN}"},
     {"Authorization": "Bearer "}, {"Cookie": "sessionid=forged-session"}],
    ids=["wrong-token", "sink-token", "empty-token", "forged-session"],
)
def test_read_routes_refuse_wrong_credentials_and_the_sink_token(sink, client, credentials):
    sink.post(documented_body("seen-1"))
    for path in READ_API:
        response = client.get(path.replace("/x", "/seen-1"), headers=credentials)
        assert response.status_code == 401, (path, credentials, response.status_code)


@pytest.mark.django_db
def test_the_api_token_reads_but_cannot_deliver(sink, client, settings):
    settings.API_TOKEN = "an-api-token-for-scripts"
    assert client.get("/api/summary", headers={"Authorization": "Bearer an-api-token-for-scripts"}).status_code == 200
    assert sink.post(documented_body("by-api-token"), token="an-api-token-for-scripts").status_code == 401


@pytest.mark.django_db
def test_sink_refuses_missing_and_wrong_tokens_with_one_and_the_same_answer(client):
    answers = set()
    for template in WRONG_AUTHORIZATIONS:
        response = client.post("/api/sink", json.dumps(documented_body("nope")), content_type="application/json",
                               headers=_authorization(template, settings.SINK_TOKEN))  # fmt: skip
        answers.add((response.status_code, response.content, response.get("WWW-Authenticate")))
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == 401
    assert not Delivery.objects.exists() and not RejectedDelivery.objects.exists()


def test_real_server_sink_refuses_missing_and_wrong_tokens_alike(site):
    server = site.server().start()
    body = json.dumps(documented_body("nope")).encode()
    answers = set()
    for template in WRONG_AUTHORIZATIONS + [f"Bearer {API_TOKEN}"]:
        if template and "\x00" in template:
            continue  # http.client refuses to send a NUL in a header
        headers = {"Content-Type": "application/json", **_authorization(template, SINK_TOKEN)}
        status, got, answer = request("POST", server.port, "/api/sink", body, headers)
        got.pop("date", None)
        answers.add((status, answer, json.dumps(sorted(got.items()))))
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == 401
    assert site.db.value("SELECT COUNT(*) FROM runs_delivery") == 0
    assert site.db.value("SELECT COUNT(*) FROM runs_rejecteddelivery") == 0


# --- CSRF ------------------------------------------------------------------------------------


class Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "get").lower() == "post":
            self.targets.add(a.get("action") or "")
        for name in ("hx-post", "hx-put", "hx-patch", "hx-delete"):
            if a.get(name):
                self.targets.add(a[name])


@pytest.fixture
def strict_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_every_form_and_post_route_refuses_a_post_without_csrf_token(strict_client, sink):
    sink.post(documented_body("csrf-1", status="failed"))
    sink.post(newer_body("csrf-2"))
    sink.post(b"not json")
    targets = {"/connect/token", "/accounts/logout/", "/admin/logout/", "/admin/password_change/",
               "/admin/auth/user/add/", "/admin/runs/run/add/"}
    for path in page_paths():
        forms = Forms()
        page = strict_client.get(path)
        forms.feed(page.content.decode())
        targets |= {t or path for t in forms.targets}
    for target in sorted(targets):
        response = strict_client.post(target, {"anything": "1"}, headers={"HX-Request": "true"})
        assert response.status_code == 403, (target, response.status_code)
    # The same POST with the token goes through: the 403s above were CSRF, not something else.
    strict_client.get("/connect/")
    token = strict_client.cookies["csrftoken"].value
    revealed = strict_client.post("/connect/token", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert revealed.status_code == 200
    record("csrf", post_targets=sorted(targets))


@pytest.mark.django_db
def test_sign_in_forms_refuse_a_post_without_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    form = {"username": "ada", "password": "correct horse battery staple"}
    assert client.post("/accounts/login/", form).status_code == 403
    assert client.post("/admin/login/", form).status_code == 403
    user.delete()
    path = new_first_sign_in_path()
    signup = {"username": "mallory", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"}
    assert client.post(path, signup).status_code == 403
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.exists()


# --- The sink token stays secret ------------------------------------------------------------


@pytest.mark.django_db
def test_sink_token_is_never_logged_stored_or_shown_but_on_reveal(sink, signed_in, caplog):
    caplog.set_level(logging.DEBUG)
    token = settings.SINK_TOKEN
    sink.post(documented_body("secret-1"))
    sink.post(documented_body("secret-2", status="failed"))
    sink.post(documented_body("secret-1"))  # a repeat
    sink.post(b"not json")  # 400
    sink.post(json.dumps({"apiInfo": {"runId": 5}}).encode())  # 422
    sink.post(documented_body("secret-3"), token="wrong-" + token)
    signed_in.post("/api/sink", b"{}", content_type="application/json",
                   headers={"Authorization": f"Bearer {token}", "X-Api-Key": token, "X-Token": token})  # fmt: skip
    pages = page_paths()
    for path in pages:
        for headers in ({}, {"HX-Request": "true"}):
            response = signed_in.get(path, headers=headers)
            assert token not in response.content.decode(errors="replace"), path
    for path in ["/api/runs", "/api/runs/secret-1", "/api/rejected", "/api/runs/export?format=jsonl"]:
        response = signed_in.get(path)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert token.encode() not in body, path
    for raw in list(Delivery.objects.values_list("headers_json", flat=True)) + list(
        RejectedDelivery.objects.values_list("headers_json", flat=True)
    ):
        assert token not in raw
    assert token not in caplog.text
    # Revealing it is a signed-in POST, answered no-store.
    revealed = signed_in.post("/connect/token", headers={"HX-Request": "true"})
    assert token in revealed.content.decode()
    assert "no-store" in revealed["Cache-Control"]
    assert signed_in.get("/connect/token").status_code == 405
    assert token not in Client().post("/connect/token").content.decode()


def test_real_server_never_logs_the_sink_token(site):
    server = site.server(env_over={"SINKDASH_LOG_LEVEL": "DEBUG"}).start()
    good = {"Authorization": f"Bearer {SINK_TOKEN}", "Content-Type": "application/json"}
    bad = {"Authorization": f"Bearer x{SINK_TOKEN}", "Content-Type": "application/json"}
    for headers, body in [(good, documented_body("log-1")), (good, documented_body("log-1")), (bad, documented_body("log-2")),
                          (good, b"not json"), (good, {"apiInfo": {"runId": 5}})]:  # fmt: skip
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        request("POST", server.port, "/api/sink", raw, headers)
    request("GET", server.port, "/api/runs", headers={"Authorization": f"Bearer {SINK_TOKEN}"})
    server.stop()
    logs = site.logs()
    assert SINK_TOKEN not in logs
    assert_no_server_errors(logs)
    stored = site.db.rows("SELECT headers_json FROM runs_delivery UNION ALL SELECT headers_json FROM runs_rejecteddelivery")
    assert stored and not any(SINK_TOKEN in h for (h,) in stored)


# --- Security headers ------------------------------------------------------------------------


def assert_secure_headers(headers, where: str) -> None:
    get = {k.lower(): v for k, v in headers.items()}.get
    assert get("x-content-type-options") == "nosniff", where
    assert get("referrer-policy") in ("same-origin", "no-referrer", "strict-origin-when-cross-origin"), where
    assert get("x-frame-options") == "DENY", where


@pytest.mark.django_db
def test_security_headers_on_pages_api_and_sink(signed_in, sink, client):
    sink.post(documented_body("hdr-1"))
    checked = 0
    for path in page_paths() + ["/api/runs", "/api/summary", "/api/openapi.json", "/api/docs", "/api/runs/hdr-1",
                                "/does-not-exist/"]:  # fmt: skip
        assert_secure_headers(signed_in.get(path).headers, path)
        checked += 1
    for response in [client.get("/accounts/login/"), client.get("/"), client.get("/api/runs"), client.get("/healthz"),
                     sink.post(documented_body("hdr-2")), sink.post(b"x"), sink.post(b"{}", token="wrong")]:  # fmt: skip
        assert_secure_headers(response.headers, response.request["PATH_INFO"])
        checked += 1
    assert checked > 10


def test_security_headers_from_a_real_server(site):
    server = site.server().start()
    body = json.dumps(documented_body("real-hdr")).encode()
    answers = [
        request("POST", server.port, "/api/sink", body, {"Authorization": f"Bearer {SINK_TOKEN}"}),  # 201
        request("POST", server.port, "/api/sink", body, {"Authorization": f"Bearer {SINK_TOKEN}"}),  # 200
        request("POST", server.port, "/api/sink", b"nope", {"Authorization": f"Bearer {SINK_TOKEN}"}),  # 400
        request("POST", server.port, "/api/sink", body, {}),  # 401
        request("GET", server.port, "/"),  # 302 to sign-in
        request("GET", server.port, "/accounts/login/"),
        request("GET", server.port, "/api/runs", headers={"Authorization": f"Bearer {API_TOKEN}"}),
        request("GET", server.port, "/healthz"),
    ]
    statuses = [status for status, _, _ in answers]
    assert statuses == [201, 200, 400, 401, 302, 200, 200, 200], statuses
    for status, headers, _ in answers:
        assert_secure_headers(headers, str(status))
    login_csp = answers[5][1].get("content-security-policy", "")
    assert "script-src 'self'" in login_csp and "unsafe" not in login_csp
    assert re.search(r"csrftoken=[^;]+;.*SameSite=Lax", answers[5][1].get("set-cookie", ""), re.IGNORECASE)
    record("security_headers_real_server", statuses=statuses)
