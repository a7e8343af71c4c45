"""What storing costs in sinkdash's own schema, without sinkdash's Python around it.

    import_schema_floor.py EMPTY.sqlite3 FILE.jsonl [BATCH [CACHE_MIB CHECKPOINT_PAGES]]

EMPTY.sqlite3 is a freshly migrated sinkdash database (this script works on a copy of it beside
it). Each line is parsed with sinkdash's own parser, untimed, and turned into the run row and the
delivery row sinkdash stores for a new run (parents made up front: one project, its jobs and job
runs). Then only the inserts are timed: bare sqlite3 executemany of both rows, BATCH runs per
transaction, with sinkdash's pragmas and every index of its schema (bench/importing.py gives it the
importer's batch size, page cache and checkpoint interval). Counters, failure groups and
the look-ups for existing runs are left out, so this is a floor sinkdash's importer cannot reach.
Prints one JSON line: rows and seconds.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from datetime import UTC
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runs.payload import Refused, parse  # noqa: E402

RUN = (
    "run_id, project_id, job_id, job_run_id, api_name, status, status_code, error_code, error_message,"
    " error_category, error_doc_url, parameters_json, parameters_sha256, parameters_key,"
    " auth_session_id, started_at, ended_at, trace_url, log_url, content_sha256, delivery_count,"
    " first_received_at, last_received_at"
)
DELIVERY = "run_id, received_at, raw, sha256, size, headers_json, source, outcome"
NOW = "2026-01-01 00:00:00"


def moment(value):
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ") if value else None


def main(empty: str, path: str, batch: int = 5000, cache_mib: int = 128, checkpoint_pages: int = 1000) -> dict:
    db = empty + ".floor"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    shutil.copy(empty, db)
    conn = sqlite3.connect(db, isolation_level=None)
    pragmas = ("journal_mode=WAL", "synchronous=NORMAL", f"cache_size=-{cache_mib * 1024}", "temp_store=MEMORY",
               f"wal_autocheckpoint={checkpoint_pages}")  # fmt: skip
    for pragma in pragmas:
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(
        "INSERT INTO runs_project (project_id, name, workspace_id, run_count, failed_count,"
        " first_received_at, last_received_at) VALUES ('p', 'p', '', 0, 0, ?, ?)", (NOW, NOW)
    )  # fmt: skip
    parents: dict[tuple, int] = {}

    def parent(table: str, columns: str, values: tuple) -> int:
        if (table, values) not in parents:
            marks = ", ".join("?" * (len(values) + 2))
            parents[(table, values)] = conn.execute(
                f"INSERT INTO {table} ({columns}, first_received_at, last_received_at) VALUES ({marks}) RETURNING id",
                (*values, NOW, NOW),
            ).fetchone()[0]
        return parents[(table, values)]

    rows, seconds = 0, 0.0
    with open(path, "rb") as lines:
        while chunk := list(islice(lines, batch)):
            runs, bodies = [], []
            for line in chunk:
                raw = line.rstrip(b"\n")
                try:
                    p = parse(raw)
                except Refused:
                    continue
                job = parent("runs_job", "project_id, job_id, run_count, failed_count", (1, p.job_id, 0, 0)) if p.job_id else None
                job_run = (
                    parent("runs_jobrun", "job_id, job_run_id, total, completed, failed, other", (job, p.job_run_id, 0, 0, 0, 0))
                    if job and p.job_run_id else None
                )  # fmt: skip
                sha = hashlib.sha256(raw).hexdigest()
                runs.append((
                    p.run_id, 1, job, job_run, p.api_name, p.status, p.status_code, p.error_code, p.error_message,
                    p.error_category, p.error_doc_url, p.parameters_json, p.parameters_sha256,
                    p.parameters_key, p.auth_session_id, moment(p.started_at),
                    moment(p.ended_at), p.trace_url, p.log_url, sha, 1, NOW, NOW,
                ))  # fmt: skip
                bodies.append((raw, sha))
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO runs_run ({RUN}) VALUES ({', '.join('?' * 23)})", runs)
            (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
            first = last - len(runs) + 1  # one writer, AUTOINCREMENT: the batch's ids follow each other
            conn.executemany(
                f"INSERT INTO runs_delivery ({DELIVERY}) VALUES (?, ?, ?, ?, ?, '{{}}', 'import', 'created')",
                [(first + i, NOW, raw, sha, len(raw)) for i, (raw, sha) in enumerate(bodies)],
            )
            conn.execute("COMMIT")
            seconds += time.perf_counter() - started
            rows += len(runs)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    return {"rows": rows, "seconds": seconds}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))))
