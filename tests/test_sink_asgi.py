"""The lean ASGI endpoint that serves POST /api/sink in production (sinkdash.asgi) behaves like the
Ninja route the other tests reach through Django's test client: same answers, same storage, same
security headers, plus a size check before the body is read."""

import asyncio
import json
import time

import pytest
from django.conf import settings

from runs.models import Delivery, RejectedDelivery, Run
from sinkdash.asgi import application
from tests.conftest import documented_body, storing_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)


def call(body: bytes, **kwargs) -> tuple[int, dict[str, str], bytes]:
    return asyncio.run(asyncio.wait_for(acall(body, **kwargs), 30))


async def acall(body: bytes, *, headers: dict[str, str] | None = None, path: str = "/api/sink",
                chunks: int = 1, method: str = "POST") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request straight into the ASGI application, as uvicorn would make it."""
    headers = {"host": "127.0.0.1:8000", "content-type": "application/json",
               "authorization": f"Bearer {settings.SINK_TOKEN}", **(headers or {})}  # fmt: skip
    headers = {k: v for k, v in headers.items() if v is not None}
    size = max(1, -(-len(body) // chunks))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stays connected until the answer

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], response_headers, body_out


def test_new_run_is_201_and_stored_with_its_exact_bytes():
    raw = json.dumps(documented_body("asgi-1", status="failed")).encode()
    status, headers, body = call(raw, chunks=3)
    assert status == 201
    assert json.loads(body)["outcome"] == "created"
    assert headers["content-type"] == "application/json"
    run = Run.objects.get(run_id="asgi-1")
    assert run.status == "failed" and run.failure_group is not None
    assert bytes(Delivery.objects.get(run=run).raw) == raw


def test_repeat_is_200_duplicate():
    raw = json.dumps(documented_body("asgi-2")).encode()
    call(raw)
    status, _, body = call(raw)
    assert status == 200 and json.loads(body)["outcome"] == "duplicate"
    assert Run.objects.get().delivery_count == 2


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic xyz", "Bearer"])
def test_missing_or_wrong_token_is_401_and_stores_nothing(authorization):
    status, headers, body = call(b'{"apiInfo": {"runId": "x"}}', headers={"authorization": authorization})
    assert status == 401
    assert json.loads(body) == {"detail": "Unauthorized"}
    assert not Run.objects.exists() and not RejectedDelivery.objects.exists()


def test_same_security_headers_as_the_pages():
    _, headers, _ = call(json.dumps(documented_body("asgi-h")).encode())
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert "default-src 'self'" in headers["content-security-policy"]


def test_declared_size_over_the_limit_is_413_before_reading(settings):
    settings.MAX_BODY_BYTES = 1000
    status, _, body = call(b"x" * 10, headers={"content-length": "5000"})
    assert status == 413 and "larger than" in json.loads(body)["detail"]


def test_streamed_body_over_the_limit_is_413(settings):
    settings.MAX_BODY_BYTES = 1000
    status, _, _ = call(json.dumps(documented_body("big", result="x" * 5000)).encode(), chunks=10)
    assert status == 413
    assert not Run.objects.exists()


def test_refusals_are_answered_and_quarantined():
    status, _, body = call(b"{broken")
    assert status == 400 and "not valid JSON" in json.loads(body)["detail"]
    status, _, body = call(b'{"apiInfo": {}}')
    assert status == 422 and json.loads(body)["field"] == "apiInfo.runId"
    assert RejectedDelivery.objects.count() == 2


def test_host_not_allowed_is_400():
    status, _, body = call(b"{}", headers={"host": "evil.example"})
    assert status == 400 and "Host" in json.loads(body)["detail"]


def test_trailing_slash_is_the_same_endpoint():
    status, _, _ = call(json.dumps(documented_body("slash")).encode(), path="/api/sink/")
    assert status == 201


def test_other_methods_fall_through_to_django():
    status, _, _ = call(b"", method="GET")
    assert status == 405


def test_concurrent_requests_share_commits_and_all_get_their_own_answer(monkeypatch):
    import runs.sink

    batches: list[int] = []
    real = runs.sink.store_arrivals

    def recording(arrivals, **options):
        batches.append(len(arrivals))
        return real(arrivals, **options)

    monkeypatch.setattr(runs.sink, "store_arrivals", recording)
    bodies = [json.dumps(documented_body(f"gc-{n}")).encode() for n in range(40)]

    async def many():
        return await asyncio.gather(*(acall(body) for body in bodies))

    answers = asyncio.run(many())
    assert sum(batches) == 40 and max(batches) > 1  # commits were shared
    assert sorted(status for status, _, _ in answers) == [201] * 40
    assert sorted(json.loads(body)["run_id"] for _, _, body in answers) == sorted(f"gc-{n}" for n in range(40))
    assert Run.objects.count() == 40


def test_small_bodies_are_read_as_they_arrive_and_large_ones_by_the_writer(monkeypatch):
    """A small body is parsed on the event loop, before the writer takes it, so that the writer
    (on PostgreSQL, holding the lock every process queues on) only stores. A large one is parsed by
    the writer, so that it never holds up the event loop's other requests."""
    import threading

    import runs.ingest
    import runs.sink

    parsed_on: dict[str, bool] = {}
    real = runs.ingest.parse

    def recording(raw):
        parsed = real(raw)
        parsed_on[parsed.run_id] = threading.current_thread() is threading.main_thread()
        return parsed

    monkeypatch.setattr(runs.ingest, "parse", recording)
    small = json.dumps(documented_body("read-small")).encode()
    large = json.dumps(documented_body("read-large", result="x" * runs.sink.READ_ON_ARRIVAL_BYTES)).encode()

    assert [call(body)[0] for body in (small, large)] == [201, 201]
    assert parsed_on == {"read-small": True, "read-large": False}  # the event loop runs on the main thread here


@pytest.mark.parametrize("where", ["reading", "storing"])
def test_a_bug_with_one_delivery_fails_only_that_one(monkeypatch, caplog, where):
    """An unexpected error (not a refusal, not the database) with one body answers 500 for it
    alone: read on arrival, it never reaches a batch; in a batch, the others are stored one by one."""
    import runs.ingest

    def failing_for_bug_3(run_id_of, real):
        def buggy(value):
            if run_id_of(value) == "bug-3":
                raise RuntimeError("a bug")
            return real(value)

        return buggy

    if where == "reading":
        body_run_id = lambda raw: json.loads(raw)["apiInfo"]["runId"]  # noqa: E731
        monkeypatch.setattr(runs.ingest, "parse", failing_for_bug_3(body_run_id, runs.ingest.parse))
    else:
        row = failing_for_bug_3(lambda run: run.run_id, runs.ingest.NewRun.row)
        monkeypatch.setattr(runs.ingest.NewRun, "row", row)
    bodies = [json.dumps(documented_body(f"bug-{n}")).encode() for n in range(6)]

    async def together():
        return await asyncio.gather(*(acall(body) for body in bodies))

    answers = asyncio.run(together())
    assert [status for status, _, _ in answers] == [201, 201, 201, 500, 201, 201]
    assert sorted(Run.objects.values_list("run_id", flat=True)) == ["bug-0", "bug-1", "bug-2", "bug-4", "bug-5"]
    assert Delivery.objects.count() == 5
    assert ("retrying its deliveries one at a time" in caplog.text) == (where == "storing")


def test_on_postgresql_what_arrives_while_another_process_stores_joins_the_next_batch(monkeypatch):
    """Processes take turns on the storing lock. The writer waits for it before choosing its batch,
    so the deliveries that arrive while another process holds it are stored together, as soon as
    the lock is free, instead of after the one that arrived first."""
    from django.db import connection

    import runs.sink

    if connection.vendor != "postgresql":
        pytest.skip("the storing lock is PostgreSQL's")
    batches: list[list[str]] = []
    real = runs.sink.store_arrivals

    def recording(arrivals, **options):
        batches.append([json.loads(arrival.raw)["apiInfo"]["runId"] for arrival in arrivals])
        return real(arrivals, **options)

    monkeypatch.setattr(runs.sink, "store_arrivals", recording)

    async def until(condition) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    def waiting_for_the_lock() -> bool:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return other_process.connection.execute(query).fetchone()[0] > 0

    async def deliveries():
        first = asyncio.create_task(acall(json.dumps(documented_body("turn-0")).encode()))
        await until(waiting_for_the_lock)
        later = [asyncio.create_task(acall(json.dumps(documented_body(f"turn-{n}")).encode())) for n in range(1, 6)]
        group = runs.sink._per_loop[asyncio.get_running_loop()]
        await until(lambda: len(group.pending) >= len(later))  # all queued (and the first too, or taken)
        other_process.connection.rollback()  # the other process's turn ends (Django's wrapper is sync-only)
        return await asyncio.gather(first, *later)

    with storing_elsewhere() as other_process:
        answers = asyncio.run(deliveries())
    assert [status for status, _, _ in answers] == [201] * 6
    assert batches == [[f"turn-{n}" for n in range(6)]]


def test_the_writer_leaves_checkpoints_to_a_thread_of_its_own(monkeypatch):
    """The writer's commits never copy the WAL back into the database file (its connection does
    not checkpoint); the checkpoint thread does, after them, so the WAL does not pile up."""
    from django.db import connection

    from runs import sink

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's WAL")
    from runs import checkpoints

    done = []  # (database, (busy, frames in the WAL, frames copied)) of each checkpoint the thread ran
    real = checkpoints.Checkpoints.checkpoint

    def recorded(self):
        result = real(self)
        done.append((self.database, result))
        return result

    monkeypatch.setattr(checkpoints.Checkpoints, "checkpoint", recorded)
    monkeypatch.setattr(checkpoints, "EVERY", 0)

    for i in range(5):
        assert call(json.dumps(documented_body(f"ckpt-{i}")).encode())[0] == 201
    writer_setting = sink.GroupCommit._executor.submit(
        lambda: sink.connection.cursor().execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    ).result()
    assert writer_setting == 0
    with connection.cursor() as cursor:  # other connections checkpoint as SQLite does by default
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == 1000

    deadline = time.monotonic() + 10
    while not any(copied > 0 for _, (_, _, copied) in done) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {database for database, _ in done} == {str(connection.settings_dict["NAME"])}
    assert any(busy == 0 and copied > 0 for _, (busy, _, copied) in done)
    assert Run.objects.filter(run_id__startswith="ckpt-").count() == 5

