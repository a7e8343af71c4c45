"""Reading and parsing an import's inputs in a process of its own, ahead of the importer, which
stores meanwhile. Parsing is half of what an import's Python does, and a thread cannot overlap it
with the storing: each row SQLite hands back waits for the interpreter lock (BENCHMARKS.md,
session 14). The reading process is a plain interpreter rather than multiprocessing's spawn, which
would run the importer's main module again (manage.py is guarded; a script that calls
import_inputs need not be).
"""

import collections
import contextlib
import fcntl
import os
import pickle
import resource
import select
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runs.reading import Batching, Input, Progress, Read, batched, parsed_batches, reads

# Inputs of at least this many bytes in all are parsed in a second process while this one stores
# (`parsing`). Below it, starting that process (a new interpreter, a tenth of a second) costs more
# than the overlap saves.
PROCESS_FROM_BYTES = 16 * 2**20


class ReaderFailed(Exception):
    """The reading process ended without saying why (killed, or out of memory)."""


_READER = [sys.executable, "-c", "import runs.readahead; runs.readahead.serve()"]
_ROOT = str(Path(__file__).resolve().parent.parent)  # where the runs package can be imported from


@dataclass
class Parsing:
    batches: Iterator[tuple[list[Read], int]]
    reader_peak_kib: int = 0  # the reading process's peak memory, once it has finished; 0 without one


def peak_kib() -> int:
    """This process's peak resident memory since it started its program. Not getrusage's maximum:
    a process started with fork and exec counts in it what its parent held before the exec."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@contextlib.contextmanager
def parsing(items: list[Input], batching: Batching, stdin: BinaryIO | None = None) -> Iterator[Parsing]:
    """`parsed_batches`, read and parsed in a second process while this one stores, when the
    inputs are large. The reading process runs up to about a batch ahead, holding its reads
    pickled (`_Sender`), and they are batched here. Standard input is read here, where it is open."""
    if any(item.path is None for item in items) or sum(item.size or 0 for item in items) < PROCESS_FROM_BYTES:
        yield Parsing(parsed_batches(items, batching, stdin))
        return
    reader = subprocess.Popen(
        _READER,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))},
    )
    try:
        with reader.stdin:
            pickle.dump((items, batching.limit), reader.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        parsed = Parsing(iter(()))  # its batches need it: the last message gives the reader's peak
        parsed.batches = batched(_received(reader.stdout, parsed), batching)
        yield parsed
    finally:
        reader.stdout.close()  # a reader still writing stops at its next message (BrokenPipeError)
        try:
            reader.wait(timeout=5)
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()


# Reads go down the pipe this many at a time, or fewer once their bodies reach _CHUNK_BYTES (bodies
# reach 10 MB), and the reading process keeps up to _AHEAD_BYTES of them queued (pickled) for the
# pipe: about a batch of 5,000 bodies of ~1 KB, so it parses the next batch while the importer
# stores this one, holding bytes rather than objects.
_CHUNK = 250
_CHUNK_BYTES = 2**20
_AHEAD_BYTES = 12 * 2**20


def _received(stream: BinaryIO, parsed: Parsing) -> Iterator[Progress]:
    while True:
        try:
            kind, payload = pickle.load(stream)
        except (EOFError, pickle.UnpicklingError):  # nothing more, or a message cut short
            raise ReaderFailed("the process reading the inputs ended unexpectedly") from None
        if kind == "reads":
            yield from payload
        elif kind == "failed":
            raise payload
        else:
            parsed.reader_peak_kib = payload
            return


class _Sender:
    """Messages pickled into a queue and written as the pipe takes them (a pipe holds 1 MB at
    most); a send waits for the pipe only when more than _AHEAD_BYTES are queued."""

    def __init__(self, fd: int):
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError, AttributeError):  # Linux's 1 MB for anyone, not 64 KB
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 2**20)
        self.fd = fd
        self.queue: collections.deque[memoryview] = collections.deque()
        self.queued = 0

    def send(self, kind: str, payload) -> None:
        data = memoryview(pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL))
        self.queue.append(data)
        self.queued += len(data)
        self.write(until=_AHEAD_BYTES)

    def write(self, until: int = 0) -> None:
        """Write what the pipe takes; wait for it while more than `until` bytes are queued."""
        while self.queue:
            head = self.queue[0]
            try:
                written = os.write(self.fd, head)
            except BlockingIOError:
                if self.queued <= until:
                    return
                select.select([], [self.fd], [])
                continue
            self.queued -= written
            if written == len(head):
                self.queue.popleft()
            else:
                self.queue[0] = head[written:]


def _chunks(progress: Iterable[Progress], sender: "_Sender | None" = None) -> Iterator[list[Progress]]:
    """Reads in chunks of _CHUNK, or fewer once their bodies reach _CHUNK_BYTES; a chunk ends
    where an input does. Between reads, `sender` writes what the pipe has room for."""
    chunk: list[Progress] = []
    held = 0
    for item in progress:
        chunk.append(item)
        read = item[0]
        held += len(read.raw or b"") if read else 0
        if len(chunk) >= _CHUNK or held >= _CHUNK_BYTES or read is None:
            yield chunk
            chunk, held = [], 0
        elif sender and sender.queued:  # keep the pipe full: the importer may be waiting on it
            sender.write(until=_AHEAD_BYTES)
    if chunk:
        yield chunk


def serve() -> None:
    """The reading process: (inputs, body limit) from standard input, then its reads to standard
    output, and ("done", its peak memory) at the end; an error is sent to be raised in the importer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importer's to handle: it stops us
    items, limit = pickle.load(sys.stdin.buffer)
    sender = _Sender(sys.stdout.fileno())
    sys.stdout = sys.stderr  # nothing but reads goes down the pipe
    try:
        try:
            for chunk in _chunks(reads(items, limit), sender):
                sender.send("reads", chunk)
            sender.send("done", peak_kib())
        except BrokenPipeError:
            raise
        except Exception as error:
            error.add_note(traceback.format_exc())
            try:
                sender.send("failed", error)
            except Exception:  # an exception that does not pickle
                sender.send("failed", ReaderFailed(traceback.format_exc()))
        sender.write()
    except BrokenPipeError:
        return  # the importer stopped reading
