"""The benchmarks' look inside one database, run as a subprocess with a site's environment
(bench/common.py Site.django), printing one JSON line:

    inspect_db.py fixtures          the rows each route asks about (bench/routes.py)
    inspect_db.py explain FX.json   every query each route makes, its time and its plan
    inspect_db.py recount           every counter row against a recount of the runs, in SQL

`explain` serves each route in-process through Django's test client, records the SQL it runs
(connection.execute_wrapper) and asks the database for each query's plan: EXPLAIN QUERY PLAN on
SQLite, EXPLAIN on PostgreSQL. So the plans are those of the exact queries the pages run, not of
querysets rebuilt by hand.
"""

import json
import os
import re
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sinkdash.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from runs.models import Delivery, FailureGroup, Job, JobRun, Project, Run  # noqa: E402


def fixtures() -> dict:
    newest = Run.objects.order_by("-id").first()
    oldest = Run.objects.order_by("id").first()
    project = Project.objects.order_by("-run_count", "id").first()
    job = Job.objects.filter(project=project).order_by("-run_count", "id").first()
    job_run = JobRun.objects.filter(job=job).order_by("-last_received_at", "-id").first()
    ids = Run.objects.order_by("id").values_list("id", flat=True)
    failed_ids = Run.objects.filter(status="failed").order_by("id").values_list("id", flat=True)
    mid = Run.objects.filter(id__gte=(oldest.id + newest.id) // 2).order_by("id").first()
    group = FailureGroup.objects.order_by("-count", "id").first()
    lister = Run.objects.filter(api_name__startswith="list").order_by("-id").first()
    unique = Run.objects.filter(api_name="product-details").order_by("-id").first()
    code = "script-timeout"
    api = lister.api_name
    delivery = Delivery.objects.order_by("-id").values_list("id", flat=True).first()

    def at(moment) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S")

    return {
        "runs": Run.objects.count(),
        "newest_id": newest.id,
        "oldest_id": oldest.id,
        "oldest_run_id": oldest.run_id,
        "deep_cursor": list(ids[50:51])[0] + 1 if Run.objects.count() > 51 else newest.id + 1,
        "deep_failed_cursor": (list(failed_ids[50:51]) or [newest.id])[0] + 1,
        "project_id": project.project_id,
        "project_pk": project.pk,
        "job_id": job.job_id,
        "job_pk": job.pk,
        "job_run_id": job_run.job_run_id,
        "job_run_pk": job_run.pk,
        "job_run_total": job_run.total,
        "api": api,
        "error_code": code,
        "failure_group": group.pk,
        "run_list_api": lister.run_id,
        "run_unique_params": unique.run_id,
        "since_all": at(oldest.first_received_at - timedelta(minutes=1)),
        "until_all": at(newest.first_received_at + timedelta(minutes=1)),
        "since_mid": at(mid.first_received_at),
        "until_mid": at(mid.first_received_at + timedelta(seconds=1)),
        "latest_delivery_id": delivery,
        "failure_groups": FailureGroup.objects.count(),
        "job_runs": JobRun.objects.count(),
    }


# --- Plans --------------------------------------------------------------------------------------


def _plan(sql: str, params) -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            rows = cursor.fetchall()
            depth: dict[int, int] = {0: -1}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + detail)
            return lines
        cursor.execute("EXPLAIN " + sql, params)
        return [row[0] for row in cursor.fetchall()]


_RUN_TABLES = r"(?:runs_run|runs_delivery)"


def flags(plan: list[str], vendor: str) -> list[str]:
    """What the brief asks to flag: a SCAN over the runs (or deliveries) table, a temporary sort."""
    touches = any(re.search(rf"(?:SEARCH|SCAN|on) {_RUN_TABLES}\b", line) for line in plan)
    if not touches:
        return []  # a sort of a few project, job or tally rows is not a finding
    found = []
    for line in plan:
        text = line.strip()
        if text.startswith("Presorted Key:"):
            continue
        if vendor == "sqlite":
            if re.match(rf"SCAN {_RUN_TABLES}\b", text):
                found.append(text)
            if "TEMP B-TREE" in text:
                found.append(text)
        else:
            if re.search(rf"Seq Scan on {_RUN_TABLES}\b", text):
                found.append(re.sub(r"^-> +| +\(cost=.*$", "", text))
            if re.match(r"(-> +)?(Incremental )?Sort +\(", text):
                found.append("Sort")
            if text.startswith("Sort Key:") and found and found[-1] == "Sort":
                found[-1] = f"Sort ({text})"
    return found


def _full_ms(sql: str, params) -> float:
    """The query run again to its last row: execute() alone returns at the first row on SQLite, so a
    query that reads many rows would look cheaper than it is."""
    with connection.cursor() as cursor:
        start = time.perf_counter()
        cursor.execute(sql, params)
        cursor.fetchall()
        return (time.perf_counter() - start) * 1000


def explain(fixture_path: str) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from routes import routes

    fx = json.loads(Path(fixture_path).read_text())
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    out = []
    for label, path in routes(fx):
        captured: list[tuple[str, object, float]] = []

        def record(execute, sql, params, many, context):
            start = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                captured.append((sql, params, time.perf_counter() - start))

        with connection.execute_wrapper(record):
            response = client.get(path)
            if response.streaming:
                b"".join(response.streaming_content)
        queries = []
        for sql, params, seconds in captured:
            if not sql.lstrip().upper().startswith("SELECT") or "django_session" in sql:
                continue
            plan = _plan(sql, params)
            queries.append({"sql": sql, "ms": _full_ms(sql, params), "execute_ms": seconds * 1000, "plan": plan,
                            "flags": flags(plan, connection.vendor)})  # fmt: skip
        out.append({"label": label, "path": path, "status": response.status_code, "queries": queries})
    return {"vendor": connection.vendor, "routes": out}


# --- Recount --------------------------------------------------------------------------------------


def _rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def recount() -> dict:
    """Counter rows against GROUP BY counts of the runs themselves (plain SQL: a million runs do not
    come into Python)."""
    wrong: list[str] = []

    def compare(name: str, stored: Counter, counted: Counter) -> None:
        for key in set(stored) | set(counted):
            if stored[key] != counted[key]:
                wrong.append(f"{name} {key}: stored {stored[key]}, counted {counted[key]}")

    runs = _rows("SELECT count(*) FROM runs_run")[0][0]
    by_project = _rows("SELECT project_id, status, count(*) FROM runs_run GROUP BY project_id, status")
    compare("project runs", Counter(dict(_rows("SELECT id, run_count FROM runs_project"))),
            sum((Counter({p: n}) for p, _, n in by_project), Counter()))  # fmt: skip
    compare("project failed", Counter(dict(_rows("SELECT id, failed_count FROM runs_project"))),
            Counter({p: n for p, s, n in by_project if s == "failed"}))  # fmt: skip
    by_job = _rows("SELECT job_id, status, count(*) FROM runs_run WHERE job_id IS NOT NULL GROUP BY job_id, status")
    counted_jobs, counted_failed = Counter(), Counter()
    for j, s, n in by_job:
        counted_jobs[j] += n
        if s == "failed":
            counted_failed[j] += n
    compare("job runs", Counter(dict(_rows("SELECT id, run_count FROM runs_job"))), counted_jobs)
    compare("job failed", Counter(dict(_rows("SELECT id, failed_count FROM runs_job"))), counted_failed)
    stored_jr, counted_jr = Counter(), Counter()
    for pk, total, completed, failed, other in _rows("SELECT id, total, completed, failed, other FROM runs_jobrun"):
        stored_jr.update({(pk, "total"): total, (pk, "completed"): completed, (pk, "failed"): failed, (pk, "other"): other})
    for pk, s, n in _rows("SELECT job_run_id, status, count(*) FROM runs_run WHERE job_run_id IS NOT NULL GROUP BY job_run_id, status"):
        counted_jr[(pk, "total")] += n
        counted_jr[(pk, s if s in ("completed", "failed") else "other")] += n
    compare("job run", +stored_jr, +counted_jr)
    groups = _rows("SELECT failure_group_id, count(*) FROM runs_run WHERE failure_group_id IS NOT NULL GROUP BY failure_group_id")
    compare("failure group", Counter(dict(_rows("SELECT id, count FROM runs_failuregroup"))), Counter(dict(groups)))
    compare("failure days (sum per group)", Counter(dict(_rows("SELECT group_id, sum(count) FROM runs_failureday GROUP BY group_id"))),
            Counter(dict(groups)))  # fmt: skip
    compare("failure jobs (per group and job)",
            +Counter({(g, j): n for g, j, n in _rows("SELECT group_id, job_id, count FROM runs_failurejob")}),
            Counter({(g, j): n for g, j, n in _rows(
                "SELECT failure_group_id, job_id, count(*) FROM runs_run"
                " WHERE failure_group_id IS NOT NULL AND job_id IS NOT NULL GROUP BY failure_group_id, job_id")}))  # fmt: skip
    compare("tally (per project and status)",
            Counter({(p, s): n for p, s, n in _rows("SELECT project_id, status, sum(count) FROM runs_runtally GROUP BY project_id, status")}),
            Counter({(p, s): n for p, s, n in by_project}))  # fmt: skip
    deliveries = _rows("SELECT count(*) FROM runs_delivery")[0][0]
    failed = sum(n for _, s, n in by_project if s == "failed")
    ungrouped = _rows("SELECT count(*) FROM runs_run WHERE status = 'failed' AND failure_group_id IS NULL")[0][0]
    return {
        "runs": runs,
        "deliveries": deliveries,
        "failed": failed,
        "failed_without_group": ungrouped,
        "failure_groups": len(groups),
        "job_runs": len(stored_jr) // 4,
        "mismatches": sorted(wrong)[:50],
        "mismatch_count": len(wrong),
    }


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "fixtures":
        result = fixtures()
    elif command == "explain":
        result = explain(sys.argv[2])
    elif command == "recount":
        result = recount()
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result, default=str))
