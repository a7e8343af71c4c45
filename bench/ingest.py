"""Ingest against the floor: sinkdash's sink beside the least a durable receiver can do.

Both are served the same way (uvicorn, the server `make run` uses, same process count) and loaded
in alternating rounds by wrk at 16 connections with ~2 KB documented bodies (distinct run ids,
10% failures, three job runs; bench/ingest.lua). After the rounds the database is checked: every
acknowledged delivery stored, counters equal to a recount. A 1.9 MB body is timed on both too.

    .venv/bin/python bench/run.py ingest [--rounds 3] [--seconds 10] [--database-url postgres://...]
"""

import argparse
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
LUA = str(ROOT / "bench" / "ingest.lua")
RESULT = re.compile(r"RESULT (.*)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, path: str = "/", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


class Server:
    def __init__(self, app: str, env: dict, workers: int):
        self.port = free_port()
        cmd = [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port),
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
        if workers > 1:
            cmd += ["--workers", str(workers)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_up(self.port, "/healthz")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(port: int, token: str, prefix: str, seconds: int) -> dict:
    env = {**os.environ, "PREFIX": prefix, "TOKEN": token}
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", LUA, f"http://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    fields = dict(pair.split("=") for pair in RESULT.search(out).group(1).split())
    return {k: float(v) for k, v in fields.items()}


def post_big(port: int, token: str, n: int = 10) -> list[float]:
    """Seconds per POST of a 1.9 MB body (a scraped page in the result), sequentially."""
    times = []
    html = "<div class='item'>" + "x" * 200 + "</div>"
    payload = html * (1_900_000 // len(html))
    for i in range(n):
        body = json.dumps({
            "apiInfo": {"name": "page", "parameters": {"url": f"https://shop.example/{i}"},
                        "result": {"status": "completed", "result": {"html": payload}, "statusCode": 200},
                        "runId": f"big-{time.time_ns()}-{i}"},
            "workspaceId": "ws", "project": {"id": "proj-bench", "name": "bench"},
            "projectJob": {"id": "nightly"}, "projectJobRun": {"id": "jr-big"},
        }).encode()  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/sink", data=body, method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status in (200, 201), response.status
        times.append(time.perf_counter() - start)
    return times


def check_sinkdash(env: dict, acknowledged: int, prefixes: list[str]) -> dict:
    """Stored runs for the benchmark's prefixes, and every counter against a recount."""
    code = f"""
import json, django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sinkdash.settings")
django.setup()
from django.db.models import Count, Q, Sum
from runs.models import Run, JobRun, FailureGroup, Project, RunTally
prefixes = {prefixes!r}
q = Q()
for p in prefixes:
    q |= Q(run_id__startswith=p + "-")
stored = Run.objects.filter(q).count()
distinct = Run.objects.filter(q).values("run_id").distinct().count()
problems = []
for jr in JobRun.objects.annotate(
        n=Count("runs"), c=Count("runs", filter=Q(runs__status="completed")),
        f=Count("runs", filter=Q(runs__status="failed"))):
    if (jr.total, jr.completed, jr.failed, jr.other) != (jr.n, jr.c, jr.f, jr.n - jr.c - jr.f):
        problems.append(f"job run {{jr.job_run_id}}")
for g in FailureGroup.objects.annotate(n=Count("runs")):
    if g.count != g.n:
        problems.append(f"group {{g.pk}}: {{g.count}} != {{g.n}}")
for p in Project.objects.annotate(n=Count("runs")):
    if p.run_count != p.n:
        problems.append(f"project {{p.project_id}}")
if (RunTally.objects.aggregate(s=Sum("count"))["s"] or 0) != Run.objects.count():
    problems.append("hourly tallies")
print(json.dumps({{"stored": stored, "distinct": distinct, "problems": problems}}))
"""
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["acknowledged"] = acknowledged
    return result


def floor_stored(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM delivery").fetchone()[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench/run.py ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--database-url", default="", help="PostgreSQL for sinkdash (two workers)")
    parser.add_argument("--workers", type=int, default=0, help="default: 1 on SQLite, 2 on PostgreSQL")
    args = parser.parse_args(argv)
    workers = args.workers or (2 if args.database_url else 1)

    work = Path(tempfile.mkdtemp(prefix="sinkdash-bench-ingest-"))
    token = "bench-token"
    database = {"DATABASE_URL": args.database_url} if args.database_url else {}
    env = {**os.environ, "SINKDASH_DATA_DIR": str(work / "data"), "SINKDASH_SINK_TOKEN": token,
           "SINKDASH_LOG_LEVEL": "WARNING", **database}  # fmt: skip
    if not args.database_url:
        env.pop("DATABASE_URL", None)
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    if args.database_url:  # a clean slate, so counters are checked on this run's data alone
        subprocess.run([PY, "manage.py", "flush", "--noinput"], cwd=ROOT, env=env, check=True)
    floor_db = str(work / "floor.sqlite3")
    floor_env = {**os.environ, "FLOOR_DB": floor_db, "FLOOR_TOKEN": token}

    floor = Server("bench.floor:app", floor_env, workers)
    sink = Server("sinkdash.asgi:application", env, workers)
    rounds = {"floor": [], "sinkdash": []}
    prefixes = []
    try:
        for r in range(args.rounds):
            for name, server in (("floor", floor), ("sinkdash", sink)):
                prefix = f"{name[0]}{r}x{time.time_ns() % 10**8}"
                if name == "sinkdash":
                    prefixes.append(prefix)
                rounds[name].append(wrk(server.port, token, prefix, args.seconds))
                print(name, r, rounds[name][-1], flush=True)
        big = {"floor": post_big(floor.port, token), "sinkdash": post_big(sink.port, token)}
    finally:
        sink.stop()
        floor.stop()

    acknowledged = int(sum(r["ok"] for r in rounds["sinkdash"]))
    check = check_sinkdash(env, acknowledged, prefixes)
    summary = {
        "database": "PostgreSQL" if args.database_url else "SQLite",
        "workers": workers,
        "rounds": rounds,
        "rps": {k: statistics.median(r["rps"] for r in v) for k, v in rounds.items()},
        "p50_ms": {k: statistics.median(r["p50_ms"] for r in v) for k, v in rounds.items()},
        "p99_ms": {k: statistics.median(r["p99_ms"] for r in v) for k, v in rounds.items()},
        "server_errors": {k: int(sum(r["server_errors"] for r in v)) for k, v in rounds.items()},
        "big_ms": {k: statistics.median(v) * 1000 for k, v in big.items()},
        "floor_stored": floor_stored(floor_db),
        "check": check,
    }
    summary["ratio"] = summary["rps"]["sinkdash"] / summary["rps"]["floor"]
    print(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
