"""One-dimensional arrays in PostgreSQL's binary format, encoded here rather than by psycopg.

runs.sql sends the storing statements' rows as one array per column (see "Rows on PostgreSQL"
there). psycopg dumps a list in Python element by element, after scanning it for the element
type, and a batch of the sink's writer sends about sixty small arrays: that dumping was a quarter
of the writer's CPU (425 of 1,700 µs a batch of 8). The columns hold a handful of Python types,
and each takes a few lines of PostgreSQL's array_send format: a header, the one dimension, then
each element's length (-1 for NULL) and bytes. A list holding anything else, or only NULLs, is
left to psycopg as before.
"""

import struct
from datetime import UTC, date, datetime

from psycopg.adapt import AdaptersMap, Dumper
from psycopg.pq import Format

_HEADER = struct.Struct(">iiiii")  # dimensions, has NULLs, element oid, length, lower bound
_LENGTH = struct.Struct(">i")
_NULL = _LENGTH.pack(-1)
_INT8 = struct.Struct(">iq")
_INT4 = struct.Struct(">ii")
_TRUE, _FALSE = b"\x00\x00\x00\x01\x01", b"\x00\x00\x00\x01\x00"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's, for timestamps and dates
_EPOCH_DAY = date(2000, 1, 1).toordinal()


class _Unencodable(Exception):
    """A value its column's type has no encoding for here (a naive datetime)."""


def _text(value: str) -> bytes:
    data = value.encode()
    return _LENGTH.pack(len(data)) + data


def _bytes(value: bytes) -> bytes:
    return _LENGTH.pack(len(value)) + value


def _moment(value: datetime) -> bytes:
    if value.tzinfo is None:
        raise _Unencodable
    delta = value - _EPOCH
    return _INT8.pack(8, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _day(value: date) -> bytes:
    return _INT4.pack(4, value.toordinal() - _EPOCH_DAY)


class Encoded(bytes):
    """An array already in PostgreSQL's binary format; its dumper sends it as it is."""

    __slots__ = ()


def _kind(name: str, array_oid: int) -> type[Encoded]:
    return type(name, (Encoded,), {"__slots__": (), "array_oid": array_oid})


# Python type: (element oid, the Encoded kind carrying the array's oid, the element's encoding)
_ENCODINGS = {
    int: (20, _kind("Int8Array", 1016), lambda v: _INT8.pack(8, v)),
    str: (25, _kind("TextArray", 1009), _text),
    bytes: (17, _kind("ByteaArray", 1001), _bytes),
    datetime: (1184, _kind("TimestamptzArray", 1185), _moment),
    date: (1082, _kind("DateArray", 1182), _day),
    bool: (16, _kind("BoolArray", 1000), lambda v: _TRUE if v else _FALSE),
}


def encode(values: list) -> Encoded | list:
    """values as one binary array, or the list itself where psycopg must choose (only NULLs, a
    type without an encoding here, or types mixed)."""
    kind = next((type(v) for v in values if v is not None), None)
    encoding = _ENCODINGS.get(kind)  # type: ignore[arg-type]
    if encoding is None:
        return values
    oid, array, one = encoding
    parts, nulls = [], 0
    try:
        for value in values:
            if value is None:
                parts.append(_NULL)
                nulls = 1
            elif type(value) is kind:
                parts.append(one(value))
            else:
                return values
    except (_Unencodable, struct.error):  # struct.error: an int beyond 64 bits
        return values
    return array(_HEADER.pack(1, nulls, oid, len(values), 1) + b"".join(parts))


class _Dumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Encoded) -> Encoded:
        return obj


_DUMPERS = {
    array: type(f"{array.__name__}Dumper", (_Dumper,), {"oid": array.array_oid})
    for _, array, _ in _ENCODINGS.values()
}


def register(adapters: AdaptersMap) -> None:
    """Teach a connection, or the template its connections copy, to send Encoded arrays."""
    for array, dumper in _DUMPERS.items():
        adapters.register_dumper(array, dumper)
