"""Shared fixtures: real-shaped payloads and HTTP through Django's test client."""

import contextlib
import json
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "examples"
if not EXAMPLES.is_dir():  # CI clones beside a copy of shared/; a developer may run from elsewhere
    EXAMPLES = Path(os.environ.get("SINKDASH_EXAMPLES", "/work/shared/examples"))


def pytest_unconfigure(config):
    """Django removes the SQLite test database at the end, but connections still idle in the pool
    (sinkdash.db) close after that, and leave its -wal and -shm files in data/. Remove them, once
    the database they belonged to is gone."""
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if not name or Path(name).exists():
        return
    for suffix in ("-wal", "-shm"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def storing_elsewhere():
    """On PostgreSQL, a second connection holding the storing lock, as another server process
    storing a batch does, until the block ends (or its transaction is rolled back)."""
    from django.db import connections

    from runs import ingest

    other = connections.create_connection("default")
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ingest._STORE_LOCK])
        yield other
    finally:
        other.close()


def waits_its_turn_on_the_storing_lock(action) -> None:
    """On PostgreSQL: while another connection holds the storing lock, `action` waits for it,
    and gives up with a lock timeout after 200 ms."""
    from django.db import OperationalError, connection

    with storing_elsewhere(), connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '200ms'")
        try:
            with pytest.raises(OperationalError, match="lock timeout"):
                action()
        finally:
            cursor.execute("RESET lock_timeout")  # the connection goes back to the pool


def example_bytes(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def documented_body(run_id: str = "run-1", *, status: str = "completed", **over) -> dict:
    """A body in the documented shape (shared/intuned/sink-body.md)."""
    error = over.pop("error", "script-execution-exception")
    message = over.pop("message", "TimeoutError: locator('.price') not visible after 30000ms")
    if status == "completed":
        result = {"status": "completed", "result": over.pop("result", {"ok": True}),
                  "statusCode": over.pop("status_code", 200)}  # fmt: skip
    else:
        result = {"status": status, "error": error, "message": message,
                  "statusCode": over.pop("status_code", 500)}  # fmt: skip
    body = {
        "apiInfo": {
            "name": over.pop("api", "product-details"),
            "parameters": over.pop("parameters", {"url": "https://shop.example/p/1"}),
            "result": result,
            "runId": run_id,
        },
        "workspaceId": "ws-1",
        "project": {"id": over.pop("project", "proj-1"), "name": over.pop("project_name", "shop")},
        "projectJob": {"id": over.pop("job", "nightly")},
        "projectJobRun": {"id": over.pop("job_run", "jr-1")},
    }
    assert not over, f"unknown overrides {over}"
    return body


def newer_body(run_id: str = "run-n1", *, failed: bool = False, **over) -> dict:
    """A body in the newer platform shape (shared/intuned/README.md)."""
    api_info = {
        "name": over.pop("api", "product-details"),
        "parameters": over.pop("parameters", {"url": "https://shop.example/p/7"}),
        "runId": run_id,
        "result": None if failed else {"output": over.pop("output", {"price": 9.5})},
        "started_at": over.pop("started_at", "2026-11-30T08:00:00Z"),
        "ended_at": over.pop("ended_at", "2026-11-30T08:00:12Z"),
        "error": (
            {"message": over.pop("message", "Execution Timed Out"), "code": over.pop("code", "script-timeout"),
             "category": "execution", "doc_url": "https://docs.intunedhq.com/docs/support/errors"}
            if failed else None
        ),
        "reason": over.pop("reason", None),
        "trace_url": "https://files.example/trace.zip",
        "log_url": "https://files.example/logs.jsonl",
    }  # fmt: skip
    body = {
        "apiInfo": api_info,
        "workspaceId": "ws-1",
        "project": {"id": over.pop("project", "proj-1"), "name": "shop"},
        "projectJob": {"id": over.pop("job", "nightly")},
        "projectJobRun": {"id": over.pop("job_run", "jr-1")},
    }
    assert not over, f"unknown overrides {over}"
    return body


class Sink:
    """Posts bodies to /api/sink the way Intuned does."""

    def __init__(self, client: Client):
        self.client = client

    def post(self, body, *, token: str | None = None, content_type: str = "application/json", path="/api/sink"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {} if token == "" else {"Authorization": f"Bearer {token or settings.SINK_TOKEN}"}
        return self.client.generic("POST", path, data, content_type=content_type, headers=headers)


@pytest.fixture(autouse=True)
def sink_writer(request, settings):
    """The sink's writer thread has its own connection: right for tests whose data is committed
    (transaction=True, live servers), wrong inside a test's transaction, where the batch runs on
    the test's own thread instead."""
    marker = request.node.get_closest_marker("django_db")
    committed = marker is not None and marker.kwargs.get("transaction", False)
    committed = committed or "live_server" in request.fixturenames
    settings.SINK_WRITER_THREAD = committed
    yield
    if committed:
        from runs.sink import close_writer_connection

        close_writer_connection()


@pytest.fixture
def sink(client) -> Sink:
    return Sink(client)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", password="correct horse battery staple")


@pytest.fixture
def signed_in(client, user) -> Client:
    client.force_login(user)
    return client


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped browser test is a failure: a missing Chromium must not pass unnoticed."""
    outcome = yield
    report = outcome.get_result()
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if in_ci and report.skipped and item.get_closest_marker("browser") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"browser test skipped in CI (CI={os.environ['CI']}): {reason}"
