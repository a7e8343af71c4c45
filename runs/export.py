"""Downloads: a filtered run list as CSV or JSONL, and a job run's scraped results as CSV rows.

Everything streams: rows are read by keyset on id, a page's sizes first and then its rows a few MB
at a time (no OFFSET, no list of a million runs, nor a page of runs of megabytes each, in memory),
and written out a chunk of up to a few MB at a time. Under ASGI the response gets an
asynchronous iterator that reads each chunk's rows in Django's sync thread; a synchronous iterator
there would be read whole into memory by Django before the first byte is sent.
"""

import csv
import functools
import heapq
import io
import json
import operator
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from django.db.models import Value
from django.utils import timezone

from runs.models import JobRun, Run
from runs.queries import (
    RunFilter, filter_runs, per_status, result_and_extra, storable, text_size, with_state_body,
)  # fmt: skip

# Runs a keyset query pages through (see _rows), and about how many bytes of their text are read,
# and written as one chunk of the download, at a time. A run may hold megabytes (an error message
# or parameters with a scraped page in them, and its state body, which brings the result): pages
# of 1,000 runs read and written whole took the process to 1.3 GB for a JSONL download of 2,000
# runs of which 60 held 5 MB messages. A page's sizes are read first, then its runs a few MB at a
# time. Not a server-side cursor that hands over a few runs at a time: a transaction-mode pooler
# (the README allows PgBouncer's) cannot keep one open from one statement to the next.
PAGE_SIZE = 1000
CHUNK_BYTES = 4 * 2**20
# The columns whose sizes a page's first query reads.
_LARGE = ("error_message", "parameters_json", "state_raw")
# A result whose objects bring ever new keys must not make a header of unbounded width.
MAX_RESULT_COLUMNS = 500

RUN_COLUMNS = [
    "run_id", "status", "api_name", "project_id", "project_name", "job_id", "job_run_id",
    "status_code", "error_code", "error_category", "error_message", "received_at", "parameters",
]  # fmt: skip
_RUN_VALUES = [
    "id", "run_id", "status", "api_name", "project__project_id", "project__name", "job__job_id",
    "job_run__job_run_id", "status_code", "error_code", "error_category", "error_message",
    "first_received_at", "parameters_json",
]  # fmt: skip
_JSONL_VALUES = _RUN_VALUES + [
    "error_doc_url", "last_received_at", "started_at", "ended_at", "auth_session_id", "trace_url",
    "log_url", "delivery_count", "state_raw",
]  # fmt: skip

# Spreadsheets run a cell that starts with one of these as a formula (scraped text can be hostile).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """A cell a spreadsheet will show as text: formula-like strings get a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _rows(runs, fields: list[str], *, newest_first: bool = True) -> Iterator[dict]:
    """The queryset's rows one by one: PAGE_SIZE ids and sizes a query by keyset on id, then the
    rows of those ids about CHUNK_BYTES of their large columns at a time."""
    order = "-id" if newest_first else "id"
    runs = runs.order_by(order)
    sizes = [text_size(name) for name in _LARGE if name in fields] or [Value(0)]
    sized = runs.annotate(export_size=functools.reduce(operator.add, sizes))
    last = None
    while True:
        page = sized
        if last is not None:
            page = page.filter(id__lt=last) if newest_first else page.filter(id__gt=last)
        ids_and_sizes = list(page.values_list("id", "export_size")[:PAGE_SIZE])
        for group in _groups(ids_and_sizes, lambda pair: pair[1] or 0):
            yield from runs.filter(id__in=[pk for pk, _ in group]).values(*fields)
        if len(ids_and_sizes) < PAGE_SIZE:
            return
        last = ids_and_sizes[-1][0]


def _grouped(rows: Iterable[dict]) -> Iterator[list[dict]]:
    """Rows in the groups one chunk of a download is written from (_groups, by their text)."""
    return _groups(rows, lambda row: sum(len(v) for v in row.values() if isinstance(v, (str, bytes))))


def _groups[T](items: Iterable[T], size: Callable[[T], int]) -> Iterator[list[T]]:
    """The items in order, in groups of PAGE_SIZE at most and of CHUNK_BYTES at most by `size`,
    unless one item alone is larger."""
    group: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if group and (total + n > CHUNK_BYTES or len(group) >= PAGE_SIZE):
            yield group
            group, total = [], 0
        group.append(item)
        total += n
    if group:
        yield group


def _pages(runs, fields: list[str], *, newest_first: bool = True) -> Iterator[list[dict]]:
    """The queryset's rows in groups (_grouped), read by _rows."""
    return _grouped(_rows(runs, fields, newest_first=newest_first))


def _csv_chunk(rows: Iterable[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([neutralise(cell) for cell in row])
    return out.getvalue()


def _moment(value) -> str:
    return value.isoformat() if value is not None else ""


def runs_csv(f: RunFilter) -> Iterator[str]:
    yield _csv_chunk([RUN_COLUMNS])
    for rows in _merged_pages(f, _RUN_VALUES):
        yield _csv_chunk(
            [
                r["run_id"], r["status"], r["api_name"], r["project__project_id"], r["project__name"],
                r["job__job_id"] or "", r["job_run__job_run_id"] or "", r["status_code"],
                r["error_code"], r["error_category"], r["error_message"],
                _moment(r["first_received_at"]), r["parameters_json"],
            ]  # fmt: skip
            for r in rows
        )


def runs_jsonl(f: RunFilter) -> Iterator[str]:
    for rows in _merged_pages(f, _JSONL_VALUES, with_state=True):
        yield "".join(_jsonl_line(r) for r in rows)


def _merged_pages(f: RunFilter, fields, *, with_state: bool = False) -> Iterator[list[dict]]:
    """The filtered runs in groups (_grouped), newest first; with several statuses, one keyset
    stream per status merged by id (see queries.per_status), so no query sorts the whole match."""
    parts = per_status(f)

    def runs(one: RunFilter):
        return with_state_body(filter_runs(one)) if with_state else filter_runs(one)

    streams = [_rows(runs(one), fields) for one in parts]
    return _grouped(streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda r: -r["id"]))


def _jsonl_line(r: dict) -> str:
    meta = {
        "run_id": r["run_id"],
        "status": r["status"],
        "api_name": r["api_name"],
        "project_id": r["project__project_id"],
        "project_name": r["project__name"],
        "job_id": r["job__job_id"],
        "job_run_id": r["job_run__job_run_id"],
        "status_code": r["status_code"],
        "error_code": r["error_code"],
        "error_category": r["error_category"],
        "error_message": r["error_message"],
        "error_doc_url": r["error_doc_url"],
        "received_at": _moment(r["first_received_at"]),
        "last_received_at": _moment(r["last_received_at"]),
        "started_at": _moment(r["started_at"]) or None,
        "ended_at": _moment(r["ended_at"]) or None,
        "auth_session_id": r["auth_session_id"],
        "trace_url": r["trace_url"],
        "log_url": r["log_url"],
        "delivery_count": r["delivery_count"],
    }
    # The parser writes JSON text on one line (payload.dump_json): splicing it in keeps every
    # value exactly as received, big integers included.
    result_json, extra_json = result_and_extra(r["state_raw"])
    head = json.dumps(meta, ensure_ascii=False)[:-1]
    return f'{head}, "parameters": {r["parameters_json"]}, "result": {result_json}, "extra": {extra_json}}}\n'


def _result_objects(state_raw: bytes | None) -> list[dict]:
    """The objects of a run's result, read from its state body: the result itself if it is one,
    or the objects in it if it is a list."""
    value = json.loads(result_and_extra(state_raw)[0])
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _cell(value: object) -> object:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return "" if value is None else json.dumps(value)
    return value


def job_run_results_csv(job_runs: list[int]) -> Iterator[str]:
    """One row per object in the runs' results (a list of objects, or one object), oldest run
    first. The columns are run_id and the union of the objects' keys, so the rows are read twice:
    once for the keys, once to write them, both up to the newest run seen by the first pass."""
    runs = with_state_body(Run.objects.filter(job_run_id__in=job_runs))
    keys: dict[str, None] = {}
    newest = None
    for rows in _pages(runs, ["id", "state_raw"], newest_first=False):
        for r in rows:
            for obj in _result_objects(r["state_raw"]):
                for key in obj:
                    if len(keys) < MAX_RESULT_COLUMNS:
                        keys.setdefault(key, None)
        newest = rows[-1]["id"]
    columns = list(keys)
    header = ["run_id"] + [key if key != "run_id" else "result.run_id" for key in columns]
    yield _csv_chunk([header])
    if newest is None:
        return
    for rows in _pages(runs.filter(id__lte=newest), ["id", "run_id", "state_raw"], newest_first=False):
        yield _csv_chunk(
            [r["run_id"]] + [_cell(obj.get(key)) for key in columns]
            for r in rows
            for obj in _result_objects(r["state_raw"])
        )


def job_runs_named(job_run_id: str) -> list[int]:
    """Intuned's job run id is unique per job; a bare id may name job runs of several jobs."""
    if not storable(job_run_id):
        return []
    return list(JobRun.objects.filter(job_run_id=job_run_id).values_list("id", flat=True)[:1000])


async def _in_sync_thread(chunks: Iterator[str]) -> AsyncIterator[str]:
    end = object()
    while (chunk := await sync_to_async(next)(chunks, end)) is not end:
        yield chunk


def download(request: HttpRequest, chunks: Iterator[str], filename: str, content_type: str):
    """A streaming attachment; asynchronous under ASGI (see the module docstring)."""
    body = _in_sync_thread(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80] or "export"


def stamp() -> str:
    return timezone.now().strftime("%Y%m%dT%H%M%SZ")
