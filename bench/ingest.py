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


def _cores() -> int:
    """The cores machine_ticks() adds up: /proc/stat's first line covers every online core,
    whatever this process's affinity."""
    with open("/proc/stat") as stat:
        return sum(1 for line in stat if re.match(r"cpu\d", line))


CORES = _cores()
WARM_UP_SECONDS = 5


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

    def cpu_threads(self) -> list[tuple[int, int, float]]:
        """(process id, thread id, user + system CPU seconds so far) of every thread of the server:
        uvicorn's supervisor and its workers (Linux /proc)."""
        from common import CLOCK_TICKS, process_stat

        threads = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            process = process_stat(stat)
            if process is None:
                continue
            pid, ppid = int(stat.parent.name), int(process[1][1])
            if pid != self.proc.pid and ppid != self.proc.pid:
                continue
            for task in stat.parent.glob("task/[0-9]*/stat"):
                thread = process_stat(task)
                if thread is not None:
                    values = thread[1]
                    threads.append((pid, int(task.parent.name), (int(values[11]) + int(values[12])) / CLOCK_TICKS))
        return threads

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def by_thread(threads: list[tuple[int, int, float]]) -> dict[str, float]:
    """CPU seconds split between the processes' main threads (the event loop: HTTP, the sink's
    checks, the answers) and their other threads (sinkdash's writer; the floor has none)."""
    split = {"event loop": 0.0, "other threads": 0.0}
    for pid, tid, seconds in threads:
        split["event loop" if tid == pid else "other threads"] += seconds
    return split


def by_process(threads: list[tuple[int, int, float]]) -> dict[int, float]:
    """CPU seconds by process."""
    spent: dict[int, float] = {}
    for pid, _, seconds in threads:
        spent[pid] = spent.get(pid, 0.0) + seconds
    return spent


def machine_ticks() -> tuple[int, int]:
    """All CPU time of the machine so far and its idle part (Linux /proc/stat, every core)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values), values[3] + values[4]  # idle + iowait


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


def ingest_parts(database_url: str) -> dict:
    """bench/ingest_parts.py in a fresh site: microseconds per delivery without HTTP."""
    from common import Site

    site = Site("ingest-parts-pg" if database_url else "ingest-parts", database_url)
    site.manage("migrate", "--noinput", "-v", "0")
    out = subprocess.run([PY, str(ROOT / "bench" / "ingest_parts.py")], cwd=ROOT, env=site.env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    site.drop()
    return json.loads(out.strip().splitlines()[-1])


def floor_stored(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM delivery").fetchone()[0]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="bench/run.py ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--database-url", default="",
                        help="also measure sinkdash on a fresh database on this PostgreSQL server (two workers)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="default: 1 on SQLite, 2 on PostgreSQL")
    parser.add_argument("--no-report", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--report", type=Path, default=None, help="the file to update (default BENCHMARKS.md)")
    args = parser.parse_args(argv)
    from common import REPORT, machine, write_section

    started = machine()
    summaries = [measure(args, "")]
    if args.database_url:
        summaries.append(measure(args, args.database_url))
    if not args.no_report:
        rerun = list(argv or [])  # the section's rerun command, without where this run wrote it
        if "--report" in rerun:
            del rerun[rerun.index("--report") : rerun.index("--report") + 2]
        write_section("ingest", report(summaries, started, rerun), args.report or REPORT)
    return summaries


HISTORY = Path(__file__).with_name("ingest_history.md")


def tried() -> str:
    """What was tried for the target, session by session: the paragraph of bench/ingest_history.md
    (after its opening comment), kept there rather than here since every session adds to it."""
    return " ".join(HISTORY.read_text().split("-->", 1)[1].split())


def report(summaries: list[dict], m: dict, argv: list[str]) -> str:
    from common import machine_line, rerun_command

    lines = [
        "## Ingest against the floor",
        "",
        machine_line(m),
        "",
        "The floor (bench/floor.py) is a bare ASGI app: bearer check, `json.loads`, `apiInfo.runId`, the raw"
        " body committed to SQLite (WAL, synchronous=NORMAL) before answering. sinkdash and the floor are"
        " served the same way (uvicorn, same process count) and loaded in alternating rounds by wrk at 16"
        " connections with ~2 KB documented bodies (distinct run ids, 10% failures, three job runs;"
        f" bench/ingest.lua). Each server first takes one unmeasured round of {WARM_UP_SECONDS} s; the"
        " database is not analysed after it, as a new installation's is not. Figures are medians over the rounds; beside"
        " the ratio, the lowest and highest of each sinkdash round against the floor round before it.",
        "",
        "| database | workers | floor req/s | sinkdash req/s | ratio (per round) | p50 floor / sinkdash | p99 floor / sinkdash"
        " | 5xx | 1.9 MB body, floor / sinkdash |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['database']} | {s['workers']} | {s['rps']['floor']:.0f} | {s['rps']['sinkdash']:.0f} |"
            f" **{s['ratio']:.2f}** ({s['ratio_range'][0]:.2f}-{s['ratio_range'][1]:.2f}) |"
            f" {s['p50_ms']['floor']:.1f} / {s['p50_ms']['sinkdash']:.1f} ms |"
            f" {s['p99_ms']['floor']:.1f} / {s['p99_ms']['sinkdash']:.1f} ms |"
            f" {s['server_errors']['floor']} / {s['server_errors']['sinkdash']} |"
            f" {s['big_ms']['floor']:.0f} / {s['big_ms']['sinkdash']:.0f} ms |"
        )
    lines.append("")
    for s in summaries:
        c = s["check"]
        lines.append(
            f"- {s['database']}: {c['acknowledged']:,} deliveries acknowledged by wrk's count, {c['stored']:,}"
            f" runs stored ({c['distinct']:,} distinct; requests still in flight when a round ends are stored"
            f" but not counted by wrk); counter problems: {', '.join(c['problems']) or 'none'}."
        )
    for s in summaries:
        if s["workers"] > 1:
            by_round = "; ".join(
                f"{f['rps']:,.0f} ({f['busiest_worker']:.0%}) / {k['rps']:,.0f} ({k['busiest_worker']:.0%})"
                for f, k in zip(s["rounds"]["floor"], s["rounds"]["sinkdash"], strict=True)
            )
            lines.append(
                f"- {s['database']}, {s['workers']} workers, round by round, floor / sinkdash req/s with the busiest"
                f" worker's share of its server's CPU: {by_round}. uvicorn's workers accept on one shared socket and"
                " asyncio accepts every connection waiting when it wakes, so in a round near 100% one worker took all"
                " 16 of wrk's connections and that server ran as a single process. Which rounds do is chance; a floor"
                " round served by one process is slower, and raises the ratio of the sinkdash round after it."
            )
    lines += ["", *cpu_lines(summaries)]
    def reached(s: dict) -> bool:
        return s["ratio"] >= 0.5 and s["server_errors"]["sinkdash"] == 0 and not s["check"]["problems"]

    met = all(reached(s) for s in summaries)
    verdicts = "; ".join(f"{s['database']} {s['ratio']:.2f}: {'met' if reached(s) else 'not met'}" for s in summaries)
    lines += [
        "",
        f"**Target: ratio >= 0.5 with no 5xx — {verdicts}.** "
        + ("" if met else tried()),
        "",
        f"Rerun: `{rerun_command(['ingest', *argv])}`"
        + ("" if "--database-url" in argv else " (add `--database-url postgres://...` to measure PostgreSQL too)")
        + ". On PostgreSQL a fresh database is made on that server and dropped afterwards.",
    ]
    return "\n".join(lines)


def cpu_lines(summaries: list[dict]) -> list[str]:
    """Server CPU per request, and (SQLite) where a delivery's time goes without HTTP."""
    lines = [
        "Server CPU per request (all its processes, user + system), the cores the server kept busy (CPU per"
        " request times requests per second) and how busy the whole machine was (both cores: servers, wrk,"
        " PostgreSQL), medians over the wrk rounds. A server that keeps about one core busy is bound by its"
        " interpreter lock (the floor's one thread; sinkdash's event loop and writer threads, whose Python"
        " runs one at a time), and there the ratio is about the ratio of CPU per request. One that keeps"
        " less busy is waiting, not computing: on PostgreSQL each process's one writer stores batch after"
        " batch, and a batch spends most of its time waiting for PostgreSQL's answers. The last two columns"
        " divide the machine's busy time by the requests: what each request cost the whole machine, and the"
        " rate sinkdash would reach at that cost with every core busy, against the floor as measured. It is"
        " a bound, not a forecast: on PostgreSQL no amount of concurrency in sinkdash passes it without a"
        " lower cost per request; on SQLite the interpreter lock stops it well short.",
        "",
        "| database | CPU per request, floor / sinkdash | cores busy, floor / sinkdash | machine busy, floor / sinkdash rounds"
        " | machine CPU per request, floor / sinkdash | sinkdash with every core busy |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        bound = CORES * 1000 / s["machine_ms"]["sinkdash"]
        lines.append(
            f"| {s['database']} | {s['cpu_ms']['floor']:.3f} / {s['cpu_ms']['sinkdash']:.3f} ms"
            f" | {s['cores']['floor']:.2f} / {s['cores']['sinkdash']:.2f}"
            f" | {s['machine_busy']['floor']:.0%} / {s['machine_busy']['sinkdash']:.0%}"
            f" | {s['machine_ms']['floor']:.3f} / {s['machine_ms']['sinkdash']:.3f} ms"
            f" | {bound:,.0f} req/s, {bound / s['rps']['floor']:.2f} of the floor |"
        )
    lines += [
        "",
        "sinkdash's share by thread (median, ms per request): the event loop's main thread (uvicorn's HTTP"
        " parsing and writing, the sink's checks, its answer) and the writer thread (parse, store, commit)."
        " The two share one interpreter lock, so their Python runs one at a time:",
        "",
        "| database | event loop thread | writer thread |",
        "|---|---|---|",
        *(f"| {s['database']} | {s['cpu_ms_threads']['sinkdash']['event loop']:.3f} ms"
          f" | {s['cpu_ms_threads']['sinkdash']['other threads']:.3f} ms |" for s in summaries),
    ]  # fmt: skip
    parts = next((s["parts"] for s in summaries if s["database"] == "SQLite"), None)
    if parts:
        lines += [
            "",
            f"Where a delivery's time goes without HTTP (bench/ingest_parts.py: the same bodies, in transactions of"
            f" {parts['batch']}, about what the group commit takes under 16 connections; SQLite, microseconds per delivery):",
            "",
            "| store | µs per delivery |",
            "|---|---|",
            f"| sinkdash's writer, `runs.ingest.receive_many` (parse, parents, rows, counters, failure groups, commit) | {parts['sinkdash_writer_us']:.0f} |",
            f"| bare sqlite3 writing the same run and delivery rows into sinkdash's schema, with its indexes | {parts['bare_sqlite_us']:.0f} |",
            f"| the same with the secondary indexes of runs_run and runs_delivery dropped | {parts['bare_sqlite_no_indexes_us']:.0f} |",
        ]
    parts = next((s["parts"] for s in summaries if s["database"] == "PostgreSQL"), None)
    if parts:
        backend = parts["backend_cpu_us"]
        lines += [
            "",
            f"On PostgreSQL, sinkdash's writer alone (bench/ingest_parts.py, the same bodies in transactions of"
            f" {parts['batch']}, after a warm-up) stores a delivery in {parts['sinkdash_writer_us']:.0f} µs:"
            f" {1e6 / parts['sinkdash_writer_us']:,.0f} deliveries/s with no HTTP at all. It spends"
            f" {parts['python_cpu_us']:.0f} µs of CPU per delivery in Python"
            + (f" and its PostgreSQL backend {backend:.0f} µs" if backend is not None else "")
            + ". The advisory lock lets one process store at a time, so a second process adds none of this:"
            " it is what the sink can take on PostgreSQL in batches of that size. The sink's writer takes"
            " its batch once it holds the lock, so under load its batches are larger and each delivery's"
            " share of a batch's fixed cost smaller.",
        ]
    return lines


def measure(args, database_url: str) -> dict:
    workers = args.workers or (2 if database_url else 1)

    from common import SINK_TOKEN, Site

    # A fresh database for this run (on PostgreSQL: a new database on that server, dropped after),
    # so counters are checked on this run's data alone and no one's data is touched.
    site = Site("ingest-pg" if database_url else "ingest", database_url)
    site.manage("migrate", "--noinput", "-v", "0")
    work = Path(tempfile.mkdtemp(prefix="sinkdash-bench-ingest-"))
    token = SINK_TOKEN
    env = site.env
    floor_db = str(work / "floor.sqlite3")
    floor_env = {**os.environ, "FLOOR_DB": floor_db, "FLOOR_TOKEN": token}

    floor = Server("bench.floor:app", floor_env, workers)
    sink = Server("sinkdash.asgi:application", env, workers)
    rounds = {"floor": [], "sinkdash": []}
    prefixes = []
    try:
        # One unmeasured round each first. No ANALYZE after it: until session 10 the benchmark ran
        # one, because a fresh PostgreSQL database's first plans scanned runs_run whole until
        # autovacuum's first ANALYZE, a minute in (479-895 req/s against 1,216-1,274 after it). The
        # writer now plans again as runs grows (runs.sql.plan_again_as_runs_double), so a new
        # installation is measured as it is.
        for server in (floor, sink):
            wrk(server.port, token, f"warm{time.time_ns() % 10**8}", WARM_UP_SECONDS)
        for r in range(args.rounds):
            for name, server in (("floor", floor), ("sinkdash", sink)):
                prefix = f"{name[0]}{r}x{time.time_ns() % 10**8}"
                if name == "sinkdash":
                    prefixes.append(prefix)
                threads_before, ticks = server.cpu_threads(), machine_ticks()
                rounds[name].append(wrk(server.port, token, prefix, args.seconds))
                threads_after, requests = server.cpu_threads(), rounds[name][-1]["requests"]
                before, after = by_thread(threads_before), by_thread(threads_after)
                # How wrk's connections fell to the workers: uvicorn's workers accept on one shared
                # socket, and asyncio accepts every connection waiting when it wakes, so in some
                # rounds one worker takes all 16 and the server runs as a single process.
                started = by_process(threads_before)
                spent = [t - started.get(pid, 0.0) for pid, t in by_process(threads_after).items()]
                rounds[name][-1]["busiest_worker"] = max(spent) / sum(spent) if sum(spent) else 1.0
                total, idle = (b - a for a, b in zip(ticks, machine_ticks(), strict=True))
                busy = rounds[name][-1]["machine_busy"] = 1 - idle / total
                # The whole machine's CPU per request (servers, wrk, PostgreSQL): what bounds the
                # rate once nothing is left waiting.
                rounds[name][-1]["machine_ms"] = busy * CORES * 1000 / rounds[name][-1]["rps"]
                for part in after:
                    rounds[name][-1][f"cpu_ms {part}"] = (after[part] - before[part]) * 1000 / requests
                rounds[name][-1]["cpu_ms"] = sum(after.values()) - sum(before.values())
                rounds[name][-1]["cpu_ms"] *= 1000 / requests
                rounds[name][-1]["cores"] = rounds[name][-1]["cpu_ms"] * rounds[name][-1]["rps"] / 1000
                print(name, r, rounds[name][-1], flush=True)
        big = {"floor": post_big(floor.port, token), "sinkdash": post_big(sink.port, token)}
    finally:
        sink.stop()
        floor.stop()

    parts = ingest_parts(database_url)
    acknowledged = int(sum(r["ok"] for r in rounds["sinkdash"]))
    check = check_sinkdash(env, acknowledged, prefixes)
    summary = {
        "database": "PostgreSQL" if database_url else "SQLite",
        "workers": workers,
        "rounds": rounds,
        "rps": {k: statistics.median(r["rps"] for r in v) for k, v in rounds.items()},
        "p50_ms": {k: statistics.median(r["p50_ms"] for r in v) for k, v in rounds.items()},
        "p99_ms": {k: statistics.median(r["p99_ms"] for r in v) for k, v in rounds.items()},
        "server_errors": {k: int(sum(r["server_errors"] for r in v)) for k, v in rounds.items()},
        "big_ms": {k: statistics.median(v) * 1000 for k, v in big.items()},
        "cpu_ms": {k: statistics.median(r["cpu_ms"] for r in v) for k, v in rounds.items()},
        "machine_busy": {k: statistics.median(r["machine_busy"] for r in v) for k, v in rounds.items()},
        "machine_ms": {k: statistics.median(r["machine_ms"] for r in v) for k, v in rounds.items()},
        "cores": {k: statistics.median(r["cores"] for r in v) for k, v in rounds.items()},
        "cpu_ms_threads": {
            k: {part: statistics.median(r[f"cpu_ms {part}"] for r in v) for part in ("event loop", "other threads")}
            for k, v in rounds.items()
        },
        "busiest_worker": {k: [r["busiest_worker"] for r in v] for k, v in rounds.items()},
        "floor_stored": floor_stored(floor_db),
        "check": check,
        "parts": parts,
    }
    summary["ratio"] = summary["rps"]["sinkdash"] / summary["rps"]["floor"]
    # Each round of sinkdash against the floor round just before it: how far the machine's changes
    # of speed move the ratio within one run.
    pairs = [s["rps"] / f["rps"] for f, s in zip(rounds["floor"], rounds["sinkdash"], strict=True)]
    summary["ratio_range"] = [min(pairs), max(pairs)]
    print(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    site.drop()
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main(sys.argv[1:])
