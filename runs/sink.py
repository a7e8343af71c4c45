"""The webhook: what /api/sink decides (`accept`), the lean ASGI endpoint that serves it, and the
group commit that stores it.

Why a lean endpoint: under ASGI, each of Django's middleware classes hops to a thread and back
for every request (about 40 hops for this stack), which costs several times what storing a
delivery does. asgi.py therefore hands POST /api/sink straight to `asgi_sink`, which checks the
host, the token and the size, and sets the same security headers itself. The Ninja route in
runs.api calls the same `accept`, so the test client, the OpenAPI docs and the lean endpoint
cannot disagree.

Group commit:

Each delivery must be committed before it is acknowledged, and a commit per request caps the sink
at what one writer can commit one by one. Instead, requests hand their bodies to the process's one
writer and wait: while the writer commits a batch, newly arrived bodies queue up, and the next
transaction takes all of them. No request waits for a timer, each still gets its answer only after
its own batch is committed, and under load the cost of a commit is shared by many deliveries.
The writer takes its batch itself, when it starts on it, rather than being handed one: what
arrived while its thread woke up joins the batch. Under wrk's 16 connections on SQLite, batches
went from 8 deliveries to 16, and side by side 3,219 against 2,603 req/s, 294 against 373 µs of
CPU a request. On PostgreSQL, where several processes take turns on one storing lock, it takes
the batch only once it holds the lock, so what arrives during another process's turn joins it
too (ingest.holding_store_lock).

Reading on arrival:

A small body is parsed on the event loop as it arrives, and the writer only stores. On PostgreSQL
the writer does its work while holding the lock every process's writer queues on, and parsing was
about an eighth of that work. Two server processes, eight of wrk's connections each, ten
alternating rounds: 2,771 against 2,565 req/s (medians), nine of ten faster. One process, and
SQLite, where the two threads take turns anyway: within the noise (2,375 against 2,343 and 2,990
against 2,885, three rounds each). A delivery's received time is still taken when its batch is
stored, so that received times keep the order of the ids. Large bodies are read by the writer
(READ_ON_ARRIVAL_BYTES).

The writer is a single dedicated thread with its own database connection (Django's connections
are per thread), which it keeps between batches. Under Django's test client, which runs a test
inside a transaction on its own connection, the batch runs on the caller's thread instead
(SINK_WRITER_THREAD = False).
"""

import asyncio
import functools
import json
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host
from django.utils.csp import build_policy

from runs import checkpoints
from runs.ingest import Arrival, Outcome, holding_store_lock, store_arrivals

log = logging.getLogger(__name__)

MAX_BATCH = 256


# The writer keeps its connection from batch to batch: closing it into the pool and taking it up
# again cost more than a small batch's statements. A connection that sat idle this long is
# checked before use (one round trip on PostgreSQL), so the first delivery after the database
# restarted is stored rather than refused.
IDLE_CHECK_SECONDS = 1.0
_last_batch_at = 0.0


WRITER_THREAD = "sinkdash-writer"


Pending = tuple[Arrival, asyncio.Future]
# What storing a batch came to: its deliveries and their outcomes, or the exception it raised.
Stored = tuple[list[Pending], list[Outcome] | Exception]

# Bodies up to this size are read on the event loop as they arrive (see "Reading on arrival"
# above): about 0.1 ms for 64 KB. A larger one, up to a scraped page of megabytes (4 ms for
# 1.9 MB), would hold up every other request's answer for that long, so the writer reads it.
READ_ON_ARRIVAL_BYTES = 64 * 1024


def _arrivals(batch: list[Pending]) -> list[Arrival]:
    return [arrival for arrival, _ in batch]


def _commit(take: Callable[[], list[Pending]]) -> Stored:
    """Runs on the writer thread: takes the next batch (on PostgreSQL once it holds the storing
    lock, see ingest.holding_store_lock) and stores it. A connection that failed a batch and no
    longer works is closed, so the next batch opens a new one and the sink recovers by itself
    after an outage."""
    global _last_batch_at
    if time.monotonic() - _last_batch_at > IDLE_CHECK_SECONDS:
        _drop_if_unusable()
    batch: list[Pending] = []
    try:
        with holding_store_lock() as locked:
            batch = take()
            outcomes = store_arrivals(_arrivals(batch), locked=locked)
    except Exception as exc:  # answered on the event loop (GroupCommit._settle)
        if isinstance(exc, DatabaseError):
            _drop_if_unusable()
        return batch or take(), exc  # the lock itself failed: the batch waiting for it fails too
    finally:
        _last_batch_at = time.monotonic()
    checkpoints.after_commit(connection)
    return batch, outcomes


def _drop_if_unusable() -> None:
    if connection.connection is not None and not connection.is_usable():
        connection.close()


@receiver(connection_created)
def _writer_leaves_checkpoints(sender, **kwargs) -> None:
    """The writer's connection leaves WAL checkpoints to their thread (runs.checkpoints)."""
    if threading.current_thread().name.startswith(WRITER_THREAD):
        checkpoints.leave_to_thread(kwargs["connection"])


class GroupCommit:
    """One per event loop: the queue of bodies waiting for the writer."""

    _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WRITER_THREAD)

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self.draining = False
        self._guard = threading.Lock()  # the writer thread takes from pending as requests add to it

    async def deliver(self, raw: bytes, headers: dict[str, str]) -> Outcome:
        future = asyncio.get_running_loop().create_future()
        arrival = Arrival(raw, headers)
        if len(raw) <= READ_ON_ARRIVAL_BYTES:
            arrival.read()
        with self._guard:
            self.pending.append((arrival, future))
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def take(self) -> list[Pending]:
        """The next batch: everything queued so far, up to MAX_BATCH, oldest first."""
        with self._guard:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
        return batch

    async def _run(self, take: Callable[[], list[Pending]]) -> Stored:
        if settings.SINK_WRITER_THREAD:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, _commit, take)
        batch = take()
        try:
            return batch, await sync_to_async(store_arrivals)(_arrivals(batch))
        except Exception as exc:
            return batch, exc

    async def _drain(self) -> None:
        try:
            while self.pending:
                # One turn of the loop first: the answers of the batch just committed go out
                # before the writer starts the next, instead of both threads contending for the
                # interpreter lock. Side by side: a tenth less CPU per delivery, same req/s.
                await asyncio.sleep(0)
                await self._settle(*await self._run(self.take))
        finally:
            self.draining = False

    async def _settle(self, batch: list[Pending], stored: list[Outcome] | Exception) -> None:
        if isinstance(stored, DatabaseError):
            # The database could not take the batch: nothing in it was committed.
            for _, future in batch:
                _settle_future(future, exception=stored)
            return
        if isinstance(stored, Exception):
            if len(batch) == 1:
                _settle_future(batch[0][1], exception=stored)
                return
            # A bug hit one body; store the others one by one so only that one fails.
            log.error("batch of %d failed; retrying its deliveries one at a time", len(batch), exc_info=stored)
            for item in batch:
                await self._settle(*await self._run(lambda item=item: [item]))
            return
        for (_, future), outcome in zip(batch, stored, strict=True):
            _settle_future(future, result=outcome)


def _settle_future(future: asyncio.Future, result=None, exception: BaseException | None = None):
    if future.done():  # the sender hung up; what was committed stays committed
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def close_writer_connection() -> None:
    """Close the writer thread's connection (tests do, before their database is flushed or dropped)."""
    from django.db import connections

    GroupCommit._executor.submit(connections.close_all).result()


_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit]" = (
    weakref.WeakKeyDictionary()
)


async def deliver(raw: bytes, headers: dict[str, str]) -> Outcome:
    """Store one delivery with whatever else is arriving; returns once it is committed."""
    loop = asyncio.get_running_loop()
    group = _per_loop.get(loop)
    if group is None:
        group = _per_loop[loop] = GroupCommit()
    return await group.deliver(raw, headers)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


UNAUTHORIZED = Answer(401, {"detail": "Unauthorized"}, {"WWW-Authenticate": "Bearer"})


def authorized(authorization: str | None) -> bool:
    """`Bearer <sink token>`, compared in constant time; the answer never says what was wrong."""
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.SINK_TOKEN
    return (
        scheme.lower() == "bearer"
        and bool(expected)
        and secrets.compare_digest(token.strip().encode(), expected.encode())
    )


def too_large() -> Answer:
    limit = settings.MAX_BODY_BYTES
    return Answer(413, {"detail": f"body is larger than the {limit // 2**20} MB limit", "field": None})


async def accept(raw: bytes | None, headers: dict[str, str]) -> Answer:
    """Everything the sink decides about one POST, given its body (None: over the limit)."""
    if not authorized(headers.get("Authorization")):
        return UNAUTHORIZED
    if raw is None or len(raw) > settings.MAX_BODY_BYTES:
        return too_large()
    try:
        outcome = await deliver(raw, headers)
    except IntegrityError:
        raise  # a bug, not an outage: let it be a 500 and be seen
    except DatabaseError:
        # Locked past the busy timeout, or PostgreSQL unreachable: the sender retries for an hour.
        log.warning("sink: database unavailable, answering 503", exc_info=True)
        return Answer(
            503,
            {"detail": "database unavailable, retry later", "field": None},
            {"Retry-After": str(settings.RETRY_AFTER_SECONDS)},
        )
    if not outcome.accepted:
        return Answer(outcome.http_status, {"detail": outcome.reason, "field": outcome.field or None})
    return Answer(
        outcome.http_status,
        {"run_id": outcome.run_id, "outcome": outcome.kind, "delivery_id": outcome.delivery_id},
    )


@functools.lru_cache(maxsize=256)  # senders repeat the same few header names
def _header_name(raw: bytes) -> str:
    return "-".join(part.capitalize() for part in raw.decode("latin-1").split("-"))


@functools.cache
def _security_headers() -> list[tuple[bytes, bytes]]:
    # What Django's SecurityMiddleware, XFrameOptionsMiddleware and CSP middleware add to pages;
    # built once, since settings do not change while serving.
    return [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()),
        (b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()),
        (b"x-frame-options", settings.X_FRAME_OPTIONS.encode()),
        (b"content-security-policy", build_policy(settings.SECURE_CSP).encode()),
    ]


async def _respond(send, answer: Answer) -> None:
    try:
        body = orjson.dumps(answer.body)
    except orjson.JSONEncodeError:  # a lone surrogate in a reason, say: the standard library escapes it
        body = json.dumps(answer.body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_security_headers(),
        *((name.lower().encode(), value.encode()) for name, value in answer.headers.items()),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes the limit (the rest is never buffered)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def asgi_sink(scope, receive, send) -> None:
    """POST /api/sink without Django's middleware stack (see the module docstring)."""
    headers = {_header_name(name): value.decode("latin-1") for name, value in scope["headers"]}
    host, _ = split_domain_port(headers.get("Host", ""))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not host or not validate_host(host, allowed):
        return await _respond(send, Answer(400, {"detail": "Host header not allowed", "field": None}))
    if not authorized(headers.get("Authorization")):
        log.warning("sink: refused a delivery without a valid token from %s", (scope.get("client") or ["?"])[0])
        return await _respond(send, UNAUTHORIZED)
    declared = headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > settings.MAX_BODY_BYTES:
        return await _respond(send, too_large())
    try:
        raw = await _read_body(receive, settings.MAX_BODY_BYTES)
        answer = await accept(raw, headers)
    except ConnectionError:
        return
    except Exception:
        log.exception("sink: delivery failed")
        answer = Answer(500, {"detail": "internal error", "field": None})
    await _respond(send, answer)
