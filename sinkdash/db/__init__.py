"""Django's SQLite and PostgreSQL backends, each with closed connections kept for the next request.

Under ASGI, Django runs each request's sync code in a thread of its own, and a database connection
belongs to the thread that opened it, so a connection kept open for reuse (CONN_MAX_AGE) is never
used again: every page would open a new one. That costs about 6 ms on PostgreSQL (a TCP
handshake, authentication and a new server process), and on SQLite the PRAGMAs, a fresh read of
the schema and an empty page cache, which costs most on pages that read rows spread across a
large file. Django's advice under ASGI is to close connections after each request and use the
backend's pool. SQLite has no pool, and psycopg_pool retries a lost server on a back-off of many
seconds, during which each request would wait for a connection instead of answering 503 at once.
So both backends close into `Idle`, and the next connect() in any thread takes a connection from
there: after a check on PostgreSQL, and opens a new one when none is idle.
"""

import threading


class Idle:
    """Connections put back after use, at most `limit` of them; the others are really closed."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.connections: list = []

    def take(self):
        with self.lock:
            return self.connections.pop() if self.connections else None

    def give(self, conn) -> bool:
        with self.lock:
            if len(self.connections) >= self.limit:
                return False
            self.connections.append(conn)
            return True

    def close_all(self) -> None:
        with self.lock:
            gone, self.connections = self.connections, []
        for conn in gone:
            try:
                conn.close()
            except Exception:  # already broken: nothing left to release
                pass
