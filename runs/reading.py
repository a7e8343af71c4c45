"""Reading sink bodies out of files: the S3 sink's one-body-per-file folders, JSON arrays, and the
JSONL that `intuned dev test-job download` writes, parsed into batches for runs.importer to store.

Reading is streamed: a JSONL file is read line by line and a JSON array element by element, so
memory stays bounded by the largest single body whatever the file size. Nothing here touches the
database or Django's settings, so that a large import can read and parse in a process of its own
(runs.readahead) while the importer's process stores.
"""

import codecs
import contextlib
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from runs.payload import ParsedRun, Refused, parse

JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Record:
    """One body as read from a file. `source` names it: "dir/file.jsonl:17" (file and line)."""

    source: str
    raw: bytes | None  # None when the body was too large or the file broke off (see `problem`)
    problem: str = ""


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


def records(item: Input, stream: BinaryIO, *, limit: int) -> Iterator[Record]:
    kind = item.kind
    if kind == "auto":  # standard input: an array if it starts with "[", else JSONL
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(stream)
        kind = "json" if stream.peek(256).lstrip()[:1] == b"[" else "jsonl"
    reader = read_json if kind == "json" else read_jsonl
    return reader(stream, item.label, limit=limit)


# ---------------------------------------------------------------------------------------------
# Parsing, in batches


class Read(NamedTuple):
    """A body read and parsed: a run to store, or why it is refused."""

    source: str
    raw: bytes | None  # None when the body was too large or the file broke off
    sha256: str  # of raw; "" without it
    parsed: ParsedRun | Refused


def _read(record: Record) -> Read:
    if record.raw is None:
        return Read(record.source, None, "", Refused(413, record.problem))
    sha256 = hashlib.sha256(record.raw).hexdigest()
    try:
        return Read(record.source, record.raw, sha256, parse(record.raw))
    except Refused as refusal:
        return Read(record.source, record.raw, sha256, refusal.with_traceback(None))


@dataclass(frozen=True, slots=True)
class Batching:
    size: int  # bodies a batch
    max_bytes: int  # or fewer bodies, once theirs reach this many bytes
    limit: int  # the largest body taken (MAX_BODY_BYTES)


# What `reads` yields: a body read and parsed, or None where an input ends; and the bytes of input
# read so far.
Progress = tuple[Read | None, int]


def reads(items: list[Input], limit: int, stdin: BinaryIO | None = None) -> Iterator[Progress]:
    done = 0
    for item in items:
        with open(item.path, "rb") if item.path else contextlib.nullcontext(stdin or sys.stdin.buffer) as stream:
            for record in records(item, stream, limit=limit):
                yield _read(record), done + (stream.tell() if item.path else 0)
        done += item.size or 0
        yield None, done


def batched(progress: Iterable[Progress], batching: Batching) -> Iterator[tuple[list[Read], int]]:
    """Reads in batches, each with the bytes of input read so far (for the progress bar). A batch
    never spans two inputs; each input's last batch may be empty."""
    batch: list[Read] = []
    held = 0
    for read, done in progress:
        if read is None:
            yield batch, done
            batch, held = [], 0
            continue
        batch.append(read)
        held += len(read.raw or b"")
        if len(batch) >= batching.size or held >= batching.max_bytes:
            yield batch, done
            batch, held = [], 0


def parsed_batches(
    items: list[Input], batching: Batching, stdin: BinaryIO | None = None
) -> Iterator[tuple[list[Read], int]]:
    """Every input's bodies, parsed, in batches (`batched`), in this process."""
    return batched(reads(items, batching.limit, stdin), batching)
