"""Plain SQL for the storing hot path, where the ORM's cost per statement outweighs the statement:
simple SELECTs, INSERT ... RETURNING and UPDATEs of many rows that run the same on SQLite and
PostgreSQL. The ORM still builds the rows they point at and owns the schema.

Statements go to the driver's own cursor, not Django's: Django's cursor wrapper (its checks, its
execute wrappers and, on SQLite, a regular expression that rewrites every statement's
placeholders) cost more than many of these statements themselves. They still run on Django's
connection, inside its transactions, and their errors still arrive as Django's DatabaseError.
SQL is written with %s placeholders; SQLite's are rewritten to ? once per statement text
(PostgreSQL's arrays use psycopg's %b, binary, and never reach SQLite).
"""

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections

from sinkdash.db.postgresql import arrays


@functools.cache
def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def marks(values) -> str:
    return ", ".join(["%s"] * len(values))


_moments: dict[datetime, object] = {}


def moment(value: datetime | None):
    """A datetime as the database takes it. Batches repeat the same few _moments (the arrival
    time) thousands of times, so adapted values are remembered for a while."""
    if value is None:
        return None
    adapted = _moments.get(value)
    if adapted is None:
        if len(_moments) > 10_000:
            _moments.clear()
        if value.tzinfo is UTC and _utc_text():
            # What Django's SQLite backend writes (str() of the naive UTC value), in a quarter of
            # the time its adapt_datetimefield_value takes (0.6 against 2.8 µs): an import writes
            # each run's own start and end (payload._moment gives them in UTC).
            adapted = value.replace(tzinfo=None).isoformat(" ")
        else:
            adapted = connection.ops.adapt_datetimefield_value(value)
        _moments[value] = adapted
    return adapted


@functools.cache
def _utc_text() -> bool:
    """Whether the database takes datetimes as text in UTC: SQLite, with time zones on and the
    connection in UTC (settings.DATABASES gives it no TIME_ZONE)."""
    return connection.vendor == "sqlite" and settings.USE_TZ and connection.timezone_name == "UTC"


_native: dict[str, str] = {}


def _native_sql(sql: str) -> str:
    text = _native.get(sql)
    if text is None:
        if len(_native) > 2_000:  # statement texts vary with batch sizes; keep the cache bounded
            _native.clear()
        text = _native[sql] = sql.replace("%s", "?") if connection.vendor == "sqlite" else sql
    return text


def _wrapper():
    """Django's connection (the object itself: each attribute read through the `connection` proxy
    looks it up again), connected."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.connection is None:
        db.ensure_connection()
    return db


def _execute(db, sql: str, params: list):
    if db.vendor == "postgresql":
        # Prepared, on each connection the first time it runs: these texts repeat every batch, and
        # parsing and planning them again took PostgreSQL's backend from 0.20 to 0.33 ms of CPU per
        # delivery. Side by side under wrk, two workers: 1,519 against 1,185 req/s, every one of
        # eight rounds faster.
        # (sinkdash.db.postgresql gives connections the threshold psycopg needs to prepare at all.)
        return db.connection.execute(sql, params, prepare=True)
    return db.connection.execute(_native_sql(sql), params)


def fetch_all(sql: str, params: list) -> list[tuple]:
    db = _wrapper()
    with db.wrap_database_errors:  # the driver's errors raised as Django's
        return _execute(db, sql, params).fetchall()


def fetch_later(sql: str, params: list) -> Callable[[], list[tuple]]:
    """Send a query now and read its rows when the returned function is called. Inside
    `pipelined()` on PostgreSQL, what is sent before the next read travels in one round trip."""
    db = _wrapper()
    with db.wrap_database_errors:
        cursor = _execute(db, sql, params)

    def rows() -> list[tuple]:
        with db.wrap_database_errors:
            return cursor.fetchall()

    return rows


def execute(sql: str, params: list) -> None:
    db = _wrapper()
    with db.wrap_database_errors:
        _execute(db, sql, params)


@contextlib.contextmanager
def pipelined() -> Iterator[None]:
    """On PostgreSQL, psycopg's pipeline mode: a statement whose result is not read goes out with
    the next one that is, instead of waiting for its own round trip. Storing a batch takes a dozen
    statements, and on a busy two-core machine each round trip cost 0.1-0.3 ms while storing held
    the lock every process queues on. Errors arrive where results are read (as Django's errors,
    as everywhere here). Nothing changes on SQLite."""
    db = _wrapper()
    if db.vendor != "postgresql":
        yield
        return
    with db.wrap_database_errors, db.connection.pipeline():
        yield


def commit_pipelined() -> None:
    """Inside `pipelined()` on PostgreSQL: commit the transaction with the statements sent before,
    in their round trip, instead of one of its own when the atomic block ends (psycopg sends no
    COMMIT when no transaction is open, so Django's commit then costs nothing). If an earlier
    statement failed, PostgreSQL skips the COMMIT and the error arrives where results are read;
    the block then rolls back as usual. Nothing may run in the block after it. Nothing happens on
    SQLite, where the block's end commits."""
    db = _wrapper()
    if db.vendor != "postgresql":
        return
    with db.wrap_database_errors:
        db.connection.execute("COMMIT", prepare=False)  # a utility statement: it cannot be prepared


# Plans on PostgreSQL. A connection keeps the plans of its prepared statements, and those PostgreSQL
# makes for each foreign-key check, until a table they read is analysed again; autovacuum looks
# for tables to analyse once a minute. A plan made while runs was nearly empty scans the table
# whole: a new database taking a burst of deliveries served about 800 req/s instead of 2,000
# until autovacuum came round (17 ms a look-up at 100,000 runs against 0.05 through the index).
# Planning every statement each time instead served 14% fewer req/s side by side.
_planned_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> largest run id


def plan_again_as_runs_double(largest_id: int) -> None:
    """Have this connection plan its statements again when runs' largest id has doubled since it
    last did: about twenty times in a database's life, each costing the next batch its planning.
    Inside `pipelined()` it travels with the next statement that is read."""
    db = _wrapper()
    if db.vendor != "postgresql":
        return
    planned = _planned_at.setdefault(db.connection, largest_id)
    if largest_id >= 2 * planned:
        with db.wrap_database_errors:
            db.connection.execute("DISCARD PLANS", prepare=False)
        _planned_at[db.connection] = largest_id


def one_of(column: str, values) -> tuple[str, list]:
    """`column IN (...)` and its parameters; on PostgreSQL `column = ANY(%s)`, one array parameter
    (see "Rows on PostgreSQL" below)."""
    values = list(values)
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [arrays.encode(values)]
    return f"{column} IN ({marks(values)})", values


def _chunks(rows: list[tuple]) -> list[list[tuple]]:
    """Rows split so no statement passes SQLite's 32766 parameters."""
    per_statement = max(1, min(500, 30000 // len(rows[0]))) if rows else 1
    return [rows[start : start + per_statement] for start in range(0, len(rows), per_statement)]


def _values(chunk: list[tuple]) -> str:
    one = f"({marks(chunk[0])})"
    return ", ".join([one] * len(chunk))


# Rows on PostgreSQL. psycopg parses a statement's text for its placeholders and remembers the
# result only for statements of up to 50 parameters, so a multi-row VALUES list was parsed again
# for every batch (at 500 rows of 24 columns, 60% of an import's time). There, rows go as one array
# per column instead, and lists as one array (`one_of`): the text stays the same whatever the
# number of rows. The arrays go in binary (%b): as text, psycopg quotes and escapes every element
# in Python, which took half of what was left. sinkdash encodes them itself
# (sinkdash.db.postgresql.arrays): psycopg's own dumping was then a quarter of the sink writer's
# CPU. SQLite takes VALUES lists, chunked under its limit.


@functools.cache
def _unnest(model, columns: tuple[str, ...]) -> str:
    """`unnest(%b::type[], ...)`, as Django's bulk_create does on PostgreSQL (which also relies on
    RETURNING giving the ids in the order of the arrays)."""
    fields = {field.column: field for field in model._meta.concrete_fields}
    casts = (f"%b::{fields[column].db_type(connection).split('(')[0]}[]" for column in columns)
    return f"unnest({', '.join(casts)})"


@functools.cache
def _insert_arrays(model, columns: tuple[str, ...]) -> str:
    """PostgreSQL's INSERT of rows sent as one array per column (`_by_column`)."""
    return f"INSERT INTO {table(model)} ({', '.join(columns)}) SELECT * FROM {_unnest(model, columns)}"


def _by_column(rows: list[tuple]) -> list:
    return [arrays.encode(list(column)) for column in zip(*rows, strict=True)]


def insert(model, columns: tuple[str, ...], rows: list[tuple]) -> list[int]:
    """Insert rows and return their ids in order (RETURNING, as Django's bulk_create relies on)."""
    return insert_later(model, columns, rows)()


def insert_later(model, columns: tuple[str, ...], rows: list[tuple]) -> Callable[[], list[int]]:
    """`insert`, with the ids read when the returned function is called: inside `pipelined()` on
    PostgreSQL what is sent before that travels in the same round trip. SQLite inserts at once."""
    if not rows:
        return lambda: []
    if connection.vendor == "postgresql":
        returned = fetch_later(f"{_insert_arrays(model, columns)} RETURNING id", _by_column(rows))
        return lambda: [pk for (pk,) in returned()]
    into = f"INSERT INTO {table(model)} ({', '.join(columns)})"
    ids: list[int] = []
    for chunk in _chunks(rows):
        sql = f"{into} VALUES {_values(chunk)} RETURNING id"
        ids.extend(pk for (pk,) in fetch_all(sql, _flat(chunk)))
    return lambda: ids


def reserve_ids_later(model, count: int) -> Callable[[], list[int]] | None:
    """On PostgreSQL, take `count` ids from model's id sequence, in ascending order, read when the
    returned function is called (so inside `pipelined()` the request travels with the statements
    around it). Rows given these ids go in with `insert_with_ids`, which returns nothing and so
    needs no round trip of its own. Ids reserved and not used are skipped, as a rolled-back insert
    skips them. None on SQLite, where an insert's RETURNING costs no round trip."""
    if connection.vendor != "postgresql":
        return None
    rows = fetch_later(
        "SELECT nextval(seq::regclass) FROM pg_get_serial_sequence(%s, 'id') AS seq, generate_series(1, %s)",
        [model._meta.db_table, count],
    )
    return lambda: [pk for (pk,) in rows()]


def insert_with_ids(model, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """On PostgreSQL, insert (id, *columns) rows whose ids came from `reserve_ids_later`."""
    if rows:
        execute(_insert_arrays(model, ("id", *columns)), _by_column(rows))


Statement = tuple[str, list]  # SQL with %s (and, on PostgreSQL, %b) placeholders, and its parameters


def add_to_counts(model, key_columns: tuple[str, ...], rows: list[tuple]) -> list[Statement]:
    """(*key, n) rows: add n to the count of the row with that key, creating it if there is none.
    One upsert on the unique constraint over key_columns, the same on SQLite and PostgreSQL."""
    if not rows:
        return []
    name, keys = table(model), ", ".join(key_columns)
    into = f"INSERT INTO {name} ({keys}, count)"
    upsert = f" ON CONFLICT ({keys}) DO UPDATE SET count = {name}.count + excluded.count"
    if connection.vendor == "postgresql":
        return [(_insert_arrays(model, (*key_columns, "count")) + upsert, _by_column(rows))]
    return [(f"{into} VALUES {_values(chunk)}{upsert}", _flat(chunk)) for chunk in _chunks(rows)]


def update_rows(model, keys: tuple[str, ...], columns: tuple[str, ...], sets: str, rows: list[tuple]) -> list[Statement]:
    """(*key, *values) rows: update the row of model with that key. `sets` is the SET list; it
    reads a row's new values as d.<column> and what is stored as t.<column>. One statement for all
    rows: on PostgreSQL the rows go as arrays, on SQLite as a VALUES list."""
    if not rows:
        return []
    names = ", ".join((*keys, *columns))
    match = " AND ".join(f"t.{key} = d.{key}" for key in keys)
    if connection.vendor == "postgresql":
        rows_as = f"{_unnest(model, (*keys, *columns))} AS d({names})"
        return [(f"UPDATE {table(model)} AS t SET {sets} FROM {rows_as} WHERE {match}", _by_column(rows))]
    return [
        (f"WITH d({names}) AS (VALUES {_values(chunk)}) UPDATE {table(model)} AS t SET {sets} FROM d WHERE {match}",
         _flat(chunk))
        for chunk in _chunks(rows)
    ]  # fmt: skip


def execute_together(statements: list[Statement]) -> None:
    """Run statements that change rows and return none. On PostgreSQL they go as one statement,
    each a WITH query of it. A batch's counters took about nine, and in pipeline mode psycopg
    sends each with a wait on the socket of its own, releasing and retaking the interpreter lock,
    while the lock every storing process queues on is held. Side by side under wrk, two workers:
    2,080 against 2,018 req/s, 413 against 433 µs of server CPU a request.
    The statements must not touch the same row twice (PostgreSQL would apply one of the changes)
    and must not depend on each other: they all see the rows as they were before."""
    if len(statements) > 1 and connection.vendor == "postgresql":
        text = "WITH " + ", ".join(f"s{n} AS ({sql})" for n, (sql, _) in enumerate(statements)) + " SELECT 1"
        statements = [(text, [param for _, params in statements for param in params])]
    for sql, params in statements:
        execute(sql, params)


def _flat(chunk: list[tuple]) -> list:
    return [value for row in chunk for value in row]


def db_value(value):
    if isinstance(value, datetime):
        return moment(value)
    if isinstance(value, date):
        return connection.ops.adapt_datefield_value(value)
    return value
