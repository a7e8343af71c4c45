"""Where an ingested delivery's time goes, without HTTP: the figures that explain the ratio of the
ingest benchmark.

Three stores of the same bodies (bench/ingest.lua's, made here in Python), in transactions of
BATCH deliveries (about what the group commit takes under 16 connections):

- sinkdash's writer: `runs.ingest.receive_many`, everything the server does after reading a body
  (parse, parents, run and delivery rows, counters, failure groups, commit);
- bare sqlite3 writing the same run and delivery rows into sinkdash's own schema, with its indexes:
  what storing costs with no Python around it;
- the same with every secondary index dropped: what the indexes cost.

On PostgreSQL only the first, with the CPU it took in this process and in its PostgreSQL backend:
what storing alone allows, since the advisory lock lets one process store at a time.

Run by bench/ingest.py in a fresh Site; prints one JSON line of microseconds per delivery.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time

BATCH = 8
BATCHES = 400
PADDING = "x" * 1800


def body(prefix: str, counter: int) -> bytes:
    """bench/ingest.lua's request body, counter for counter."""
    if counter % 10 == 0:
        result = {"status": "failed", "error": "script-execution-exception", "statusCode": 500,
                  "message": f"TimeoutError: locator('.price') not visible after 30000ms on https://shop.example/p/{counter}"}  # fmt: skip
    else:
        result = {"status": "completed", "result": {"title": f"Product {counter}", "description": PADDING},
                  "statusCode": 200}  # fmt: skip
    return json.dumps({
        "apiInfo": {"name": "product-details", "parameters": {"url": f"https://shop.example/p/{counter}"},
                    "result": result, "runId": f"{prefix}-{counter}"},
        "workspaceId": "ws-bench", "project": {"id": "proj-bench", "name": "bench"},
        "projectJob": {"id": "nightly"}, "projectJobRun": {"id": f"jr-{counter % 3}"},
    }).encode()  # fmt: skip


def batches(prefix: str) -> list[list[bytes]]:
    return [[body(prefix, b * BATCH + i + 1) for i in range(BATCH)] for b in range(BATCHES)]


HEADERS = {"Host": "127.0.0.1", "Content-Type": "application/json", "Content-Length": "2100"}


def sinkdash_writer() -> float:
    from runs.ingest import receive_many

    work = batches("w")
    receive_many([(raw, HEADERS) for raw in work[0]])  # parents exist from here on, as in a server
    started = time.perf_counter()
    for batch in work[1:]:
        receive_many([(raw, HEADERS) for raw in batch])
    return (time.perf_counter() - started) / ((BATCHES - 1) * BATCH) * 1e6


WARM_UP_BATCHES = 50


def sinkdash_writer_postgresql() -> dict:
    """The writer's µs per delivery on PostgreSQL, and the CPU of this process and of its backend
    per delivery. The first batches are a warm-up, as in bench/ingest.py. No ANALYZE: the writer
    plans again as runs grows (runs.sql.plan_again_as_runs_double), as a new installation does."""
    from django.db import connection

    from runs.ingest import receive_many

    work = batches("w")
    for batch in work[:WARM_UP_BATCHES]:
        receive_many([(raw, HEADERS) for raw in batch])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    timed = work[WARM_UP_BATCHES:]
    backend_before, started, cpu_before = _cpu_of(backend), time.perf_counter(), time.process_time()
    for batch in timed:
        receive_many([(raw, HEADERS) for raw in batch])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    backend_cpu = _cpu_of(backend)
    deliveries = len(timed) * BATCH
    return {
        "sinkdash_writer_us": seconds / deliveries * 1e6,
        "python_cpu_us": cpu / deliveries * 1e6,
        # None when the server is on another machine (its processes are not in this /proc)
        "backend_cpu_us": None if backend_cpu is None else (backend_cpu - backend_before) / deliveries * 1e6,
    }


def _cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of a process on this machine (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


RUN_COLUMNS = (
    "run_id, project_id, job_id, job_run_id, api_name, status, status_code, error_code, error_message,"
    " error_category, error_doc_url, parameters_json, parameters_sha256, parameters_key,"
    " auth_session_id, started_at, ended_at, trace_url, log_url, failure_group_id, content_sha256,"
    " delivery_count, first_received_at, last_received_at"
)


def bare_sqlite(path: str, drop_indexes: bool) -> float:
    """The rows sinkdash writes for a new run (run + delivery, the parents already there), written
    by bare sqlite3 with the settings' pragmas; counters are one UPDATE per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    # sinkdash's settings (temp_store=MEMORY included: without it SQLite writes each statement's
    # journal to a temporary file, which cost bare sqlite3 most of its time per delivery).
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-32000", "temp_store=MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    if drop_indexes:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('runs_run', 'runs_delivery')"
            " AND sql IS NOT NULL"
        ).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
    now = "2026-01-01 00:00:00"
    conn.execute("INSERT INTO runs_project (project_id, name, workspace_id, run_count, failed_count,"
                 " first_received_at, last_received_at) VALUES ('p', 'bench', 'ws', 0, 0, ?, ?)", (now, now))  # fmt: skip
    (project,) = conn.execute("SELECT id FROM runs_project").fetchone()
    work = batches("b")
    started = time.perf_counter()
    for batch in work:
        conn.execute("BEGIN IMMEDIATE")
        for raw in batch:
            api = json.loads(raw)["apiInfo"]
            result = api["result"]
            failed = result["status"] == "failed"
            digest = hashlib.sha256(json.dumps(api["parameters"]).encode()).hexdigest()
            (run,) = conn.execute(
                f"INSERT INTO runs_run ({RUN_COLUMNS}) VALUES ({', '.join('?' * 24)}) RETURNING id",
                (api["runId"], project, None, None, api["name"], result["status"], result["statusCode"],
                 result.get("error", ""), result.get("message", ""), "execution" if failed else "", "",
                 json.dumps(api["parameters"]), digest, int(digest[:15], 16), "", None, None, "", "", None,
                 hashlib.sha256(raw).hexdigest(), 1, now, now),
            ).fetchone()  # fmt: skip
            conn.execute(
                "INSERT INTO runs_delivery (run_id, received_at, raw, sha256, size, headers_json, source, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run, now, raw, hashlib.sha256(raw).hexdigest(), len(raw), json.dumps(HEADERS), "webhook", "created"),
            )  # fmt: skip
        conn.execute("UPDATE runs_project SET run_count = run_count + ? WHERE id = ?", (len(batch), project))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds / (BATCHES * BATCH) * 1e6


def main() -> None:
    import django

    django.setup()
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        print(json.dumps({"batch": BATCH, **sinkdash_writer_postgresql()}))
        return
    database = settings.DATABASES["default"]["NAME"]
    empty = str(database) + ".empty"
    shutil.copy(database, empty)  # the migrated, empty schema, before the writer fills it
    figures = {"batch": BATCH, "sinkdash_writer_us": sinkdash_writer()}
    for name, drop in (("bare_sqlite_us", False), ("bare_sqlite_no_indexes_us", True)):
        copy = f"{empty}.{name}"
        shutil.copy(empty, copy)
        figures[name] = bare_sqlite(copy, drop)
        os.remove(copy)
    os.remove(empty)
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
