"""The webhook's way into the database: group commit.

Each delivery must be committed before it is acknowledged, and a commit per request caps the sink
at what one writer can commit one by one. Instead, requests hand their bodies to the process's one
writer and wait: while the writer commits a batch, newly arrived bodies queue up, and the next
transaction takes all of them. No request waits for a timer, each still gets its answer only after
its own batch is committed, and under load the cost of a commit is shared by many deliveries.

The writer is a single dedicated thread with its own long-lived database connection (Django's
connections are per thread). Under Django's test client, which runs a test inside a transaction on
its own connection, the batch runs on the caller's thread instead (SINK_WRITER_THREAD = False).
"""

import asyncio
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from runs.ingest import Outcome, receive_many

log = logging.getLogger(__name__)

MAX_BATCH = 256


def _commit(bodies: list[tuple[bytes, dict[str, str]]]) -> list[Outcome]:
    """Runs on the writer thread. A broken or expired connection is replaced first, the way
    Django does between requests, so the sink recovers by itself after the database returns."""
    close_old_connections()
    try:
        return receive_many(bodies)
    except DatabaseError:
        connection.close_if_unusable_or_obsolete()
        raise


class GroupCommit:
    """One per event loop: the queue of bodies waiting for the writer."""

    _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinkdash-writer")

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, dict[str, str], asyncio.Future]] = []
        self.draining = False

    async def deliver(self, raw: bytes, headers: dict[str, str]) -> Outcome:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((raw, headers, future))
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _run(self, bodies: list[tuple[bytes, dict[str, str]]]) -> list[Outcome]:
        if settings.SINK_WRITER_THREAD:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, _commit, bodies)
        return await sync_to_async(receive_many)(bodies)

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                await self._settle(batch)
        finally:
            self.draining = False

    async def _settle(self, batch: list[tuple[bytes, dict[str, str], asyncio.Future]]) -> None:
        try:
            outcomes = await self._run([(raw, headers) for raw, headers, _ in batch])
        except DatabaseError as exc:
            # The database could not take the batch: nothing in it was committed.
            for *_, future in batch:
                _settle_future(future, exception=exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _settle_future(batch[0][2], exception=exc)
                return
            # A bug hit one body; store the others one by one so only that one fails.
            log.exception("batch of %d failed; retrying its deliveries one at a time", len(batch))
            for item in batch:
                await self._settle([item])
            return
        for (*_, future), outcome in zip(batch, outcomes, strict=True):
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
