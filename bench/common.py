"""What every benchmark needs: a database of its own (a SQLite file, or a fresh PostgreSQL database
on the server of --database-url), `manage.py` in a subprocess with that environment, uvicorn served
the way `make run` serves it, a signed-in HTTP client, bench data from runs.samples, and the
BENCHMARKS.md section writer.

Benchmarks talk to sinkdash only through subprocesses and 127.0.0.1 HTTP, never by importing Django
here, so one harness process can drive SQLite and PostgreSQL sites side by side.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = str(_VENV_PY) if _VENV_PY.exists() else sys.executable
DATA = ROOT / "bench-data"
REPORT = ROOT / "BENCHMARKS.md"

SINK_TOKEN = "bench-sink-" + "t" * 24
SECRET_KEY = "bench-secret-" + "k" * 50
USER, PASSWORD = "bench", "bench-" + "p" * 20


def say(*parts) -> None:
    print(*parts, flush=True)


# --- The machine and the code measured ---------------------------------------------------------


def machine() -> dict:
    """Noted at the start of each benchmark: the machine is shared, so load is part of the figure."""
    load = os.getloadavg()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": cpus,
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "commit": code_version(),
    }


def code_version() -> str:
    marker = ROOT / ".commit"  # a snapshot made with `git archive` carries its commit here
    if marker.exists():
        return marker.read_text().strip()[:12] + " (snapshot)"
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "runs", "sinkdash", "templates"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return head + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_line(m: dict) -> str:
    return (
        f"{m['date']}, commit {m['commit']}; `nproc` {m['nproc']}, load average at start {m['load']} "
        f"(a shared machine: other engineers' tests and servers run beside the benchmark, so absolute "
        f"times are noisy; ratios are measured side by side); Python {m['python']}, SQLite {m['sqlite']}."
    )


def rerun_command(argv: list[str]) -> str:
    return "make bench BENCH_ARGS='" + " ".join(argv) + "'"


# --- Figures -----------------------------------------------------------------------------------


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000 if samples else float("nan")


def ms(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def process_stat(path: Path) -> tuple[str, list[str]] | None:
    """A Linux /proc/<pid>/stat (or task/<tid>/stat) file as the command's name and the fields
    after it (so ppid is [1], utime and stime [11] and [12], the reaped children's [13] and [14],
    in clock ticks), or None when the process has ended."""
    try:
        text = path.read_text()
    except OSError:
        return None
    name, _, rest = text.partition(" (")[2].rpartition(")")
    return name, rest.split()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Sites: a database and the environment that serves it ---------------------------------------


def _with_dbname(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


class Site:
    """A fresh database named for the benchmark and everything `manage.py` needs to use it.

    SQLite: bench-data/<name>/sinkdash.sqlite3. PostgreSQL: database sinkdash_bench_<name> on the
    server of `server_url`, dropped by `drop()`."""

    def __init__(self, name: str, server_url: str = ""):
        self.name = name
        self.kind = "postgresql" if server_url.startswith(("postgres://", "postgresql://")) else "sqlite"
        self.server_url = server_url
        self.data_dir = DATA / name
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        if self.kind == "sqlite":
            self.path = self.data_dir / "sinkdash.sqlite3"
            self.url = f"sqlite:///{self.path}"
        else:
            self.path = None
            self.dbname = f"sinkdash_bench_{re.sub(r'[^a-z0-9_]', '_', name.lower())}"
            self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            self._admin(f'CREATE DATABASE "{self.dbname}"')
            self.url = _with_dbname(server_url, self.dbname)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))},
            "DJANGO_SETTINGS_MODULE": "sinkdash.settings",
            "DATABASE_URL": self.url,
            "SINKDASH_DATA_DIR": str(self.data_dir),
            "SINKDASH_SINK_TOKEN": SINK_TOKEN,
            "SINKDASH_SECRET_KEY": SECRET_KEY,
            "SINKDASH_LOG_LEVEL": "WARNING",
            "SINKDASH_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "PYTHONUNBUFFERED": "1",
        }
        self.servers: list[Server] = []
        self.baseline_bytes = 0

    def label(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql)

    def manage(self, *args: str, timeout: float = 600, check: bool = True, **env) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env={**self.env, **env}, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def setup(self) -> "Site":
        """Migrate, create the bench user, and note the empty database's size."""
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("createsuperuser", "--noinput", "--username", USER, "--email", "bench@example.invalid",
                    DJANGO_SUPERUSER_PASSWORD=PASSWORD)  # fmt: skip
        self.baseline_bytes = self.size_bytes()
        return self

    def django(self, script: str, *args: str, timeout: float = 900) -> dict:
        """Run bench/<script> (a Django-using helper) with this site's environment; its last stdout
        line is JSON."""
        done = subprocess.run(
            [PY, str(ROOT / "bench" / script), *args], cwd=ROOT, env=self.env, capture_output=True,
            text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"bench/{script} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def scalar(self, sql: str):
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.path, timeout=60)
            try:
                return conn.execute(sql).fetchone()[0]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql).fetchone()[0]

    def scalar_exec(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)

    def run_count(self) -> int:
        return self.scalar("SELECT count(*) FROM runs_run")

    def size_bytes(self) -> int:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.path, timeout=60)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            return sum(p.stat().st_size for p in self.data_dir.glob("sinkdash.sqlite3*"))
        return self.scalar("SELECT pg_database_size(current_database())")

    def server(self, workers: int = 1) -> "Server":
        server = Server(self, free_port(), workers)
        self.servers.append(server)
        return server.start()

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []

    def drop(self) -> None:
        self.stop_servers()
        if self.kind == "postgresql":
            self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Server:
    """`python -m uvicorn sinkdash.asgi:application` on 127.0.0.1, as `make run` starts it."""

    def __init__(self, site: Site, port: int, workers: int):
        self.site, self.port, self.workers = site, port, workers
        self.log_path = site.data_dir / f"server-{port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> "Server":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [PY, "-m", "uvicorn", "sinkdash.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers), "--lifespan", "off", "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=self.site.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}):\n{self.log_path.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    # With several workers, give each a moment to finish importing Django.
                    time.sleep(1.0 if self.workers > 1 else 0)
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the workers go with it
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass

    def client(self) -> "Client":
        return Client(self.port)

    def signed_in(self) -> "Client":
        client = self.client()
        client.sign_in()
        return client


# --- A signed-in HTTP client ---------------------------------------------------------------------


_CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


class Client:
    """Keep-alive HTTP/1.1 to one server, carrying cookies; `get` times the whole response."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt == 2:
                    raise
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key.strip()] = rest.split(";", 1)[0]
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), data

    def get(self, path: str) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        status, _, data = self.request("GET", path)
        return status, data, time.perf_counter() - start

    def sign_in(self) -> None:
        """The real sign-in form: GET it for the CSRF cookie and token, POST the credentials."""
        status, _, page = self.request("GET", "/accounts/login/")
        match = _CSRF_INPUT.search(page)
        if status != 200 or not match:
            raise RuntimeError(f"sign-in page: {status}")
        form = urlencode({"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": match.group(1).decode()})
        status, headers, _ = self.request(
            "POST", "/accounts/login/", form.encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": f"http://127.0.0.1:{self.port}/accounts/login/"},
        )  # fmt: skip
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"sign-in failed: {status} {headers.get('location')}")

    def post_sink(self, raw: bytes) -> tuple[int, bytes]:
        status, _, data = self.request(
            "POST", "/api/sink", raw, {"Authorization": f"Bearer {SINK_TOKEN}", "Content-Type": "application/json"}
        )
        return status, data


# --- Bench data ----------------------------------------------------------------------------------


@dataclass
class Dataset:
    path: Path
    runs: int
    bytes: int = field(default=0)


def dataset(runs: int, seed: int = 5) -> Dataset:
    """A JSONL file of `runs` distinct bodies from runs.samples.Fleet (seeded: the 2k file is the
    first 2k lines of the 1M one, same run ids, same projects and jobs). Kept in bench-data/ and
    reused while the generator is unchanged."""
    DATA.mkdir(exist_ok=True)
    stamp = _samples_stamp()
    path = DATA / f"runs-{runs}-seed{seed}-{stamp}.jsonl"
    if path.exists():
        return Dataset(path, runs, path.stat().st_size)
    say(f"generating {runs:,} bodies with runs.samples.Fleet(seed={seed}) -> {path.name}")
    started = time.perf_counter()
    done = subprocess.run(
        [PY, "-c", _GENERATE, str(path), str(runs), str(seed)], cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    say(f"  {time.perf_counter() - started:.1f} s, {path.stat().st_size / 2**20:.0f} MB")
    return Dataset(path, runs, path.stat().st_size)


def fleet_bodies(count: int, seed: int, offset: int = 1000) -> list[tuple[str, bytes]]:
    """(run id, raw body) pairs from runs.samples.Fleet, for posting to a live server: the projects
    and jobs of Fleet(seed), with new run ids (the generator reseeded after the fleet is built)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from runs.samples import Fleet

    fleet = Fleet(seed=seed)
    fleet.rng.seed(seed + offset)
    bodies = []
    for _ in range(count):
        body = fleet.next_body()
        bodies.append((body["apiInfo"]["runId"], json.dumps(body).encode()))
    return bodies


def _samples_stamp() -> str:
    import hashlib

    return hashlib.sha256((ROOT / "runs" / "samples.py").read_bytes()).hexdigest()[:8]


# Bodies spread over the last week (started/ended times only: the importer stamps first receipt).
_GENERATE = """
import sys
from datetime import UTC, datetime, timedelta
from runs.samples import Fleet
path, runs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fleet = Fleet(seed=seed)
start = datetime(2025, 1, 1, tzinfo=UTC)
step = timedelta(days=7) / max(runs, 1)
with open(path + ".part", "wb") as out:
    for i in range(runs):
        out.write(fleet.next_raw(start + step * i) + b"\\n")
import os
os.replace(path + ".part", path)
"""


# --- BENCHMARKS.md ---------------------------------------------------------------------------------


SKELETON = """# Benchmarks

What `make bench` measures (issue 5), with the figures of the last run of each part. Benchmarks are
not part of `make test`. Each section says when and on what it was measured and the exact command
that reruns it; the machine is shared, so absolute times are noisy and the targets are ratios
measured side by side in one run.

<!-- bench:ingest -->
## Ingest against the floor

(Written by the ingest benchmark, bench/ingest.py.)
<!-- /bench:ingest -->

<!-- bench:pages-sqlite -->
<!-- /bench:pages-sqlite -->

<!-- bench:pages-postgresql -->
<!-- /bench:pages-postgresql -->

<!-- bench:import-sqlite -->
<!-- /bench:import-sqlite -->

<!-- bench:import-postgresql -->
<!-- /bench:import-postgresql -->

<!-- bench:live-sqlite -->
<!-- /bench:live-sqlite -->

<!-- bench:live-postgresql -->
<!-- /bench:live-postgresql -->
"""


def write_section(key: str, text: str, report: Path = REPORT) -> None:
    """Replace what lies between <!-- bench:key --> and <!-- /bench:key -->, and nothing else: other
    sections (the ingest one above all) belong to other benchmarks."""
    current = report.read_text() if report.exists() else SKELETON
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        current = head + block + tail
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    report.write_text(current)
    say(f"wrote the {key} section of {report}")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


__all__ = [
    "Client", "Dataset", "PY", "ROOT", "Server", "Site", "dataset", "fleet_bodies", "free_port", "iso", "machine",
    "machine_line", "median_ms", "ms", "rerun_command", "say", "table", "timedelta", "write_section",
]  # fmt: skip
