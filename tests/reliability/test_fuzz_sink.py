"""Property-based fuzzing of sink bodies (hypothesis), through Django's test client.

Valid bodies in both shapes with random values are stored and read back equal; mutations of them
(wrong types, missing keys, huge strings, deep nesting, invalid UTF-8, duplicate keys, NUL,
surrogates, big integers) are never answered 5xx; and whatever is answered 2xx reads back, from the
API (the exact bytes) and from the run's page.
"""

import itertools
import json
from collections import Counter
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Sink
from tests.reliability.conftest import record

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no example database in the work tree; failures print their reproduction
)
_serial = itertools.count()
ANSWERS: dict[str, Counter] = {}


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    record("fuzz", max_examples=FUZZ.max_examples,
           answers={kind: dict(sorted((str(k), v) for k, v in c.items())) for kind, c in sorted(ANSWERS.items())})


def count(kind: str, status: int) -> None:
    ANSWERS.setdefault(kind, Counter())[status] += 1

# Text with everything JSON can carry: NUL, controls, astral planes, lone surrogates.
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
any_text = st.one_of(st.text(max_size=30), st.text(st.characters(codec=None), max_size=30), surrogates,
                     st.sampled_from(["\x00", "\u2028", "\ufeff", "💥", "a\x00b"]))  # fmt: skip
big_ints = st.one_of(st.integers(), st.integers(min_value=2**63 - 2, max_value=2**70), st.just(-(2**63) - 1),
                     st.integers(min_value=10**300, max_value=10**310))  # fmt: skip
scalars = st.one_of(st.none(), st.booleans(), big_ints, st.floats(allow_nan=False, allow_infinity=False), any_text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)),
    max_leaves=12,
)
safe_id = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)
moments = st.one_of(st.none(), st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()), any_text)


@st.composite
def valid_bodies(draw) -> tuple[dict, object, object]:
    """(body, parameters, result) in one of the two shapes, with random values."""
    run_id = f"{draw(safe_id)}-{next(_serial)}"
    parameters = draw(st.one_of(st.dictionaries(any_text, json_values, max_size=5), st.lists(json_values, max_size=5)))
    result = draw(json_values)
    failed = draw(st.booleans())
    if draw(st.booleans()):  # documented shape
        api_result = (
            {"status": "failed", "error": draw(any_text), "message": draw(any_text), "statusCode": draw(big_ints)}
            if failed else {"status": "completed", "result": result, "statusCode": draw(big_ints)}
        )  # fmt: skip
        info = {"name": draw(any_text), "parameters": parameters, "result": api_result, "runId": run_id}
    else:  # newer shape
        info = {"name": draw(any_text), "parameters": parameters, "runId": run_id,
                "result": None if failed else {"output": result, "extendedPayloads": draw(json_values)},
                "started_at": draw(moments), "ended_at": draw(moments),
                "error": {"code": draw(any_text), "message": draw(any_text), "category": draw(any_text),
                          "doc_url": draw(any_text), "details": draw(json_values)} if failed else None,
                "reason": draw(st.one_of(st.none(), st.fixed_dictionaries({"type": any_text, "message": any_text}))),
                "trace_url": draw(any_text), "log_url": draw(any_text)}  # fmt: skip
    body = {"apiInfo": info, "workspaceId": draw(any_text), "project": {"id": draw(any_text), "name": draw(any_text)}}
    if draw(st.booleans()):
        body["projectJob"] = {"id": draw(any_text)}
        body["projectJobRun"] = {"id": draw(any_text)}
    if draw(st.booleans()):
        body[draw(any_text)] = draw(json_values)  # a field neither shape names
    if failed:
        result = None
    return body, parameters, result


def same(a, b) -> bool:
    """JSON equality that also tells 1 from 1.0 from True."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def encode(body: object) -> bytes:
    # ensure_ascii: lone surrogates can only travel as \\udXXX escapes.
    return json.dumps(body, ensure_ascii=True).encode()


def assert_readable(client, raw: bytes, response) -> dict:
    """A 2xx answer means stored: the exact bytes come back, and so do the run and its page."""
    accepted = response.json()
    assert accepted["outcome"] in ("created", "updated", "duplicate", "stale")
    got = client.get(f"/api/deliveries/{accepted['delivery_id']}/raw")
    assert got.status_code == 200 and got.content == raw
    run = client.get(f"/api/runs/{quote(accepted['run_id'], safe='')}")
    if "/" not in accepted["run_id"]:  # the API's {run_id} is one path segment
        assert run.status_code == 200, run.content[:500]
    page = client.get(f"/runs/{quote(accepted['run_id'])}/")
    assert page.status_code == 200, page.content[:500]
    return run.json() if run.status_code == 200 else {}


@FUZZ
@given(case=valid_bodies())
def test_valid_bodies_in_both_shapes_are_stored_and_read_back_equal(signed_in, case):
    body, parameters, result = case
    raw = encode(body)
    # What the JSON text means: two escaped halves of a surrogate pair decode as one character.
    parameters, result = json.loads(encode([parameters, result]))
    response = Sink(signed_in).post(raw)
    count("valid", response.status_code)
    assert response.status_code == 201, response.content[:500]
    run = assert_readable(signed_in, raw, response)
    assert run["run_id"] == body["apiInfo"]["runId"]
    assert same(run["parameters"], parameters), (run["parameters"], parameters)
    assert same(run["result"], result), (run["result"], result)


# --- Mutations -------------------------------------------------------------------------------

PATHS = [(), ("apiInfo",), ("apiInfo", "runId"), ("apiInfo", "result"), ("apiInfo", "result", "status"),
         ("apiInfo", "result", "statusCode"), ("apiInfo", "result", "output"), ("apiInfo", "error"),
         ("apiInfo", "reason"), ("apiInfo", "name"), ("apiInfo", "parameters"), ("apiInfo", "started_at"),
         ("project",), ("project", "id"), ("projectJob",), ("projectJobRun", "id"), ("authSession",),
         ("workspaceId",)]  # fmt: skip


def _replace(body: object, path: tuple, value: object, delete: bool = False) -> object:
    if not path:
        return value
    if not isinstance(body, dict):
        return body
    head, rest = path[0], path[1:]
    out = dict(body)
    if delete and not rest:
        out.pop(head, None)
    else:
        out[head] = _replace(out.get(head, {}), rest, value, delete)
    return out


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["type", "delete", "huge", "deep", "bytes", "duplicate", "number", "other"]))
    return kind, draw(_mutation(kind))


@st.composite
def _mutation(draw, kind: str) -> bytes:
    body, _, _ = draw(valid_bodies())
    path = draw(st.sampled_from(PATHS))
    if kind == "type":
        return encode(_replace(body, path, draw(json_values)))
    if kind == "delete":
        return encode(_replace(body, path, None, delete=True))
    if kind == "huge":
        return encode(_replace(body, path, draw(st.sampled_from(["x", "é", "\x00", "<"])) * draw(
            st.sampled_from([201, 5000, 300_000, 2_100_000]))))  # fmt: skip
    if kind == "deep":
        marker = "DEEP-MARKER"
        raw = encode(_replace(body, path or ("apiInfo", "parameters"), marker))
        return raw.replace(f'"{marker}"'.encode(), nested(draw(st.sampled_from([50, 500, 990, 1100, 20_000]))).encode())
    if kind == "bytes":
        raw = encode(body)
        at = draw(st.integers(0, len(raw)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf",
                                     b"\xf4\x90\x80\x80", b"", b"\x80\x80"]))  # fmt: skip
        return raw[:at] + junk + raw[at + draw(st.integers(0, 3)):]
    if kind == "duplicate":
        raw = encode(body)
        other, _, _ = draw(valid_bodies())
        # {"apiInfo": <other>, ...original...}: JSON allows it; the last key wins in Python.
        return b'{"apiInfo": ' + encode(other["apiInfo"]) + b", " + raw[1:]
    if kind == "number":
        number = draw(st.sampled_from(["1e400", "-1e400", "1" * 5000, "NaN", "Infinity", "-0", "1E-400", "0.1e1"]))
        return encode(_replace(body, path, "NUMBER-MARKER")).replace(b'"NUMBER-MARKER"', number.encode())
    return draw(st.sampled_from([b"", b"null", b"[]", b'"x"', b"{}", b'{"apiInfo": []}', b"{" * 3, b"\x00" * 8]))


@FUZZ
@given(case=mutated())
def test_mutated_bodies_never_get_a_5xx_and_every_2xx_reads_back(signed_in, case):
    kind, raw = case
    response = Sink(signed_in).post(raw)
    count(f"mutation:{kind}", response.status_code)
    assert response.status_code < 500, response.content[:500]
    if 200 <= response.status_code < 300:
        assert_readable(signed_in, raw, response)
    else:
        assert response.status_code in (400, 413, 422), response.status_code
        assert response.json()["detail"]


def test_a_body_over_the_size_limit_is_413_not_5xx(signed_in, settings):
    settings.MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2**20
    response = Sink(signed_in).post(b'{"apiInfo": {"runId": "big", "result": "' + b"x" * 2**20 + b'"}}')
    assert response.status_code == 413
