"""Django's SQLite backend, with its connections kept for the next request instead of closed.

Under ASGI, Django runs each request's sync code in a thread of its own, and database connections
belong to a thread, so every page would open a new SQLite connection: run the PRAGMAs, read the
schema again, and start with an empty page cache, which costs most on the pages that read rows
spread across a large file (a rare status at a million runs). Django's answer under ASGI is
"disable persistent connections and use the backend's pool" (docs, Databases), and SQLite has no
pool, so this is one: `close()` hands the sqlite3 connection back, and the next `connect()` in any
thread takes it up again. Only one wrapper holds a connection at a time (sqlite3 connections may
move between threads; Django already opens them with check_same_thread=False).

A connection goes back only when it is in a clean state: no transaction open (one left open is
rolled back), not closed from inside an atomic block, and for the same file: when the database
file is replaced (the test runner recreates its database), the idle connections to the old one are
closed rather than reused.
"""

import os
import threading

from django.db.backends.sqlite3 import base

# Idle connections kept per database file; more than this many closing at once are really closed.
MAX_IDLE = 8


class _Idle:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_name: dict[str, tuple[tuple[int, int], list]] = {}

    def take(self, name: str):
        identity = _identity(name)
        with self.lock:
            kept_for, idle = self.by_name.get(name, (None, []))
            if kept_for != identity:
                stale, self.by_name[name] = idle, (identity, [])
                idle = []
            else:
                stale = []
            conn = idle.pop() if idle and identity is not None else None
        for old in stale:
            old.close()
        return conn

    def give(self, name: str, conn) -> bool:
        identity = _identity(name)
        with self.lock:
            kept_for, idle = self.by_name.setdefault(name, (identity, []))
            if identity is None or kept_for != identity or len(idle) >= MAX_IDLE:
                return False
            idle.append(conn)
            return True


def _identity(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(name)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_idle = _Idle()


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        if not self.is_in_memory_db():
            conn = _idle.take(str(conn_params["database"]))
            if conn is not None:
                return conn
        return super().get_new_connection(conn_params)

    def _close(self):
        conn = self.connection
        if conn is None or self.in_atomic_block or self.is_in_memory_db():
            return super()._close()
        try:
            if conn.in_transaction:
                conn.rollback()
        except base.Database.Error:
            return super()._close()
        if not _idle.give(str(self.settings_dict["NAME"]), conn):
            return super()._close()
