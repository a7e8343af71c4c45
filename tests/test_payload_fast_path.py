"""The parser reads most bodies with orjson and falls back to the standard library for what orjson
would read differently or refuses; both paths must give the same run."""

import json

import pytest

from runs import payload
from tests.conftest import documented_body, example_bytes, newer_body
from tests.test_sink_values import STRANGE_VALUES


def exactly(read, raw: bytes):
    """parse() or content() with orjson out of the way: the standard library reads and writes."""
    original = payload._decode
    payload._decode = lambda raw: (payload._decode_exactly(raw), False)
    try:
        return read(raw)
    finally:
        payload._decode = original


def same_run(a, b) -> None:
    for name in a._fields:
        left, right = getattr(a, name), getattr(b, name)
        if name.endswith("_json"):  # equal values; a float may be spelled 1e+16 or 1e16
            left, right = json.loads(left), json.loads(right)
        assert left == right, name


BODIES = [
    *(json.dumps(documented_body("v", result=v, parameters=[v])).encode() for v in STRANGE_VALUES),
    *(json.dumps(newer_body("n", failed=failed)).encode() for failed in (False, True)),
    *(example_bytes(name) for name in ("completed.json", "failed.json", "newer-failed.json", "run-api-no-job.json")),
    json.dumps(documented_body("f", result=[1e16, 0.1, -0.0, 5e-324, 123456789012345678])).encode(),
    b'{"apiInfo": {"runId": "id-in-text", "name": "x", "parameters": {"n": "12345678901234567890123"}}}',
]


@pytest.mark.parametrize("raw", BODIES, ids=lambda raw: raw[:40].decode(errors="replace"))
def test_both_paths_read_a_body_alike(raw):
    same_run(payload.parse(raw), exactly(payload.parse, raw))
    same_run(payload.content(raw), exactly(payload.content, raw))


@pytest.mark.parametrize("number", [
    "123456789012345678901234567890",
    "18446744073709551616",  # 2**64: twenty digits
    "-9223372036854775809",  # one below -2**63: nineteen digits, which orjson reads as a float
])  # fmt: skip
def test_an_integer_beyond_64_bits_is_read_exactly(number):
    raw = f'{{"apiInfo": {{"runId": "big", "parameters": [{number}], "result": {{"status": "completed", "result": {number}}}}}}}'
    assert payload.content(raw.encode()).result_json == number
    assert payload.parse(raw.encode()).parameters_json == f"[{number}]"


def test_nesting_orjson_cannot_write_is_written_by_the_standard_library():
    deep = inner = {}
    for _ in range(300):  # past orjson's limit for writing, within its limit for reading
        inner["n"] = inner = {}
    raw = json.dumps(documented_body("deep", result=deep)).encode()
    assert json.loads(payload.content(raw).result_json) == deep
