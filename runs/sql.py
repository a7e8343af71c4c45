"""Plain SQL for the storing hot path, where the ORM's cost per statement outweighs the statement:
simple SELECTs, INSERT ... RETURNING and executemany UPDATEs that run the same on SQLite and
PostgreSQL. The ORM still builds the rows they point at and owns the schema.

Statements go to the driver's own cursor, not Django's: Django's cursor wrapper (its checks, its
execute wrappers and, on SQLite, a regular expression that rewrites every statement's
placeholders) cost more than many of these statements themselves. They still run on Django's
connection, inside its transactions, and their errors still arrive as Django's DatabaseError.
SQL is written with %s placeholders; SQLite's are rewritten to ? once per statement text.
"""

import functools
from datetime import date, datetime

from django.db import DEFAULT_DB_ALIAS, connection, connections


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
        adapted = _moments[value] = connection.ops.adapt_datetimefield_value(value)
    return adapted


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


def fetch_all(sql: str, params: list) -> list[tuple]:
    db = _wrapper()
    with db.wrap_database_errors:  # the driver's errors raised as Django's
        return db.connection.execute(_native_sql(sql), params).fetchall()


def execute_many(sql: str, rows: list[tuple]) -> None:
    db = _wrapper()
    with db.wrap_database_errors:
        cursor = db.connection.cursor()
        try:
            cursor.executemany(_native_sql(sql), rows)
        finally:
            cursor.close()


def execute(sql: str, params: list) -> int:
    db = _wrapper()
    with db.wrap_database_errors:
        return db.connection.execute(_native_sql(sql), params).rowcount


def _chunks(rows: list[tuple]) -> list[list[tuple]]:
    """Rows split so no statement passes SQLite's 32766 parameters."""
    per_statement = max(1, min(500, 30000 // len(rows[0]))) if rows else 1
    return [rows[start : start + per_statement] for start in range(0, len(rows), per_statement)]


def _values(chunk: list[tuple]) -> str:
    one = f"({marks(chunk[0])})"
    return ", ".join([one] * len(chunk))


def insert(model, columns: tuple[str, ...], rows: list[tuple]) -> list[int]:
    """Insert rows and return their ids in order (RETURNING, as Django's bulk_create relies on)."""
    ids: list[int] = []
    for chunk in _chunks(rows):
        sql = f"INSERT INTO {table(model)} ({', '.join(columns)}) VALUES {_values(chunk)} RETURNING id"
        ids.extend(pk for (pk,) in fetch_all(sql, [value for row in chunk for value in row]))
    return ids


def add_to_counts(model, key_columns: tuple[str, ...], rows: list[tuple]) -> None:
    """(*key, n) rows: add n to the count of the row with that key, creating it if there is none.
    One upsert on the unique constraint over key_columns, the same on SQLite and PostgreSQL."""
    name, keys = table(model), ", ".join(key_columns)
    for chunk in _chunks(rows):
        execute(
            f"INSERT INTO {name} ({keys}, count) VALUES {_values(chunk)}"
            f" ON CONFLICT ({keys}) DO UPDATE SET count = {name}.count + excluded.count",
            [value for row in chunk for value in row],
        )


def db_value(value):
    if isinstance(value, datetime):
        return moment(value)
    if isinstance(value, date):
        return connection.ops.adapt_datefield_value(value)
    return value
