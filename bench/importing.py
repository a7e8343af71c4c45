"""Import: `manage.py import_runs` of an N-line JSONL into a fresh database, its runs per second
and peak memory, against the floor (bench/import_floor.py: bare sqlite3 executemany of the same
rows), then every counter recounted in SQL. A second reference, bench/import_schema_floor.py, times
bare sqlite3 inserting the rows sinkdash itself stores into its own schema, indexes and all: what
storing costs before any of sinkdash's Python.

Target (issue 5): >= 20,000 runs/s with peak memory under 300 MB, counters right at the end.
Peak memory is the importer process's peak resident set plus its reading process's (each its own
VmHWM, printed by `import_runs -v 2`; wait4's maximum, what `/usr/bin/time -v` prints, is the
larger of the two and counts in the reader the importer's memory that it forked from).
CPU time is reported per run for each process at work (the importer's own, printed by
`import_runs -v 2`; the reading process's, wait4's total less that; a local PostgreSQL server's,
from /proc), with the rates those leave room for: they show where a target lies beyond this
machine.
"""

import ast
import functools
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from common import (
    CLOCK_TICKS, PY, ROOT, Dataset, Site, dataset, machine, machine_line, process_stat, rerun_command, say, table,
    write_section,
)  # fmt: skip

TARGET_RUNS_PER_S = 20_000
TARGET_RSS_MB = 300


@functools.cache
def importer_tuning() -> list[str]:
    """The importer's batch size, SQLite page cache (MiB) and checkpoint interval (pages), from
    runs/importer.py, as the floors' arguments: a floor run with other settings measures the
    settings as well as the work. Read from the source, since importing it needs Django set up."""
    names = ("BATCH_SIZE", "SQLITE_CACHE_MIB", "SQLITE_CHECKPOINT_PAGES")
    tree = ast.parse((ROOT / "runs" / "importer.py").read_text())
    found = {
        target.id: ast.literal_eval(node.value)
        for node in tree.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name) and target.id in names
    }  # fmt: skip
    return [str(found[name]) for name in names]


def _waited(command: list[str], env: dict, out: Path, time_limit: float | None = None) -> dict:
    """Run a command to its end (or SIGTERM at the time limit); seconds, exit status, its own peak
    RSS, and the CPU time of it and the children it waited for."""
    with open(out, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)  # fmt: skip
    started = time.perf_counter()
    stopped = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time_limit and not stopped and time.perf_counter() - started > time_limit:
            say(f"  time limit of {time_limit:.0f} s reached: stopping it (batches committed so far stay)")
            os.kill(process.pid, signal.SIGTERM)
            stopped = True
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": seconds, "exit": process.returncode, "max_rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime, "stopped": stopped,
            "output": out.read_text(errors="replace")[-2000:]}  # fmt: skip


def postgres_cpu_s() -> float | None:
    """CPU seconds PostgreSQL's processes on this machine have used: each live process's own, and
    the postmaster's reaped children's (a backend that ended meanwhile, such as the importer's).
    None when no PostgreSQL server runs here (a remote one)."""
    stats = {int(path.parent.name): process_stat(path) for path in Path("/proc").glob("[0-9]*/stat")}
    servers = {pid: stat[1] for pid, stat in stats.items() if stat and stat[0] == "postgres"}
    if not servers:
        return None
    ticks = 0
    for fields in servers.values():
        postmaster = int(fields[1]) not in servers  # its children's time is counted by it
        ticks += sum(int(value) for value in fields[11:15 if postmaster else 13])
    return ticks / CLOCK_TICKS


def timed_import(site: Site, paths: list[Path], time_limit: float | None = None) -> dict:
    before = site.run_count()
    say(f"import_runs {' '.join(p.name for p in paths)} into {site.label()} ({before:,} runs before)")
    server_before = postgres_cpu_s() if site.kind == "postgresql" else None
    result = _waited([PY, "manage.py", "import_runs", "-v", "2", *map(str, paths)], site.env,
                     site.data_dir / "import.log", time_limit)  # fmt: skip
    if server_before is not None:  # what the server did for the import, on the same cores
        result["server_cpu_s"] = postgres_cpu_s() - server_before
    # The import's memory is the importer's and its reading process's (runs.readahead), added
    # up: wait4's figure is the larger of the two. A stopped import prints neither; wait4's then.
    peaks = re.search(r"Peak memory: (\d+) MB in this process, (\d+) MB in its reading process", result["output"])
    if peaks:
        result["importer_rss_mb"], result["reader_rss_mb"] = map(int, peaks.groups())
        result["max_rss_mb"] = result["importer_rss_mb"] + result["reader_rss_mb"]
    cpu = re.search(r"CPU time: ([\d.]+) s in this process", result["output"])
    if cpu:  # wait4 counted the reading process, which the importer waits for, in the import's
        result["importer_cpu_s"] = float(cpu.group(1))
        result["reader_cpu_s"] = result["cpu_s"] - result["importer_cpu_s"]
    added = site.run_count() - before
    result.update(runs_before=before, runs_added=added, runs_per_s=added / result["seconds"])
    imported = [line for line in result["output"].splitlines() if line.startswith("Imported:")]
    result["summary"] = imported[-1] if imported else ""
    if result["exit"] != 0 and not result["stopped"]:
        raise RuntimeError(f"import_runs failed ({result['exit']}):\n{result['output']}")
    say(f"  {added:,} runs in {result['seconds']:.1f} s = {result['runs_per_s']:,.0f} runs/s, "
        f"peak RSS {result['max_rss_mb']:.0f} MB")  # fmt: skip
    return result


def floor(data: Dataset, work: Path) -> dict:
    db = work / "floor.sqlite3"
    for stale in work.glob("floor.sqlite3*"):
        stale.unlink()
    say(f"floor: sqlite3 executemany of {data.runs:,} rows")
    result = _waited([PY, str(ROOT / "bench" / "import_floor.py"), str(db), str(data.path), *importer_tuning()],
                     dict(os.environ), work / "floor.log")  # fmt: skip
    if result["exit"] != 0:
        raise RuntimeError(result["output"])
    figures = json.loads(result["output"].strip().splitlines()[-1])
    result.update(rows=figures["rows"], runs_per_s=figures["rows"] / result["seconds"])
    say(f"  {figures['rows']:,} rows in {result['seconds']:.1f} s = {result['runs_per_s']:,.0f} rows/s")
    for stale in work.glob("floor.sqlite3*"):
        stale.unlink()
    return result


def schema_floor(data: Dataset) -> dict:
    """bench/import_schema_floor.py on a freshly migrated SQLite database of its own."""
    empty = Site("import-schema-floor")
    empty.manage("migrate", "--noinput", "-v", "0")
    say(f"schema floor: bare sqlite3 executemany of sinkdash's run and delivery rows, {data.runs:,} runs")
    try:
        result = _waited([PY, str(ROOT / "bench" / "import_schema_floor.py"), str(empty.path), str(data.path),
                          *importer_tuning()], dict(os.environ), empty.data_dir / "schema-floor.log")  # fmt: skip
        if result["exit"] != 0:
            raise RuntimeError(result["output"])
        figures = json.loads(result["output"].strip().splitlines()[-1])
    finally:
        empty.drop()
    result.update(rows=figures["rows"], insert_seconds=figures["seconds"], runs_per_s=figures["rows"] / figures["seconds"])
    say(f"  {figures['rows']:,} rows inserted in {figures['seconds']:.1f} s = {result['runs_per_s']:,.0f} rows/s")
    return result


def main(args, keep: bool = False) -> Site | None:
    """Returns the imported site when `keep` (bench/run.py all reuses it as the large database)."""
    at = machine()
    site = Site(f"import-{'pg' if args.database_url else 'sqlite'}", args.database_url).setup()
    try:
        data = dataset(args.runs, args.seed)
        imported = timed_import(site, [data.path], args.max_import_seconds)
        floor_figures = floor(data, site.data_dir)
        schema_figures = schema_floor(data)
        say("recounting every counter in SQL")
        started = time.perf_counter()
        counts = site.django("inspect_db.py", "recount", timeout=1800)
        recount_s = time.perf_counter() - started
        size = site.size_bytes()
        say(f"  {counts['mismatch_count']} mismatches ({recount_s:.0f} s)")
        _report(args, at, site, data, imported, floor_figures, schema_figures, counts, size)
        site.import_figures = imported
        site.size_after_import = size
        if keep:
            return site
    except BaseException:
        site.drop()
        raise
    if not args.keep:
        site.drop()
    return None


def _cpu_lines(imported: dict, schema_figures: dict, site: Site) -> list[str]:
    """Where the import's CPU went, per run, and the rates that leaves room for on this machine."""
    if "reader_cpu_s" not in imported or not imported["runs_added"]:
        return []
    per_run = lambda seconds: seconds / imported["runs_added"] * 1e6  # noqa: E731
    storing, reading = per_run(imported["importer_cpu_s"]), per_run(imported["reader_cpu_s"])
    # On PostgreSQL the storing process waits for most of what the server does for it, so a run
    # costs about its own CPU and the server's one after the other (pipelined statements and the
    # server's background writers overlap the storing a little: hence "about").
    server = per_run(imported["server_cpu_s"]) if "server_cpu_s" in imported else 0.0
    cores = os.cpu_count() or 1
    where = f"{storing:.0f} µs in the storing process, {reading:.0f} µs in its reading process"
    one_process = "so at most"
    if server:
        where += f", {server:.0f} µs in PostgreSQL's processes"
        one_process = "and waits for most of the server's work, so about"
    elif site.kind == "postgresql":
        where += " (PostgreSQL's not known: the server is not on this machine)"
    total = storing + server + reading
    return [
        f"- CPU a run: {where}; {total:.0f} µs in all, start-up included. One process stores, {one_process} "
        f"{1e6 / (storing + server):,.0f} runs/s even with reading free; {cores} cores busy all the time, at most "
        f"{cores * 1e6 / total:,.0f}. Bare storing into the schema (the table's last row) took "
        f"{1e6 / schema_figures['runs_per_s']:.0f} µs a run.",
    ]


def _report(args, at, site, data, imported, floor_figures, schema_figures, counts, size) -> None:
    rate, rss = imported["runs_per_s"], imported["max_rss_mb"]
    ratio = rate / floor_figures["runs_per_s"]
    reached = imported["runs_added"]
    complete = reached == data.runs
    rate_ok = rate >= TARGET_RUNS_PER_S
    rss_ok = rss < TARGET_RSS_MB
    counters_ok = counts["mismatch_count"] == 0 and counts["runs"] == counts["deliveries"] == reached
    verdict = lambda ok: "**met**" if ok else "**not met**"  # noqa: E731
    rows = [
        ["import_runs", f"{reached:,}", f"{imported['seconds']:.1f} s", f"{rate:,.0f}", f"{rss:.0f} MB"],
        ["floor: sqlite3 executemany (run_id, raw)", f"{floor_figures['rows']:,}", f"{floor_figures['seconds']:.1f} s",
         f"{floor_figures['runs_per_s']:,.0f}", f"{floor_figures['max_rss_mb']:.0f} MB"],
        ["sqlite3 executemany of sinkdash's run and delivery rows into its schema (inserts timed, parsing not)",
         f"{schema_figures['rows']:,}", f"{schema_figures['insert_seconds']:.1f} s",
         f"{schema_figures['runs_per_s']:,.0f}", "—"],
    ]  # fmt: skip
    lines = [
        f"## Import ({site.label()})",
        "",
        machine_line(at),
        "",
        f"`manage.py import_runs` of a {data.runs:,}-line JSONL ({data.bytes / 2**20:,.0f} MB, bodies from "
        f"`runs.samples.Fleet(seed={args.seed})`, {data.bytes / data.runs:,.0f} bytes a body on average) into a fresh "
        f"{site.label()} database." + ("" if complete else
        f" **The import was stopped at the {args.max_import_seconds:.0f} s time limit after {reached:,} runs**; "
        "the rate is over what was reached."),
        "",
        table(["", "runs", "time", "runs/s", "peak RSS"], rows),
        "",
        f"- Rate: {rate:,.0f} runs/s against the target of >= {TARGET_RUNS_PER_S:,}: {verdict(rate_ok)}"
        + ("" if rate_ok else f" (x{TARGET_RUNS_PER_S / rate:.1f} short)") + ".",
        f"- Peak memory: {rss:.0f} MB against the target of < {TARGET_RSS_MB} MB: {verdict(rss_ok)}"
        + (f" (the importer's {imported['importer_rss_mb']} MB and its reading process's {imported['reader_rss_mb']} MB, "
           "each at its own peak)" if "reader_rss_mb" in imported else "") + ".",
        f"- importer / floor: **{ratio:.3f}** (the floor inserts only run_id and the raw body, no parsing "
        "beyond runId, no counters, no failure grouping).",
        f"- Storing alone: bare sqlite3 writes sinkdash's own run and delivery rows into its schema, every index "
        f"included, at {schema_figures['runs_per_s']:,.0f} rows/s (the rows built beforehand with sinkdash's parser, "
        f"one project, no counters, no look-ups of existing runs): the importer reaches "
        f"{rate / schema_figures['runs_per_s']:.2f} of that with everything else it does.",
        *_cpu_lines(imported, schema_figures, site),
        "- Counters after the import, recounted in SQL (bench/inspect_db.py recount): "
        + ("**all right**" if counters_ok else f"**{counts['mismatch_count']} mismatches**")
        + f": {counts['runs']:,} runs, {counts['deliveries']:,} deliveries, {counts['job_runs']:,} job runs "
        f"(sum of totals = runs with a job run), {counts['failed']:,} failed runs in {counts['failure_groups']:,} "
        f"failure groups (group counts, per-day sums and per-job counts equal the failed runs per group; "
        f"{counts['failed_without_group']} failed runs without a group), tallies equal runs per project and status.",
        f"- Database size after the import: {size / 2**20:,.0f} MB = {size / max(reached, 1):,.0f} bytes/run "
        "(every delivery's raw body is kept beside the parsed run).",
    ]
    if counts["mismatches"]:
        lines += ["", "Mismatches (first 50):", "", "```", *counts["mismatches"], "```"]
    lines += ["", f"Rerun: `{rerun_command(['import', *args.argv_extra])}`"]
    write_section(f"import-{site.kind}", "\n".join(lines), args.report)
