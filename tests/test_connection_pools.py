"""Both backends hand a closed connection to the next request, in whatever thread, but only a clean
one: never with a transaction open; on SQLite never one closed inside an atomic block or to a file
that has since been replaced, on PostgreSQL never one the server has dropped."""

import threading

import pytest
from django.db import connections
from django.utils.module_loading import import_string


@pytest.fixture
def wrapper_for(django_db_setup, django_db_blocker):
    """New wrappers on the test database (or, on SQLite, a file of the test's own), as each
    request's thread gets one."""
    opened = []
    # Wrappers of the test's own, outside any test transaction: pytest-django's guard need not apply.
    django_db_blocker.unblock()

    def make(**changes):
        settings = {**connections.settings["default"], **changes}
        wrapper = import_string(settings["ENGINE"] + ".base.DatabaseWrapper")(settings, alias=f"pool-{len(opened)}")
        opened.append(wrapper)
        return wrapper

    yield make
    for wrapper in opened:
        if wrapper.connection is not None:
            wrapper.close()
    django_db_blocker.restore()


@pytest.fixture
def sqlite_file(tmp_path):
    if connections["default"].vendor != "sqlite":
        pytest.skip("SQLite's files")
    return str(tmp_path / "pool.sqlite3")


def in_another_thread(fn):
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def raw(wrapper):
    wrapper.ensure_connection()
    return wrapper.connection


def scalar(wrapper, sql: str):
    with wrapper.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def on_own_file(wrapper_for, request):
    """SQLite: a file of the test's own. PostgreSQL: the test database."""
    if connections["default"].vendor == "sqlite":
        return lambda: wrapper_for(NAME=request.getfixturevalue("sqlite_file"))
    return wrapper_for


@pytest.fixture
def new_wrapper(wrapper_for, request):
    return on_own_file(wrapper_for, request)


def test_a_closed_connection_is_reused_by_the_next_request_in_another_thread(new_wrapper):
    first = new_wrapper()
    conn = raw(first)
    first.close()
    assert first.connection is None

    def next_request():
        second = new_wrapper()
        reused = raw(second)
        scalar(second, "SELECT 1")
        second.close()
        return reused

    assert in_another_thread(next_request) is conn


def test_a_transaction_left_open_is_rolled_back_before_reuse(new_wrapper):
    first = new_wrapper()
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE pool_left_open (x INTEGER)")
    try:
        first.set_autocommit(False)  # a transaction, as inside atomic(), left open at close
        with first.cursor() as cursor:
            cursor.execute("INSERT INTO pool_left_open VALUES (1)")
        first.close()

        second = new_wrapper()
        assert scalar(second, "SELECT count(*) FROM pool_left_open") == 0
    finally:
        with new_wrapper().cursor() as cursor:
            cursor.execute("DROP TABLE pool_left_open")


def test_a_connection_closed_inside_an_atomic_block_is_not_reused_on_sqlite(wrapper_for, sqlite_file):
    # (Django's PostgreSQL backend forgets such a connection itself; it comes back rolled back.)
    first = wrapper_for(NAME=sqlite_file)
    conn = raw(first)
    first.in_atomic_block = True  # as when close() is called from inside transaction.atomic()
    first.close()
    first.in_atomic_block, first.connection = False, None

    assert raw(wrapper_for(NAME=sqlite_file)) is not conn


def test_idle_connections_to_a_replaced_file_are_not_reused(wrapper_for, sqlite_file):
    from pathlib import Path

    first = wrapper_for(NAME=sqlite_file)
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE old (x INTEGER)")
    conn = raw(first)
    first.close()
    Path(sqlite_file).unlink()
    fresh = wrapper_for(NAME=sqlite_file)
    assert scalar(fresh, "SELECT count(*) FROM sqlite_master WHERE name = 'old'") == 0  # a new, empty file
    assert fresh.connection is not conn


def test_a_connection_the_server_dropped_is_not_reused(wrapper_for):
    if connections["default"].vendor != "postgresql":
        pytest.skip("PostgreSQL's server")
    first, killer = wrapper_for(), wrapper_for()
    pid = scalar(first, "SELECT pg_backend_pid()")
    scalar(killer, "SELECT 1")
    first.close()
    assert scalar(killer, f"SELECT pg_terminate_backend({int(pid)})") is True  # as a server restart does

    second = wrapper_for()
    assert scalar(second, "SELECT pg_backend_pid()") != pid


def test_a_reused_connection_checks_foreign_keys_again_on_sqlite(wrapper_for, sqlite_file):
    first = wrapper_for(NAME=sqlite_file)
    first.disable_constraint_checking()  # as loaddata does, and then fails before turning them on
    first.close()
    assert scalar(wrapper_for(NAME=sqlite_file), "PRAGMA foreign_keys") == 1
