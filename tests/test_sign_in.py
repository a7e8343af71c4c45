"""Nothing but the sink and the health check is served to someone who has not signed in."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from runs.models import SignInLink
from runs.signin import new_first_sign_in_path

pytestmark = pytest.mark.django_db

OPEN = {"/api/sink", "/api/sink/", "/healthz", "/accounts/login/", "/admin/login/"}
DOCS = ("/api/docs", "/api/openapi.json")


def every_route() -> list[str]:
    """Each URL pattern with sample values for its parameters."""
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern):
                found.append(route)

    walk(get_resolver().url_patterns, "")
    paths = set()
    for route in found:
        if route.startswith("^") or "(?P" in route:  # admin's regex routes are covered by /admin/
            continue
        path = "/" + re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m[1] == "int" else "x", route)
        paths.add(path)
    return sorted(paths)


def test_route_list_is_complete_enough():
    routes = every_route()
    for expected in ["/", "/api/runs", "/api/summary", "/api/docs", "/api/openapi.json", "/admin/"]:
        assert expected in routes


@pytest.mark.parametrize("path", every_route())
def test_anonymous_users_are_refused_everywhere_but_the_sink(client, path):
    if path in OPEN or path.startswith("/accounts/first/") or path == "/api/":
        return
    response = client.get(path)
    if path.startswith("/api/") and not path.startswith(DOCS):
        assert response.status_code in (401, 405), (path, response.status_code)
    else:
        assert response.status_code == 302, (path, response.status_code)
        assert "/login/" in response["Location"]


def test_api_docs_are_served_to_signed_in_users(signed_in):
    assert signed_in.get("/api/docs").status_code == 200
    assert signed_in.get("/api/openapi.json").json()["info"]["title"] == "sinkdash"


def test_health_check_needs_no_sign_in(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_login_page_signs_in(client, user):
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "ada", "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_first_sign_in_link_creates_the_first_account_once(client):
    path = new_first_sign_in_path()
    assert client.get(path).status_code == 200
    form = {"username": "first", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"}
    response = client.post(path, form)
    assert response.status_code == 302
    user = get_user_model().objects.get()
    assert user.is_superuser and user.username == "first"
    assert client.get("/").status_code == 200  # signed in by the link
    client.logout()
    assert client.get(path).status_code == 404
    assert client.post(path, {**form, "username": "second"}).status_code == 404
    assert get_user_model().objects.count() == 1
    assert new_first_sign_in_path() is None


def test_a_new_link_replaces_the_old_one(client):
    old = new_first_sign_in_path()
    new = new_first_sign_in_path()
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200
    assert SignInLink.objects.count() == 1


def test_guessed_link_is_refused(client):
    new_first_sign_in_path()
    assert client.get("/accounts/first/guess/").status_code == 404


def test_createsuperuser_noinput_works_as_django_documents(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-pass-phrase")
    call_command("createsuperuser", "--noinput", "--username", "root", "--email", "r@example.com")
    assert get_user_model().objects.get().check_password("a-long-pass-phrase")
