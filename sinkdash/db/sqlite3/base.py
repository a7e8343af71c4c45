"""Django's SQLite backend, closing into a pool of idle connections (sinkdash/db says why).

sqlite3 connections may move between threads (Django opens them with check_same_thread=False),
and only one wrapper holds a connection at a time. A connection goes back only in a clean state:
no transaction open (one left open is rolled back), not closed from inside an atomic block, and
still for the same file: when the database file is replaced (the test runner recreates its
database), the idle connections to the old one are closed rather than reused.
"""

import os
import threading

from django.db.backends.sqlite3 import base

from sinkdash.db import Idle

_lock = threading.Lock()
# Per database file name: the file's identity (device, inode) and its idle connections.
_idle: dict[str, tuple[tuple[int, int], Idle]] = {}


def _identity(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(name)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _idle_for(name: str) -> Idle | None:
    """The idle connections to the file that is at `name` now (None while there is no file)."""
    identity = _identity(name)
    if identity is None:
        return None
    with _lock:
        kept = _idle.get(name)
        if kept is not None and kept[0] == identity:
            return kept[1]
        _idle[name] = (identity, idle := Idle())
    if kept is not None:  # the file was replaced: its idle connections are to the old one
        kept[1].close_all()
    return idle


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        idle = None if self.is_in_memory_db() else _idle_for(str(conn_params["database"]))
        conn = idle.take() if idle is not None else None
        if conn is None:
            return super().get_new_connection(conn_params)
        # As a new connection starts, in case its last user changed them: the checks (loaddata and
        # migrations turn them off for a while), and automatic WAL checkpoints (the sink's writer
        # leaves them to a thread of its own, runs.checkpoints). SQLite's default is 1,000 pages.
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA wal_autocheckpoint = 1000")
        return conn

    def _close(self):
        conn = self.connection
        if conn is None or self.in_atomic_block or self.is_in_memory_db():
            return super()._close()
        try:
            if conn.in_transaction:
                conn.rollback()
        except base.Database.Error:
            return super()._close()
        idle = _idle_for(str(self.settings_dict["NAME"]))
        if idle is None or not idle.give(conn):
            return super()._close()
