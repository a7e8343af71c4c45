"""sinkdash.db.postgresql.arrays: the storing path's arrays, encoded in PostgreSQL's binary format
by sinkdash instead of psycopg. Each kind of column value must reach PostgreSQL exactly as psycopg
would have sent it, NULLs included; anything else is left to psycopg."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from django.db import connection

from sinkdash.db.postgresql.arrays import Encoded, encode

pytestmark = pytest.mark.django_db

EAST = timezone(timedelta(hours=5, minutes=30))
COLUMNS = {  # the array type a column's values are cast to, and values that test its encoding
    "bigint": [0, 1, -1, 2**63 - 1, -(2**63), None, 7],
    "integer": [3, None, 2**31 - 1],
    "varchar": ["plain", "", "é ☃ 𝄞", "quote \" backslash \\ comma , brace {}", None, "NULL"],
    "text": ["a" * 5000, None],
    "bytea": [b"", b"\x00\xff raw body", None, bytes(range(256))],
    "timestamp with time zone": [
        datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch
        datetime(2026, 3, 29, 1, 30, tzinfo=EAST),
        None,
    ],
    "date": [date(2026, 12, 4), date(1970, 1, 1), None, date(2000, 1, 1)],
    "boolean": [True, False, None],
}


@pytest.mark.parametrize("cast", COLUMNS)
def test_each_kind_of_value_arrives_as_it_was(cast):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's binary arrays")
    values = COLUMNS[cast]
    encoded = encode(values)
    assert isinstance(encoded, Encoded)
    with connection.cursor() as cursor:
        cursor.cursor.execute(f"SELECT %b::{cast}[]", [encoded])
        (back,) = cursor.fetchone()
    if cast == "bytea":
        back = [None if value is None else bytes(value) for value in back]
    assert back == values


@pytest.mark.parametrize(
    "values",
    [
        [None, None],  # no type to choose: psycopg's own choice, as before
        [datetime(2026, 12, 4)],  # a naive moment has no one instant to send
        [1, "1"],  # mixed
        [1.5],  # no encoding here
        [2**64],  # beyond 64 bits
        [],
    ],
)
def test_what_has_no_encoding_is_left_to_psycopg(values):
    assert encode(values) is values
