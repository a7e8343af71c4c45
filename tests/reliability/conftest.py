"""Real server processes on a database of their own, senders, and a recount of every counter.

The load and fault tests talk to sinkdash the way Intuned does: over HTTP, to uvicorn processes
started here. They never use pytest-django's test database: a subprocess server could not see it
(its transaction is the test's). Each test gets a fresh database of the suite's kind instead (a
SQLite file in tmp_path, or a new database on the PostgreSQL server of DATABASE_URL), migrated by
`manage.py migrate` in a subprocess, and checked afterwards with plain SQL, not the ORM.

Figures the tests measure are printed and written to data/reliability/<name>-<database>.json,
which RELIABILITY.md summarises.
"""

import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SUITE_DATABASE_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = SUITE_DATABASE_URL.startswith(("postgres://", "postgresql://"))
DB_KIND = "postgresql" if ON_POSTGRES else "sqlite"
FIGURES_DIR = ROOT / "data" / "reliability"

SINK_TOKEN = "reliability-sink-" + secrets.token_urlsafe(16)
API_TOKEN = "reliability-api-" + secrets.token_urlsafe(16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(name: str, **figures) -> dict:
    """Print the figures and keep them for RELIABILITY.md."""
    figures = {"test": name, "database": DB_KIND, "at": datetime.now(UTC).isoformat(), **figures}
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{name}-{DB_KIND}.json").write_text(json.dumps(figures, indent=2, default=str))
    print(f"\nRELIABILITY {name} [{DB_KIND}]: {json.dumps(figures, default=str)}")
    return figures


# --- Databases -------------------------------------------------------------------------------


class Database:
    """A database the test owns: its URL for the server, and plain SQL for the checks."""

    def __init__(self, url: str, kind: str, path: Path | None = None):
        self.url, self.kind, self.path = url, kind, path

    def connect(self):
        if self.kind == "sqlite":
            import sqlite3

            return sqlite3.connect(self.path, timeout=30, isolation_level=None)
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        conn = self.connect()
        try:
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.close()

    def value(self, sql: str, params: tuple = ()):
        return self.rows(sql, params)[0][0]


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def postgres_admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def create_database(tmp_path: Path, kind: str = DB_KIND, server_url: str = SUITE_DATABASE_URL) -> Database:
    if kind == "sqlite":
        path = tmp_path / "db" / "sinkdash.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return Database(f"sqlite:///{path}", "sqlite", path)
    name = f"sinkdash_rel_{secrets.token_hex(4)}"
    with postgres_admin(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Database(_with_dbname(server_url, name), "postgresql")


def drop_database(db: Database, server_url: str = SUITE_DATABASE_URL) -> None:
    if db.kind != "postgresql":
        return
    name = urlsplit(db.url).path.lstrip("/")
    with postgres_admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(db: Database, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="sinkdash.settings",
        DATABASE_URL=db.url,
        SINKDASH_DATA_DIR=str(data_dir),
        SINKDASH_SINK_TOKEN=SINK_TOKEN,
        SINKDASH_API_TOKEN=API_TOKEN,
        SINKDASH_SECRET_KEY="reliability-" + "k" * 50,
        SINKDASH_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, capture_output=True, check=False, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@dataclass
class Site:
    """One fresh, migrated database and the environment a server needs to serve it."""

    db: Database
    data_dir: Path
    env: dict[str, str]
    tmp: Path
    servers: list["Server"] = field(default_factory=list)

    def server(self, port: int | None = None, **kwargs) -> "Server":
        server = Server(self.env, port or free_port(), self.tmp / f"server-{len(self.servers)}.log", **kwargs)
        self.servers.append(server)
        return server

    def logs(self) -> str:
        return "".join(s.log_text() for s in self.servers)


@pytest.fixture
def site(tmp_path) -> Iterable[Site]:
    db = create_database(tmp_path)
    data_dir = tmp_path / "data"
    env = server_env(db, data_dir)
    site = Site(db, data_dir, env, tmp_path)
    try:
        migrate(env)
        yield site
    finally:
        for server in site.servers:
            server.stop()
        drop_database(db)


# --- Servers ---------------------------------------------------------------------------------


class Server:
    """`python -m uvicorn sinkdash.asgi:application` on 127.0.0.1:port, as `make run` serves it."""

    def __init__(self, env, port: int, log_path: Path, preexec_fn: Callable | None = None, env_over=None):
        self.env = {**env, **(env_over or {})}
        self.port, self.log_path, self.preexec_fn = port, log_path, preexec_fn
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Server":
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [PYTHON, "-m", "uvicorn", "sinkdash.asgi:application", "--host", "127.0.0.1",
                 "--port", str(self.port), "--lifespan", "off", "--no-access-log", "--log-level", "info"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # preexec_fn (only the disk-full test sets one) runs before any sender thread starts.
                preexec_fn=self.preexec_fn, start_new_session=True,  # noqa: PLW1509
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                status, _, _ = request("GET", self.port, "/healthz", timeout=2)
                if status == 200:
                    # Another suite running at once may have taken the port first: then the 200
                    # came from its server, and this one has exited.
                    time.sleep(0.2)
                    if self.process.poll() is not None:
                        raise AssertionError(f"server exited ({self.process.returncode}):\n{self.log_text()}")
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not answer within {timeout}s:\n{self.log_text()}")

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, whatever was in flight is cut off."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def request(method: str, port: int, path: str, body: bytes | None = None, headers=None, timeout=30,
            conn: http.client.HTTPConnection | None = None):  # fmt: skip
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        # Header names are case-insensitive; an ASGI app sends them lower-case.
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        if own:
            conn.close()


def assert_no_server_errors(log: str) -> None:
    """Nothing escaped as a 500: neither Django's nor uvicorn's unhandled-exception report."""
    for marker in ("Internal Server Error", "Exception in ASGI application"):
        assert marker not in log, log[-3000:]


def sink_headers(token: str = SINK_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def api_get(port: int, path: str):
    status, _, body = request("GET", port, path, headers={"Authorization": f"Bearer {API_TOKEN}"})
    return status, json.loads(body) if body else None


@dataclass
class Sent:
    index: int
    run_id: str
    status: int | None  # None: no answer (connection refused, reset, timed out)
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    seconds: float = 0.0


def send_all(ports: list[int], bodies: list[tuple[str, bytes]], senders: int = 32,
             stop: threading.Event | None = None, timeout: float = 60) -> list[Sent]:  # fmt: skip
    """POST every (run_id, body) to the sink from `senders` threads, each on its own keep-alive
    connection to one of the ports (round-robin). Every body is sent once; a failure to connect is
    recorded as status None, not retried, so the caller knows exactly what was acknowledged."""
    results: list[Sent | None] = [None] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def worker(n: int) -> None:
        port = ports[n % len(ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None or (stop is not None and stop.is_set()):
                break
            run_id, body = bodies[i]
            started = time.monotonic()
            try:
                status, headers, answer = request("POST", port, "/api/sink", body, sink_headers(), conn=conn)
                results[i] = Sent(i, run_id, status, answer, headers, time.monotonic() - started)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                results[i] = Sent(i, run_id, None, seconds=time.monotonic() - started)
        conn.close()

    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(worker, range(senders)))
    return [r for r in results if r is not None]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- Bodies ----------------------------------------------------------------------------------

PROJECTS = [("11111111-aaaa-4aaa-8aaa-111111111111", "shop"), ("22222222-bbbb-4bbb-8bbb-222222222222", "crm")]
# Three job runs: two of one job, one of another project's job.
JOB_RUNS = [(0, "nightly", "jr-nightly-1"), (0, "nightly", "jr-nightly-2"), (1, "sync", "jr-sync-1")]
ERRORS = [
    ("script-execution-exception", "TimeoutError: locator('.price') not visible after {n}ms on https://shop.example/p/{m}"),
    ("script-timeout", "Execution Timed Out after {n}s"),
    ("auth-check-failed", "Auth check failed: login form still shown on https://crm.example/u/{m}"),
]  # fmt: skip


def make_body(rng: random.Random, run_id: str) -> bytes:
    """One finished Run in one of the two shapes, in one of the three job runs."""
    project, job, job_run = JOB_RUNS[rng.randrange(len(JOB_RUNS))]
    project_id, project_name = PROJECTS[project]
    roll = rng.random()
    params = {"url": f"https://shop.example/p/{rng.randint(1, 10**6)}", "page": rng.randint(1, 50)}
    code, template = rng.choice(ERRORS)
    message = template.format(n=rng.randint(1, 90000), m=rng.randint(1, 10**6))
    if rng.random() < 0.5:  # documented shape
        if roll < 0.2:
            result = {"status": "failed", "error": code, "message": message, "statusCode": 500}
        else:
            result = {"status": "completed", "result": {"price": rng.randint(1, 9999) / 100, "title": "Trail runner"},
                      "statusCode": 200}  # fmt: skip
        info = {"name": rng.choice(["product-details", "list-products"]), "parameters": params,
                "result": result, "runId": run_id}  # fmt: skip
    else:  # newer shape
        ended = datetime(2026, 11, 30, 8, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 86400))
        info = {"name": rng.choice(["product-details", "list-products"]), "parameters": params, "runId": run_id,
                "result": None, "started_at": (ended - timedelta(seconds=12)).isoformat(),
                "ended_at": ended.isoformat(), "error": None, "reason": None,
                "trace_url": f"https://files.example/{run_id}/trace.zip"}  # fmt: skip
        if roll < 0.2:
            info["error"] = {"code": code, "message": message, "category": "execution"}
        elif roll < 0.25:
            info["reason"] = {"type": "terminated", "code": "job-run-terminated", "message": "Max runs exceeded"}
        else:
            info["result"] = {"output": {"price": rng.randint(1, 9999) / 100}, "extendedPayloads": []}
    body = {"apiInfo": info, "workspaceId": "ws-reliability", "project": {"id": project_id, "name": project_name},
            "projectJob": {"id": job}, "projectJobRun": {"id": job_run}}  # fmt: skip
    return json.dumps(body).encode()


def load_plan(distinct: int, repeat_rate: float = 0.1, seed: int = 6, prefix: str = "load") -> list[tuple[str, bytes]]:
    """`distinct` runs, one body each, plus repeat_rate of them sent again with the same bytes
    (as Intuned resends when an answer is lost), shuffled so a repeat may race its original."""
    rng = random.Random(seed)
    plan = [(f"{prefix}-{i:06d}", None) for i in range(distinct)]
    plan = [(run_id, make_body(rng, run_id)) for run_id, _ in plan]
    plan += rng.sample(plan, int(distinct * repeat_rate))
    rng.shuffle(plan)
    return plan


# --- Checks ----------------------------------------------------------------------------------


def _moment(value) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def recount(db: Database) -> dict:
    """Every counter compared with a recount from the runs table; returns the figures.
    Fails with the first counter that differs."""
    runs = db.rows(
        "SELECT id, project_id, job_id, job_run_id, status, failure_group_id, first_received_at,"
        " delivery_count FROM runs_run"
    )
    per_project, failed_project = Counter(), Counter()
    per_job, failed_job = Counter(), Counter()
    per_job_run: dict[int, Counter] = {}
    per_group, per_group_day, per_group_job, tallies = Counter(), Counter(), Counter(), Counter()
    for _, project, job, job_run, status, group, first, _ in runs:
        failed = status == "failed"
        per_project[project] += 1
        failed_project[project] += failed
        if job:
            per_job[job] += 1
            failed_job[job] += failed
        if job_run:
            column = status if status in ("completed", "failed") else "other"
            per_job_run.setdefault(job_run, Counter())[column] += 1
        moment = _moment(first)
        if group:
            per_group[group] += 1
            per_group_day[(group, moment.date().isoformat())] += 1
            if job:
                per_group_job[(group, job)] += 1
        tallies[(project, moment.replace(minute=0, second=0, microsecond=0), status)] += 1

    for pk, run_count, failed_count in db.rows("SELECT id, run_count, failed_count FROM runs_project"):
        assert (run_count, failed_count) == (per_project[pk], failed_project[pk]), f"project {pk}"
    for pk, run_count, failed_count in db.rows("SELECT id, run_count, failed_count FROM runs_job"):
        assert (run_count, failed_count) == (per_job[pk], failed_job[pk]), f"job {pk}"
    for pk, total, completed, failed, other in db.rows("SELECT id, total, completed, failed, other FROM runs_jobrun"):
        c = per_job_run.get(pk, Counter())
        expected = (c.total(), c["completed"], c["failed"], c["other"])
        assert (total, completed, failed, other) == expected, f"job run {pk}"
    groups = db.rows("SELECT id, count FROM runs_failuregroup")
    for pk, count in groups:
        assert count == per_group[pk], f"failure group {pk}: {count} != {per_group[pk]}"
    days = Counter()
    for group, day, count in db.rows("SELECT group_id, day, count FROM runs_failureday"):
        if count:
            days[(group, str(day))] = count
    assert days == +per_group_day, "failure days"
    group_jobs = Counter({(g, j): n for g, j, n in db.rows("SELECT group_id, job_id, count FROM runs_failurejob") if n})
    assert group_jobs == +per_group_job, "failure jobs"
    stored_tallies = Counter()
    for project, hour, status, count in db.rows("SELECT project_id, hour, status, count FROM runs_runtally"):
        if count:
            stored_tallies[(project, _moment(hour), status)] = count
    assert stored_tallies == +tallies, "run tallies"
    delivered = Counter(dict(db.rows("SELECT run_id, COUNT(*) FROM runs_delivery GROUP BY run_id")))
    for pk, *_, delivery_count in runs:
        assert delivered[pk] == delivery_count, f"run {pk}: {delivered[pk]} deliveries, counter {delivery_count}"
    return {
        "runs": len(runs),
        "deliveries": sum(delivered.values()),
        "projects": len(per_project),
        "job_runs": len(per_job_run),
        "failure_groups": len(groups),
        "failed_runs": sum(failed_project.values()),
    }


def delivery_counts(db: Database) -> dict[str, int]:
    return dict(db.rows("SELECT run_id, delivery_count FROM runs_run"))


# --- A PostgreSQL cluster of the test's own, to stop and start -----------------------------


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


class Cluster:
    """A throwaway PostgreSQL cluster on a free port, owned by the unprivileged `postgres` user
    (PostgreSQL refuses to run as root), like the one .ci/run starts."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="sinkdash-rel-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.url = f"postgres://sinkdash@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, check=False, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def init(self) -> "Cluster":
        self._run(str(self.bin / "initdb"), "-D", f"{self.dir}/data", "-U", "sinkdash", "-A", "trust", "-E", "UTF8")
        return self.start()

    def start(self) -> "Cluster":
        self._run(str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data", "-l", f"{self.dir}/server.log", "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data", "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data", "-m", "immediate",
                        "stop"], capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)
