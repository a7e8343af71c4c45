"""The SQLite backend hands a closed connection to the next request, in whatever thread, but only
a clean one: never with a transaction open, never closed inside an atomic block, never to a file
that has since been replaced."""

import threading

import pytest
from django.db import connections

from sinkdash.sqlite.base import DatabaseWrapper


@pytest.fixture
def wrapper_for(tmp_path, django_db_blocker):
    if connections["default"].vendor != "sqlite":
        pytest.skip("the pool is SQLite's")
    opened = []
    # Databases of the test's own, beside the test database: pytest-django's guard need not apply.
    django_db_blocker.unblock()

    def make(name: str = "pool.sqlite3") -> DatabaseWrapper:
        settings = {**connections.settings["default"], "NAME": str(tmp_path / name)}
        wrapper = DatabaseWrapper(settings, alias=f"pool-{len(opened)}")
        opened.append(wrapper)
        return wrapper

    yield make
    for wrapper in opened:
        if wrapper.connection is not None:
            wrapper.close()
    django_db_blocker.restore()


def in_another_thread(fn):
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def raw(wrapper: DatabaseWrapper):
    wrapper.ensure_connection()
    return wrapper.connection


def test_a_closed_connection_is_reused_by_the_next_request_in_another_thread(wrapper_for):
    first = wrapper_for()
    conn = raw(first)
    first.close()
    assert first.connection is None

    def next_request():
        second = wrapper_for()
        reused = raw(second)
        second.close()
        return reused

    assert in_another_thread(next_request) is conn


def test_a_transaction_left_open_is_rolled_back_before_reuse(wrapper_for):
    first = wrapper_for()
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE t (x INTEGER)")
    first.connection.execute("BEGIN")
    first.connection.execute("INSERT INTO t VALUES (1)")
    first.close()

    second = wrapper_for()
    assert not raw(second).in_transaction
    with second.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone()[0] == 0


def test_a_connection_closed_inside_an_atomic_block_is_not_reused(wrapper_for):
    first = wrapper_for()
    conn = raw(first)
    first.in_atomic_block = True  # as when close() is called from inside transaction.atomic()
    first.close()
    first.in_atomic_block = False

    assert raw(wrapper_for()) is not conn


def test_idle_connections_to_a_replaced_file_are_not_reused(wrapper_for, tmp_path):
    first = wrapper_for()
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE old (x INTEGER)")
    conn = raw(first)
    first.close()
    (tmp_path / "pool.sqlite3").unlink()
    fresh = wrapper_for()
    with fresh.cursor() as cursor:  # a new, empty file of the same name
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'old'")
        assert cursor.fetchone()[0] == 0
    assert fresh.connection is not conn
