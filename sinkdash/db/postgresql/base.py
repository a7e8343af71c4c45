"""Django's PostgreSQL backend, closing into a pool of idle connections (sinkdash/db says why).

Django's backend takes a pool through its `pool` property: it asks it for a connection
(`getconn`), hands it back on close (`putconn`) and closes it when the test database goes. This
`Pool` does those few things the simple way. A connection handed back is rolled back if a
transaction was left open and kept. One taken again is first checked with an empty query, so a
connection the server dropped (a restart) is thrown away, not used. When none is idle a new one
is opened there and then, so while the server is down a request fails at once, and the sink
answers 503, as it does without a pool.
"""

import threading

import psycopg
from django.db.backends.postgresql import base
from django.db.backends.base.base import NO_DB_ALIAS

from sinkdash.db import Idle
from sinkdash.db.postgresql import arrays

_lock = threading.Lock()
_pools: dict[tuple, "Pool"] = {}


class Pool:
    def __init__(self, connect_kwargs: dict, configure) -> None:
        self.connect_kwargs = connect_kwargs
        self.configure = configure  # the backend's time zone and role set-up, for new connections
        self.idle = Idle()

    def open(self) -> None:
        """Nothing to open: connections are made when asked for."""

    def getconn(self) -> psycopg.Connection:
        while (conn := self.idle.take()) is not None:
            if _usable(conn):
                return conn
            conn.close()
        conn = psycopg.connect(**self.connect_kwargs)
        conn._pool = self  # what Django's _close() hands it back through
        self.configure(conn)
        return conn

    def putconn(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.broken:
            return
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
        except psycopg.Error:
            conn.close()
            return
        if not self.idle.give(conn):
            conn.close()

    def close(self) -> None:
        self.idle.close_all()


def _usable(conn: psycopg.Connection) -> bool:
    if conn.closed or conn.broken:
        return False
    try:
        conn.execute("")  # one round trip, as psycopg_pool's check_connection does
    except psycopg.Error:
        return False
    return True


# psycopg prepares nothing, not even what is asked for with prepare=True, on a connection whose
# prepare_threshold is None, which is what Django sets (for transaction-mode poolers). runs.sql
# asks for its few statements to be prepared; the ORM's queries, with this threshold never
# reached, stay unprepared as Django leaves them. OPTIONS["prepare_threshold"] still wins.
NEVER_BY_COUNT = 2**31 - 1


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        if params.get("prepare_threshold") is None:
            params["prepare_threshold"] = NEVER_BY_COUNT
        # The adapters Django gives its connections to copy (psycopg's global ones without it).
        arrays.register(params.get("context") or psycopg.adapters)
        return params

    def _pool_key(self) -> tuple:
        s = self.settings_dict
        return (s["NAME"], s["USER"], s["HOST"], s["PORT"])

    @property
    def pool(self) -> Pool | None:
        # By the database it connects to, not the alias: the test runner renames the database.
        if self.alias == NO_DB_ALIAS:
            return None
        key = self._pool_key()
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                # In autocommit, as Django's own pool opens them; connect() sets it again.
                kwargs = {**self.get_connection_params(), "autocommit": True}
                pool = _pools[key] = Pool(kwargs, self._configure_connection)
        return pool

    def close_pool(self) -> None:
        with _lock:
            pool = _pools.pop(self._pool_key(), None)
        if pool is not None:
            pool.close()
