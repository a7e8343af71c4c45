"""Browser tests: Debian's Chromium (never a downloaded browser) driven by pytest-playwright
against pytest-django's live server, which serves the app from a thread on the test database."""

import json
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")



@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def browser(browser_type_launch_args):
    """Chromium for one module. pytest-playwright's own browser lives for the whole session, and
    its event loop running in the main thread would then break every later test that reaches an
    async view through Django's sync test client ("AsyncToSync in the same thread as an event
    loop"); stopping Playwright at the end of the module ends that loop.

    While that loop runs, the ORM calls the tests make between page actions (and the database
    flush after each test) are still synchronous, so Django's async guard stands aside for exactly
    that span; set process-wide it would leak into subprocesses other tests start."""
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(**browser_type_launch_args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


class Sender:
    """Posts sink bodies to the live server over real HTTP, as Intuned does."""

    def __init__(self, base_url: str):
        self.url = base_url + "/api/sink"

    def post(self, body: dict) -> int:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {settings.SINK_TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status


@pytest.fixture
def sender(live_server) -> Sender:
    return Sender(live_server.url)


@pytest.fixture
def problems() -> list[str]:
    return []


@pytest.fixture
def dash(page, live_server, django_user_model, problems):
    """A signed-in page on the live server that records console errors, CSP violations and
    uncaught exceptions; the test fails if any were seen."""
    user = django_user_model.objects.create_user("ada", password="correct horse battery staple")
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
          "url": live_server.url}]
    )  # fmt: skip
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.set_default_timeout(5000)
    page.base = live_server.url
    yield page
    assert problems == [], problems
