"""Importing sink bodies from files: runs.reading reads and parses them (in a process of its own
for large inputs, runs.readahead), and they are stored here through `ingest.store_committed`, a
batch per transaction with each counter row written once per batch, because one transaction per
line would spend most of the import committing (and, on SQLite, taking the write lock hundreds of
times a second).
"""

import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from runs.ingest import Incoming, bound_quarantine, store_committed
from runs.models import RejectedDelivery
from runs.payload import Refused
from runs.readahead import parsing
from runs.reading import Batching, Input, Read

# Bodies per transaction, and their bytes. Each batch pays a fixed dozen statements (parents,
# counters, commit), and on SQLite the commit writes every page the batch touched: the run id
# and parameters indexes get their entries at random places, so a bigger batch puts more of
# them on each page written (at a million runs, 5,000 imported 15% faster than 2,000; 10,000
# only 4% faster again, for 20 MB more memory). 5,000 ~1 KB bodies hold the SQLite write lock
# for about half a second, which a webhook delivery arriving meanwhile waits out well within its
# timeout. The byte bound keeps a batch of large bodies (results reach 2 MB) from filling memory.
BATCH_SIZE = 5000
BATCH_BYTES = 32 * 2**20
# SQLite page cache for the import's connection, in MiB (the server's connections keep the
# settings' 32). Run ids and parameter digests are random keys, so past ~100k runs their index
# pages stop fitting a small cache and every insert reads a page back; 128 MiB keeps them in
# memory up to about a million runs while the import (this process and its reader) stays under
# 300 MB.
SQLITE_CACHE_MIB = 128
# WAL pages the import's connection lets gather before it checkpoints (SQLite's default: 1,000). A
# checkpoint copies each page into the database file once however many commits rewrote it, and a
# batch rewrites the same index pages as the one before, so with a batch's ~30 MB of WAL past the
# default every commit copied nearly all of it. 300,000 runs side by side: 25.8 and 25.9 s against
# 29.6 and 31.8. The WAL grows to ~100 MB meanwhile and is emptied when the import ends.
SQLITE_CHECKPOINT_PAGES = 20_000


@dataclass
class ImportSummary:
    outcomes: Counter = field(default_factory=Counter)  # created, updated, duplicate, stale, rejected
    files: int = 0
    problems: list[str] = field(default_factory=list)  # "source: reason", in input order
    reader_peak_kib: int = 0  # the reading process's peak memory (runs.readahead); 0 without one

    @property
    def rejected(self) -> int:
        return self.outcomes["rejected"]

    def line(self) -> str:
        o = self.outcomes
        return (
            f"{o['created']} new, {o['updated']} updated, {o['duplicate']} duplicates, "
            f"{o['stale']} stale, {o['rejected']} rejected ({self.files} files)"
        )


# ---------------------------------------------------------------------------------------------
# Storing


def import_inputs(
    items: list[Input],
    *,
    batch_size: int = BATCH_SIZE,
    on_problem: Callable[[str], None] = lambda message: None,
    on_progress: Callable[[int], None] = lambda done_bytes: None,
    received_at: datetime | None = None,
    stdin: BinaryIO | None = None,
) -> ImportSummary:
    """Import every body of every input; refused bodies go to the quarantine named by file and
    line. `on_problem` hears each refusal as it happens; `on_progress` the bytes read so far."""
    summary = ImportSummary(files=len(items))
    batching = Batching(batch_size, BATCH_BYTES, settings.MAX_BODY_BYTES)
    with _collecting_less(), _sqlite_tuned_for_import(), parsing(items, batching, stdin) as parsed:
        for batch, done in parsed.batches:
            if batch:
                _store_batch(batch, summary, on_problem, received_at)
            on_progress(done)
    summary.reader_peak_kib = parsed.reader_peak_kib
    return summary


@contextlib.contextmanager
def _collecting_less() -> Iterator[None]:
    """Python's cycle collector, told to look less often while importing. A batch makes tens of
    thousands of tuples and objects that refcounting frees, and by default every 2,000 of them set
    off a collection, which now and then walks all of Django's objects too. Those are frozen (left
    out of collections) and the threshold is 50,000: the importer then runs 6% fewer instructions
    (callgrind, 20,000 runs; the cycles it makes are still collected, less often). Both settings
    are the whole process's: fine in import_runs' own process, not for a server's threads."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


@contextlib.contextmanager
def _sqlite_tuned_for_import() -> Iterator[None]:
    """SQLITE_CACHE_MIB and SQLITE_CHECKPOINT_PAGES for this connection while importing, then back
    to what they were, and the WAL copied into the database and emptied."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        before = {pragma: cursor.execute(f"PRAGMA {pragma}").fetchone()[0] for pragma in ("cache_size", "wal_autocheckpoint")}
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_MIB * 1024}")
        cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for pragma, value in before.items():
                cursor.execute(f"PRAGMA {pragma} = {int(value)}")
            if not connection.in_atomic_block:  # it cannot run inside a transaction
                # Waits (on the busy timeout) for the sink's writer and readers; gives up,
                # harmlessly, if they keep it busy: the next checkpoints copy what is left.
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _store_batch(
    batch: list[Read],
    summary: ImportSummary,
    on_problem: Callable[[str], None],
    received_at: datetime | None,
) -> None:
    at = received_at or timezone.now()
    accepted = [
        Incoming(read.parsed, read.raw, at, source=read.source, sha256=read.sha256)
        for read in batch if not isinstance(read.parsed, Refused)
    ]  # fmt: skip
    refused = [read for read in batch if isinstance(read.parsed, Refused)]
    if accepted:
        # One transaction (and one write of each counter row) for the whole batch.
        for outcome in store_committed(accepted, repeats=False):
            summary.outcomes[outcome.kind] += 1
    if refused:
        with transaction.atomic():
            for read in refused:
                if read.raw is not None:
                    _quarantine_in_batch(read, at)
            bound_quarantine()
    for read in refused:
        summary.outcomes["rejected"] += 1
        message = f"{read.source}: {read.parsed.reason}"
        summary.problems.append(message)
        on_problem(message)


def _quarantine_in_batch(read: Read, at: datetime) -> None:
    """Like ingest.quarantine, but bounding the quarantine once per batch rather than per body, and
    keeping a body only once: importing the same bad file again must not fill the quarantine."""
    waiting = RejectedDelivery.objects.filter(sha256=read.sha256, reprocessed_at__isnull=True)
    if waiting.exists():
        return
    refusal = read.parsed
    RejectedDelivery.objects.create(
        received_at=at,
        raw=read.raw,
        sha256=read.sha256,
        size=len(read.raw),
        source=read.source,
        http_status=refusal.http_status,
        reason=refusal.reason,
        field=refusal.field,
    )
