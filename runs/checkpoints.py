"""SQLite WAL checkpoints on a thread of their own, for the sink's writer.

In WAL mode, the commit that takes the WAL past 1,000 pages also copies them back into the
database file and syncs it before it returns: for the sink, a writer's commit, with every waiting
delivery queued behind it. So the writer's connection never checkpoints (`leave_to_thread`), and
after each of its commits (`after_commit`) a thread runs a PASSIVE checkpoint, at most every EVERY
seconds: it neither waits for nor blocks writers or readers. SQLite copies with the interpreter
lock released, so on a second core the copying runs beside the writer. Every other connection
(the pages, the API, import_runs) checkpoints as SQLite does by default; the connection pool turns
that back on for whoever takes a connection next (sinkdash.db.sqlite3). Measured side by side
under wrk: about a tenth more deliveries per second.

import_runs was measured with the thread too, and kept SQLite's own checkpoints: once the WAL
started over as it should (RESTART_FRAMES), a 1,000,000-line import took the same time either way
(101.6 against 101.3 s).
"""

import contextlib
import logging
import os
import sqlite3
import threading
import time
import urllib.parse

log = logging.getLogger(__name__)

# Every 0.3 s rather than 0.05: a checkpoint copies each page once however many commits rewrote it
# (the indexes' last pages are rewritten by nearly every commit), so a longer interval copies fewer
# pages per delivery. Side by side under wrk, six rounds each: 415 against 429 µs of server CPU per
# delivery, 2,402 against 2,326 req/s. (Before RESTART_FRAMES, when the WAL never started over,
# the difference was 561 against 607 µs; 1.0 s was no better than 0.3.)
EVERY = 0.3

# The WAL starts over from its beginning only when a write transaction begins with every frame in
# it copied. Under steady load the thread always ends a few commits behind the writer, so the WAL
# never started over: 667 MB after 10 s of wrk. So once the thread finds the WAL past this many
# frames (16 MB), the writer's next after_commit copies what the thread has not yet, on its own
# connection: the few frames committed since the thread's pass, with nothing being written
# meanwhile. Its next transaction then starts the WAL over.
RESTART_FRAMES = 4096


def leave_to_thread(connection) -> None:
    """This Django connection's commits no longer checkpoint; call after_commit after them."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.execute("PRAGMA wal_autocheckpoint = 0")


def after_commit(connection) -> None:
    """Wake the thread (starting it the first time) to checkpoint this connection's database, and
    catch up with it first when the WAL has grown long (RESTART_FRAMES)."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    if _thread.catch_up.is_set() and connection.connection is not None:
        _thread.catch_up.clear()
        try:
            connection.connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:  # the commit before stands: its deliveries still get their answers
            log.warning("WAL checkpoint after a commit failed; the thread goes on", exc_info=True)
    _thread.after_commit(connection.settings_dict["NAME"])


class Checkpoints:
    """The checkpointing thread, started by the first commit and woken by the others."""

    def __init__(self) -> None:
        self.due = threading.Event()
        self.catch_up = threading.Event()  # the WAL is long: the writer copies the rest itself
        self.database = ""
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def after_commit(self, database: str) -> None:
        self.database = str(database)
        self.due.set()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="sinkdash-checkpoint", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            self.due.wait()
            self.due.clear()
            try:
                self.run_once()
            except sqlite3.Error:
                if os.path.exists(self.database):  # gone: nothing left to checkpoint
                    log.warning("WAL checkpoint failed; trying again after the next commit", exc_info=True)
            time.sleep(EVERY)

    def run_once(self) -> tuple[int, int, int]:
        """One pass: a checkpoint, and the writer asked to catch up if the WAL is long."""
        busy, frames, copied = self.checkpoint()
        if frames >= RESTART_FRAMES:
            self.catch_up.set()
        return busy, frames, copied

    def checkpoint(self) -> tuple[int, int, int]:
        """(busy, frames in the WAL, frames copied). A connection for each: none stays open on a
        database that tests drop. Read-write, not create: a database removed since its last
        commit is not made again as an empty file."""
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.database))}?mode=rw"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


_thread = Checkpoints()
