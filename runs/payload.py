"""The one place that understands an Intuned sink body: bytes in, a ParsedRun (or a refusal) out.

Two shapes arrive (see shared/intuned/README.md): the documented one, where `apiInfo.result` holds
`status`, `result` or `error`/`message`, and `statusCode`; and the newer platform shape, where
`apiInfo.result` holds `output`, and `apiInfo.error` / `apiInfo.reason` are objects. The webhook, the
importer and reprocessing all call `parse`, so a parser fix reaches every path. `content` reads the
rest of a body (result, unknown fields) when a page shows a run: runs do not keep it.
"""

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

# Ids and names go into indexed columns; PostgreSQL cannot index a B-tree entry past ~2.7 kB.
MAX_ID_LENGTH = 200
MAX_LABEL_LENGTH = 200
MAX_STATUS_LENGTH = 50

# The error codes Intuned documents, with their categories. The documented sink shape carries
# only the code, so the category is looked up here.
ERROR_CATEGORIES: dict[str, str] = {
    "script-execution-exception": "execution",
    "script-no-valid-output-received": "execution",
    "script-timeout": "execution",
    "script-unexpected-error": "execution",
    "script-process-crashed": "infrastructure",
    "result-too-big-error": "execution",
    "auth-check-failed": "auth",
    "check-attempts-failed": "auth",
    "create-attempts-failed": "auth",
    "post-create-check-attempts-failed": "auth",
    "auth-session-not-ready": "auth",
    "auth-session-already-in-use": "auth",
    "api-attempts-failed": "execution",
    "bad-request": "user",
    "unauthorized": "user",
    "forbidden": "user",
    "not-found": "user",
    "request-timeout": "infrastructure",
    "conflict": "user",
    "unprocessable-entity": "user",
    "insufficient-credits": "billing",
    "insufficient-resource-credits": "billing",
    "workspace-invalid-billing-state": "billing",
    "internal-server-error": "infrastructure",
}

_KNOWN_TOP = {"apiInfo", "workspaceId", "project", "authSession", "projectJob", "projectJobRun"}
_KNOWN_API_INFO = {
    "name", "parameters", "result", "runId", "started_at", "ended_at", "error", "reason",
    "trace_url", "log_url",
}  # fmt: skip
_KNOWN_RESULT = {"status", "result", "statusCode", "error", "message", "output"}


class Refused(Exception):
    """A body sinkdash will not store as a run. http_status is 400 (not JSON) or 422 (not a run)."""

    def __init__(self, http_status: int, reason: str, field: str = ""):
        super().__init__(reason)
        self.http_status = http_status
        self.reason = reason
        self.field = field

    def __reduce__(self):  # pickled whole: the importer's reading process sends refusals
        return Refused, (self.http_status, self.reason, self.field)


class ParsedRun(NamedTuple):
    """What a body says about its run. A named tuple: immutable, and built in a third of the time
    a frozen dataclass takes (an import builds one per body)."""

    run_id: str
    api_name: str
    status: str
    status_code: int | None
    error_code: str
    error_message: str
    error_category: str
    error_doc_url: str
    parameters_json: str
    parameters_sha256: str
    auth_session_id: str
    started_at: datetime | None
    ended_at: datetime | None
    trace_url: str
    log_url: str
    project_id: str
    project_name: str
    workspace_id: str
    job_id: str
    job_run_id: str
    # Worked out here, where the body is parsed, rather than where it is stored: import_runs
    # parses in a process of its own (runs.readahead), and the storing process sets the pace.
    parameters_key: int  # parameters_key(api_name, parameters_sha256)
    cause: tuple[str, str] | None  # a failure's normalised message and its fingerprint

    @property
    def is_failure(self) -> bool:
        return self.status == "failed"

    @property
    def happened_at(self) -> datetime | None:
        """When the run says it finished (or started): what orders two different bodies of a run."""
        return self.ended_at or self.started_at


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads and json.dumps with any non-default option build a new decoder or
# encoder on every call, which is a good part of parsing a 2 KB body.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_COMPACT_ASCII = json.JSONEncoder(separators=(",", ":"))
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))

# orjson reads and writes JSON several times faster than the standard library, which is most of
# what parsing a body costs. It reads an integer beyond 64 bits as a float, though (below -2**63
# or above 2**64 - 1), so a body with a number of 20 or more digits, or a negative one of 19
# (anywhere, strings included: a false alarm only costs speed), takes the standard library's exact
# path, as does anything orjson refuses (lone surrogates, a BOM, NaN, nesting past its limit,
# bytes that are not UTF-8): that path reads it exactly or says precisely what is wrong.
# (Digits mapped to "0", then a search for the zeros: a tenth of what the regex \d{20} costs.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 20
_LONG_NEGATIVE = b"-" + b"0" * 19


def _decode(raw: bytes) -> tuple[object, bool]:
    """Strict JSON: UTF-8 only, no NaN/Infinity (they could not be served back as JSON). The
    value, and whether orjson read it (so orjson can also write it back exactly)."""
    digits = raw.translate(_DIGITS_TO_ZERO)
    if _LONG_NUMBER not in digits and _LONG_NEGATIVE not in digits:
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError:
            pass
    return _decode_exactly(raw), False


def _decode_exactly(raw: bytes) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, f"body is not valid UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise Refused(400, "body is nested too deeply to parse") from None
    except ValueError as exc:
        raise Refused(400, f"body is not valid JSON: {exc}") from None


def clean_text(value: str, limit: int | None = None) -> str:
    """Text for a database column: NUL (refused by PostgreSQL) and lone surrogates (not UTF-8)
    become U+FFFD. The raw body and the JSON columns keep the original exactly."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():  # only non-ASCII text can hold a surrogate; isascii() copies nothing
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def dump_json(value: object) -> str:
    """JSON text for storage. Non-ASCII stays readable (and searchable) unless the value holds a
    lone surrogate, which only the escaped form can carry through a UTF-8 database."""
    text = _COMPACT.encode(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _COMPACT_ASCII.encode(value)
    return text


def _dump_read_by_orjson(value: object) -> str:
    """dump_json for a value orjson read: it holds nothing orjson writes differently (no NaN,
    no integer beyond 64 bits, no lone surrogate); only nesting past orjson's limit goes the
    slow way."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return dump_json(value)


def _text(value: object, limit: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_text(value, limit)
    if isinstance(value, (int, float, bool)):
        return clean_text(json.dumps(value), limit)
    return clean_text(dump_json(value), limit)


def _identifier(container: object, key: str, path: str, required: bool = False) -> str:
    value = container.get(key) if isinstance(container, dict) else None
    if value is None or value == "":
        if required:
            raise Refused(422, f"{path} is missing: every sink body names its run", field=path)
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return ""
    text = clean_text(str(value))
    if len(text) > MAX_ID_LENGTH:
        raise Refused(422, f"{path} is longer than {MAX_ID_LENGTH} characters", field=path)
    return text


def _moment(value: object) -> datetime | None:
    """An ISO time, in UTC (no offset: UTC). One with no UTC moment in years 1-9999, such as
    0001-01-01T00:30:00+01:00, is no time at all: it would fail where it is stored or read back
    (PostgreSQL keeps it as a year BC that psycopg cannot read), and it stays in the raw body."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _status_code(value: object) -> int | None:
    # Only a whole number that fits a 64-bit column; anything else stays in the raw body.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _status(api_info: dict, result: object) -> str:
    if isinstance(result, dict) and isinstance(result.get("status"), str) and result["status"]:
        return result["status"]
    error, reason = api_info.get("error"), api_info.get("reason")
    if error:
        return "failed"
    if isinstance(reason, dict) and isinstance(reason.get("type"), str) and reason["type"]:
        return reason["type"]
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(result, dict) and "output" in result:
        return "completed"
    return "unknown"


def _error(api_info: dict, result: object) -> tuple[str, str, str, str]:
    """(code, message, category, doc_url) from whichever shape carries them."""
    code = message = category = doc_url = None
    if isinstance(result, dict):
        code, message = result.get("error"), result.get("message")
        if isinstance(code, dict):  # a newer-style error object inside the documented result
            code, message, category, doc_url = (
                code.get("code"), code.get("message"), code.get("category"), code.get("doc_url")
            )  # fmt: skip
    error = api_info.get("error")
    if isinstance(error, dict):
        code = error.get("code", code)
        message = error.get("message", message)
        category = error.get("category", category)
        doc_url = error.get("doc_url", doc_url)
    elif isinstance(error, str) and error:
        message = message or error
    reason = api_info.get("reason")
    if not code and not message and isinstance(reason, dict):
        code, message = reason.get("code"), reason.get("message")
    code_text = _text(code, MAX_LABEL_LENGTH)
    category_text = _text(category, MAX_LABEL_LENGTH) or ERROR_CATEGORIES.get(code_text, "")
    return code_text, _text(message), category_text, _text(doc_url)


def _extra(body: dict, api_info: dict, result: object) -> dict:
    extra: dict[str, object] = {k: v for k, v in body.items() if k not in _KNOWN_TOP}
    unknown_api = {k: v for k, v in api_info.items() if k not in _KNOWN_API_INFO}
    if unknown_api:
        extra["apiInfo"] = unknown_api
    if isinstance(result, dict):
        unknown_result = {k: v for k, v in result.items() if k not in _KNOWN_RESULT}
        if unknown_result:
            extra["apiInfo.result"] = unknown_result
    return extra


def parse(raw: bytes) -> ParsedRun:
    body, api_info, by_orjson = _run_body(raw)
    run_id = _identifier(api_info, "runId", "apiInfo.runId", required=True)
    result = api_info.get("result")
    error_code, error_message, error_category, error_doc_url = _error(api_info, result)
    project = body.get("project")
    auth_session = body.get("authSession")
    api_name = _text(api_info.get("name"), MAX_LABEL_LENGTH)
    status = _text(_status(api_info, result), MAX_STATUS_LENGTH)
    parameters_sha256 = parameters_digest(api_info.get("parameters"))
    return ParsedRun(
        run_id=run_id,
        api_name=api_name,
        status=status,
        status_code=_status_code(result.get("statusCode")) if isinstance(result, dict) else None,
        error_code=error_code,
        error_message=error_message,
        error_category=error_category,
        error_doc_url=error_doc_url,
        parameters_json=(_dump_read_by_orjson if by_orjson else dump_json)(api_info.get("parameters")),
        parameters_sha256=parameters_sha256,
        auth_session_id=_identifier(auth_session, "id", "authSession.id"),
        started_at=_moment(api_info.get("started_at")),
        ended_at=_moment(api_info.get("ended_at")),
        trace_url=_text(api_info.get("trace_url")),
        log_url=_text(api_info.get("log_url")),
        project_id=_identifier(project, "id", "project.id"),
        project_name=_text(project.get("name") if isinstance(project, dict) else None),
        workspace_id=_identifier(body, "workspaceId", "workspaceId"),
        job_id=_identifier(body.get("projectJob"), "id", "projectJob.id"),
        job_run_id=_identifier(body.get("projectJobRun"), "id", "projectJobRun.id"),
        parameters_key=parameters_key(api_name, parameters_sha256),
        cause=failure_cause(error_message) if status == "failed" else None,
    )


class Content(NamedTuple):
    """What a body holds beyond what its run keeps (runs.models says why), as JSON text."""

    result_json: str  # the run's result ("null" when it sent none)
    extra_json: str  # the fields neither payload shape names ("{}" when there are none)


def content(raw: bytes) -> Content:
    """The result and unknown fields of a body that parse() takes, read the way parse() reads the
    rest of it; refuses what parse() refuses."""
    body, api_info, by_orjson = _run_body(raw)
    dump = _dump_read_by_orjson if by_orjson else dump_json
    result = api_info.get("result")
    if isinstance(result, dict) and "output" in result and "status" not in result:
        output = result["output"]  # newer shape
    elif isinstance(result, dict) and ("status" in result or "statusCode" in result):
        output = result.get("result")  # documented shape
    else:
        output = result
    return Content(dump(output), dump(_extra(body, api_info, result)))


def _run_body(raw: bytes) -> tuple[dict, dict, bool]:
    """The body and its apiInfo, and whether orjson read them; Refused unless it names a run."""
    body, by_orjson = _decode(raw)
    if not isinstance(body, dict):
        raise Refused(422, f"body must be a JSON object, not {_json_type(body)}")
    api_info = body.get("apiInfo")
    if not isinstance(api_info, dict):
        raise Refused(422, "apiInfo is missing or not an object", field="apiInfo")
    if "runId" in api_info and not isinstance(api_info["runId"], str):
        kind = _json_type(api_info["runId"])
        raise Refused(422, f"apiInfo.runId must be a string, not {kind}", field="apiInfo.runId")
    return body, api_info, by_orjson


def _json_type(value: object) -> str:
    kinds = {list: "an array", dict: "an object", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), "null" if value is None else "a number")


# Run-specific text that would otherwise split one cause into many failure groups.
_NORMALISERS = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>)\]]+", re.I), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.I), "<id>"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
]
MAX_GROUP_MESSAGE = 500


def normalise_message(message: str) -> str:
    text = message[:4000]
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    return text.strip()[:MAX_GROUP_MESSAGE]


def parameters_digest(parameters: object) -> str:
    """Equal parameters give equal digests whatever the order of their keys."""
    text = _CANONICAL.encode(parameters)
    return hashlib.sha256(text.encode()).hexdigest()  # ensure_ascii: lone surrogates are escaped


def parameters_key(api_name: str, digest: str) -> int:
    """A signed 64-bit number for (API, parameters digest): what the run_same_parameters index
    holds instead of the name and the 64-character digest, a sixth of their size, so the index
    stays in memory at millions of runs. Queries match the key and then the API and digest
    themselves, so two pairs that share a key are never confused."""
    hashed = hashlib.sha256(f"{api_name}\n{digest}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(hashed[:8], "big", signed=True)


def fingerprint(message: str) -> str:
    return hashlib.sha256(message.encode("utf-8")).hexdigest()


def failure_cause(error_message: str) -> tuple[str, str]:
    """What groups a failure: its message normalised, and that message's fingerprint."""
    message = normalise_message(error_message)
    return message, fingerprint(message)
