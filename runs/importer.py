"""Importing sink bodies from files: the S3 sink's one-body-per-file folders, JSON arrays, and the
JSONL that `intuned dev test-job download` writes.

Reading is streamed: a JSONL file is read line by line and a JSON array element by element, so
memory stays bounded by the largest single body whatever the file size. Bodies are stored through
`ingest.store_committed`, a batch per transaction with each counter row written once per batch,
because one transaction per line would spend most of the import committing (and, on SQLite,
taking the write lock hundreds of times a second).
"""

import codecs
import contextlib
import hashlib
import io
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from runs.ingest import Incoming, bound_quarantine, store_committed
from runs.models import RejectedDelivery
from runs.payload import Refused, parse

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
# memory up to about a million runs while the process stays under 300 MB.
SQLITE_CACHE_MIB = 128
JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Record:
    """One body as read from a file. `source` names it: "dir/file.jsonl:17" (file and line)."""

    source: str
    raw: bytes | None  # None when the body was too large or the file broke off (see `problem`)
    problem: str = ""


@dataclass
class ImportSummary:
    outcomes: Counter = field(default_factory=Counter)  # created, updated, duplicate, stale, rejected
    files: int = 0
    problems: list[str] = field(default_factory=list)  # "source: reason", in input order

    @property
    def rejected(self) -> int:
        return self.outcomes["rejected"]

    def line(self) -> str:
        o = self.outcomes
        return (
            f"{o['created']} new, {o['updated']} updated, {o['duplicate']} duplicates, "
            f"{o['stale']} stale, {o['rejected']} rejected ({self.files} files)"
        )


class UsageError(Exception):
    """A path that does not exist or cannot be read as input: nothing was imported."""


# ---------------------------------------------------------------------------------------------
# Finding the inputs


@dataclass(frozen=True, slots=True)
class Input:
    label: str  # what sources are named after: the path as given, or "stdin"
    kind: str  # "json" or "jsonl"
    path: Path | None  # None for standard input
    size: int | None  # bytes, for the progress bar; None when unknown


def inputs(paths: Iterable[str], *, fmt: str = "auto") -> list[Input]:
    """Expand the command line into files. Directories are walked recursively in name order and
    contribute their .json/.jsonl/.ndjson files; a file named explicitly is read whatever its
    suffix (as JSONL unless it ends in .json). Raises UsageError before anything is imported."""
    found: list[Input] = []
    for given in paths:
        if given == "-":
            found.append(Input("stdin", fmt, None, None))
            continue
        path = Path(given)
        if path.is_dir():
            walked = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in JSON_SUFFIXES | JSONL_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )  # fmt: skip
            found.extend(_input(p, fmt) for p in walked)
        elif path.is_file():
            found.append(_input(path, fmt))
        elif path.exists():
            raise UsageError(f"{given}: not a regular file or directory")
        else:
            raise UsageError(f"{given}: no such file or directory")
    for item in found:
        if item.path is not None and not os.access(item.path, os.R_OK):
            raise UsageError(f"{item.label}: permission denied")
    return found


def _input(path: Path, fmt: str) -> Input:
    kind = fmt if fmt != "auto" else ("json" if path.suffix.lower() in JSON_SUFFIXES else "jsonl")
    return Input(str(path), kind, path, path.stat().st_size)


# ---------------------------------------------------------------------------------------------
# Reading bodies out of one stream


def read_jsonl(stream: BinaryIO, label: str, *, limit: int) -> Iterator[Record]:
    """One body per line; blank lines are skipped. A line longer than `limit` is skipped without
    being held in memory, and reported."""
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        source = f"{label}:{number}"
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # drain the rest of the oversized line
                line = stream.readline(_READ_SIZE)
            yield Record(source, None, f"line is longer than the {limit // 2**20} MB body limit")
            continue
        body = line.rstrip(b"\r\n")
        if body.strip():
            yield Record(source, body)


_SPACE = re.compile(r"[ \t\r\n]*")


class _TextBuffer:
    """A file decoded incrementally into a sliding text window. Bytes that are not UTF-8 become
    surrogate escapes, so `raw()` gives back the exact bytes of any slice and `parse` can refuse
    them with its own message."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.text = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # line number at self.pos

    def fill(self, at_least: int = _READ_SIZE) -> bool:
        """Read more; False at end of file."""
        if self.eof:
            return False
        chunk = self.stream.read(max(at_least, _READ_SIZE))
        if not chunk:
            self.eof = True
            self.text += self.decoder.decode(b"", final=True)
            return False
        self.text += self.decoder.decode(chunk)
        return True

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to
        if self.pos > _READ_SIZE:  # drop what has been consumed, keeping memory bounded
            self.text = self.text[self.pos :]
            self.pos = 0

    def skip_space(self) -> str:
        """Skip whitespace; the next character, or "" at end of file."""
        while True:
            end = _SPACE.match(self.text, self.pos).end()
            self.advance(end)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""

    def raw(self, start: int, end: int) -> bytes:
        return self.text[start:end].encode("utf-8", "surrogateescape")


class BrokenFile(Exception):
    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line = line
        self.reason = reason


_DECODER = json.JSONDecoder()


def _value_end(buf: _TextBuffer, limit: int) -> int:
    """The end of the JSON value starting at buf.pos, reading more as needed. A value that is not
    valid JSON but is well bracketed ends where its brackets close, so it can be refused on its own
    and the next element still read."""
    while True:
        try:
            end = _DECODER.raw_decode(buf.text, buf.pos)[1]
            if end < len(buf.text) or buf.eof:  # a number at the window's edge may go on
                return end
        except ValueError:
            pass
        pending = len(buf.text) - buf.pos
        if pending > limit + _READ_SIZE or not buf.fill(pending):
            break
    end = _bracket_end(buf.text, buf.pos)
    if end is None:
        raise BrokenFile(buf.line, "a JSON value starting here never ends")
    return end


_STRUCTURE = re.compile(r'[\[\]{}"]')
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[\s,\]}]")


def _bracket_end(text: str, start: int) -> int | None:
    """Where the bracketed value (or scalar) at start ends, ignoring brackets inside strings."""
    if text[start] not in "[{\"":
        match = _SCALAR_END.search(text, start)
        return match.start() if match else len(text)
    depth, i = 0, start
    while True:
        match = _STRUCTURE.search(text, i)
        if match is None:
            return None
        ch, i = match.group(), match.end()
        if ch == '"':
            while True:
                inner = _IN_STRING.search(text, i)
                if inner is None:
                    return None
                i = inner.end() + (1 if inner.group() == "\\" else 0)
                if inner.group() == '"':
                    break
        elif ch in "[{":
            depth += 1
        else:
            depth -= 1
        if depth <= 0:
            return i


def read_json(stream: BinaryIO, label: str, *, limit: int) -> Iterator[Record]:
    """A JSON file: one body, an array of bodies, or several top-level values one after another.
    Arrays are read element by element, never whole. A body that stands alone in the file is named
    by the file; array elements by file and the line they start on."""
    buf = _TextBuffer(stream)
    first = True
    try:
        while ch := buf.skip_space():
            if ch == "[":
                buf.advance(buf.pos + 1)
                yield from _array_elements(buf, label, limit)
            else:
                source = label if first and buf.line == 1 else f"{label}:{buf.line}"
                start, end = buf.pos, _value_end(buf, limit)
                yield _record(source, buf.raw(start, end), limit)
                buf.advance(end)
            first = False
    except BrokenFile as broken:
        yield Record(f"{label}:{broken.line}", None, f"{broken.reason}; the rest of the file was skipped")


def _array_elements(buf: _TextBuffer, label: str, limit: int) -> Iterator[Record]:
    if buf.skip_space() == "]":
        buf.advance(buf.pos + 1)
        return
    while True:
        if not buf.skip_space():
            raise BrokenFile(buf.line, "the array is not closed")
        source = f"{label}:{buf.line}"
        start, end = buf.pos, _value_end(buf, limit)
        yield _record(source, buf.raw(start, end), limit)
        buf.advance(end)
        ch = buf.skip_space()
        buf.advance(buf.pos + 1)
        if ch == "]":
            return
        if ch != ",":
            raise BrokenFile(buf.line, f"expected ',' or ']' between array elements, not {ch!r}")


def _record(source: str, raw: bytes, limit: int) -> Record:
    if len(raw) > limit:
        return Record(source, None, f"body is larger than the {limit // 2**20} MB body limit")
    return Record(source, raw)


def records(item: Input, stream: BinaryIO) -> Iterator[Record]:
    limit = settings.MAX_BODY_BYTES
    kind = item.kind
    if kind == "auto":  # standard input: an array if it starts with "[", else JSONL
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(stream)
        kind = "json" if stream.peek(256).lstrip()[:1] == b"[" else "jsonl"
    reader = read_json if kind == "json" else read_jsonl
    return reader(stream, item.label, limit=limit)


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
    summary = ImportSummary()
    done = 0
    with _larger_sqlite_cache():
        for item in items:
            summary.files += 1
            if item.path is None:
                stream = stdin or sys.stdin.buffer
                for batch in _batches(records(item, stream), batch_size):
                    _store_batch(batch, summary, on_problem, received_at)
                continue
            with open(item.path, "rb") as stream:
                for batch in _batches(records(item, stream), batch_size):
                    _store_batch(batch, summary, on_problem, received_at)
                    on_progress(done + stream.tell())
            done += item.size or 0
            on_progress(done)
    return summary


@contextlib.contextmanager
def _larger_sqlite_cache() -> Iterator[None]:
    """SQLITE_CACHE_MIB for this connection while importing, then back to what it was."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        (before,) = cursor.fetchone()
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_MIB * 1024}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(before)}")


def _batches(items: Iterator[Record], size: int) -> Iterator[list[Record]]:
    """Records in batches of `size`, or fewer when their bodies reach BATCH_BYTES."""
    batch: list[Record] = []
    held = 0
    for item in items:
        batch.append(item)
        held += len(item.raw or b"")
        if len(batch) >= size or held >= BATCH_BYTES:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def _store_batch(
    batch: list[Record],
    summary: ImportSummary,
    on_problem: Callable[[str], None],
    received_at: datetime | None,
) -> None:
    at = received_at or timezone.now()
    accepted: list[Incoming] = []
    refused: list[tuple[Record, Refused]] = []
    for record in batch:
        if record.raw is None:
            refused.append((record, Refused(413, record.problem)))
            continue
        try:
            accepted.append(Incoming(parse(record.raw), record.raw, at, source=record.source))
        except Refused as refusal:
            refused.append((record, refusal))
    if accepted:
        # One transaction (and one write of each counter row) for the whole batch.
        for outcome in store_committed(accepted):
            summary.outcomes[outcome.kind] += 1
    if refused:
        with transaction.atomic():
            for record, refusal in refused:
                if record.raw is not None:
                    _quarantine_in_batch(record, refusal, at)
            bound_quarantine()
    for record, refusal in refused:
        summary.outcomes["rejected"] += 1
        message = f"{record.source}: {refusal.reason}"
        summary.problems.append(message)
        on_problem(message)


def _quarantine_in_batch(record: Record, refusal: Refused, at: datetime) -> None:
    """Like ingest.quarantine, but bounding the quarantine once per batch rather than per body, and
    keeping a body only once: importing the same bad file again must not fill the quarantine."""
    sha = hashlib.sha256(record.raw).hexdigest()
    waiting = RejectedDelivery.objects.filter(sha256=sha, reprocessed_at__isnull=True)
    if waiting.exists():
        return
    RejectedDelivery.objects.create(
        received_at=at,
        raw=record.raw,
        sha256=sha,
        size=len(record.raw),
        source=record.source,
        http_status=refusal.http_status,
        reason=refusal.reason,
        field=refusal.field,
    )

