"""Pages and API as the data grows: every route of bench/routes.py timed on a 2k-run database and
on a large one (1M runs by default), both served at once and asked in alternation, so the ratio is
measured side by side under the same machine load. Then the plan of every query each route makes,
from both databases (bench/inspect_db.py explain), and the size of the database per run.

Target (issue 5): no page or read grows by more than x1.5 from 2k to 1M runs.
"""

import json
import re
import time

from common import (
    Site, dataset, machine, machine_line, median_ms, ms, rerun_command, say, table, write_section,
)  # fmt: skip
from importing import timed_import
from routes import routes

TARGET_RATIO = 1.5
OK_STATUSES = {200, 204}


def build(name: str, args, runs: int) -> Site:
    site = Site(name, args.database_url).setup()
    try:
        data = dataset(runs, args.seed)
        site.import_figures = timed_import(site, [data.path], args.max_import_seconds)
        site.size_after_import = site.size_bytes()
    except BaseException:
        site.drop()
        raise
    return site


def _fixtures(site: Site) -> dict:
    fx = site.django("inspect_db.py", "fixtures")
    (site.data_dir / "fixtures.json").write_text(json.dumps(fx))
    return fx


def time_routes(small: Site, big: Site, fx_small: dict, fx_big: dict, args) -> list[dict]:
    """Median of `args.repeat` GETs of each route on each site, alternating small/big request by
    request (order swapped every round); a route that gets slow stops after `args.route_budget`
    seconds with at least 3 samples each."""
    a, b = small.servers[0].signed_in(), big.servers[0].signed_in()
    results = []
    for (label, path_a), (_, path_b) in zip(routes(fx_small), routes(fx_big), strict=True):
        samples_a, samples_b, statuses, bodies = [], [], set(), [b"", b""]
        for client, path in ((a, path_a), (b, path_b)):  # warm-up: template and query caches
            statuses.add(client.get(path)[0])
        started = time.perf_counter()
        for i in range(args.repeat):
            pair = [(a, path_a, samples_a, 0), (b, path_b, samples_b, 1)]
            for client, path, samples, which in pair if i % 2 == 0 else pair[::-1]:
                status, body, seconds = client.get(path)
                statuses.add(status)
                samples.append(seconds)
                bodies[which] = body
            if i >= 2 and time.perf_counter() - started > args.route_budget:
                break
        row = {"label": label, "small_ms": median_ms(samples_a), "big_ms": median_ms(samples_b),
               "worst_big_ms": max(samples_b) * 1000, "n": len(samples_a), "statuses": sorted(statuses),
               "rows": (shown(bodies[0]), shown(bodies[1])), "kb": (len(bodies[0]) / 1024, len(bodies[1]) / 1024)}  # fmt: skip
        row["ratio"] = row["big_ms"] / row["small_ms"]
        results.append(row)
        flag = "" if row["ratio"] <= TARGET_RATIO else f"  <-- grows x{row['ratio']:.1f}"
        bad = "" if set(statuses) <= OK_STATUSES else f"  statuses {sorted(statuses)}"
        say(f"  {label:48} {ms(row['small_ms']):>9} {ms(row['big_ms']):>9}  x{row['ratio']:.2f}{flag}{bad}")
    return results


def shown(body: bytes) -> int:
    """How many rows an answer holds: table rows of a page, items of a JSON list, lines of a CSV."""
    head = body.lstrip()[:1]
    if head in (b"{", b"["):
        return body.count(b'"run_id"') or body.count(b'"id"')
    if b"<html" in body[:500].lower() or b"<tr" in body:
        return body.count(b"<tr")
    return max(body.count(b"\n") - 1, 0)


# --- Plans ----------------------------------------------------------------------------------------

_SQLITE_RUNS = re.compile(r"^\s*((?:SEARCH|SCAN) (?:runs_run|runs_delivery)\b.*)$")
_PG_RUNS = re.compile(
    r"((?:Parallel )?(?:Seq Scan|Index Scan(?: Backward)?|Index Only Scan(?: Backward)?|Bitmap Heap Scan)"
    r"(?: using \w+)? on (?:runs_run|runs_delivery)\b|Bitmap Index Scan on (?:run_|runs_run_|runs_delivery_|delivery_)\w+)"
)


def access_paths(plan: list[str], vendor: str) -> list[str]:
    """How a plan reaches the runs (and deliveries) table: the index or the scan."""
    found = []
    for line in plan:
        match = (_SQLITE_RUNS if vendor == "sqlite" else _PG_RUNS).search(line)
        if match:
            found.append(match.group(1).strip())
    return list(dict.fromkeys(found))


def explain_both(small: Site, big: Site) -> tuple[dict, dict]:
    say("explaining every query of every route (in-process, Django test client)")
    plans = []
    for site in (small, big):
        started = time.perf_counter()
        plans.append(site.django("inspect_db.py", "explain", str(site.data_dir / "fixtures.json"), timeout=1800))
        say(f"  {site.name}: {time.perf_counter() - started:.0f} s")
    return plans[0], plans[1]


def plan_findings(plans_small: dict, plans_big: dict) -> tuple[list[list], list[str]]:
    """Per route: each query that reaches the runs (or deliveries) table, how, and its time at both
    sizes; then, once per distinct SQL and slowest first, every flagged plan in full (a SCAN over
    runs_run, a temporary B-tree or a Sort in a query on runs_run). Sorts of the few project, job,
    job run and tally rows are not flagged."""
    vendor = plans_big["vendor"]
    rows, flagged = [], {}
    for route_s, route_b in zip(plans_small["routes"], plans_big["routes"], strict=True):
        cells, route_flags = [], set()
        for i, q in enumerate(route_b["queries"]):
            paths = access_paths(q["plan"], vendor)
            if not paths:
                continue
            q_small = route_s["queries"][i] if i < len(route_s["queries"]) else None
            small_ms = q_small["ms"] if q_small and q_small["sql"] == q["sql"] else float("nan")
            cells.append(f"{' + '.join(f'`{p}`' for p in paths)} {small_ms:.1f}→{q['ms']:.1f}")
            if q["flags"]:
                route_flags.update(q["flags"])
                entry = flagged.setdefault(q["sql"], {"q": q, "small_ms": small_ms, "routes": []})
                entry["routes"].append(f"{route_b['label']} (`{route_b['path']}`)")
                if q["ms"] > entry["q"]["ms"]:
                    entry.update(q=q, small_ms=small_ms)
        rows.append([route_b["label"], len(route_b["queries"]), "<br>".join(cells) or "(none)",
                     "; ".join(sorted(route_flags))])  # fmt: skip
    details = []
    for entry in sorted(flagged.values(), key=lambda e: -e["q"]["ms"]):
        q = entry["q"]
        details += [
            f"**{q['ms']:.1f} ms** at the large size ({entry['small_ms']:.1f} ms at the small one); flagged "
            f"{', '.join(f'`{f}`' for f in q['flags'])}; made by: {', '.join(entry['routes'])}",
            "",
            "```sql",
            _shorten(q["sql"]),
            "```",
            "```",
            *q["plan"],
            "```",
            "",
        ]
    return rows, details


def _shorten(sql: str, limit: int = 900) -> str:
    sql = re.sub(r'SELECT .*? FROM', "SELECT … FROM", sql, count=1, flags=re.S)
    return sql if len(sql) <= limit else sql[:limit] + " …"


# --- The benchmark ----------------------------------------------------------------------------------


def main(args, big: Site | None = None) -> None:
    at = machine()
    kind = "pg" if args.database_url else "sqlite"
    workers = args.workers or (2 if args.database_url else 1)
    say(f"pages: {args.small:,} runs against {args.runs:,} runs, {workers} server process(es)")
    small = build(f"pages-small-{kind}", args, args.small)
    own_big = big is None
    try:
        if own_big:
            big = build(f"pages-big-{kind}", args, args.runs)
        if small.kind == "postgresql":
            # Autovacuum would have analysed a table this size by the time anyone reads it.
            for site in (small, big):
                site.scalar_exec("ANALYZE")
        fx_small, fx_big = _fixtures(small), _fixtures(big)
        small.server(workers)
        big.server(workers)
        say(f"timing {len(routes(fx_small))} routes, median of up to {args.repeat} each "
            f"({fx_small['runs']:,} runs | {fx_big['runs']:,} runs)")  # fmt: skip
        timings = time_routes(small, big, fx_small, fx_big, args)
        small.stop_servers()
        big.stop_servers()
        plans_small, plans_big = explain_both(small, big)
        _report(args, at, small, big, fx_small, fx_big, timings, plans_small, plans_big, workers)
    finally:
        small.drop() if not args.keep else small.stop_servers()
        if own_big:
            big.drop() if not args.keep else big.stop_servers()
        else:
            big.stop_servers()


def _report(args, at, small, big, fx_small, fx_big, timings, plans_small, plans_big, workers) -> None:
    n_small, n_big = fx_small["runs"], fx_big["runs"]
    over = [t for t in timings if t["ratio"] > TARGET_RATIO]
    bad_status = [t for t in timings if not set(t["statuses"]) <= OK_STATUSES]
    rows = [[t["label"], ms(t["small_ms"]), ms(t["big_ms"]), f"x{t['ratio']:.2f}" + (" **over**" if t["ratio"] > TARGET_RATIO else ""),
             t["n"], ms(t["worst_big_ms"]), f"{t['rows'][0]} / {t['rows'][1]}", f"{t['kb'][0]:.0f} / {t['kb'][1]:.0f}"]
            for t in timings]  # fmt: skip
    plan_rows, details = plan_findings(plans_small, plans_big)
    imp_s, imp_b = small.import_figures, big.import_figures
    worst = max(timings, key=lambda t: t["ratio"])
    reached = "" if n_big >= args.runs else (
        f" **The large database reached {n_big:,} runs, not the {args.runs:,} asked for** (import stopped at the "
        f"{args.max_import_seconds:.0f} s limit).")  # fmt: skip
    lines = [
        f"## Pages and API as the data grows ({big.label()})",
        "",
        machine_line(at),
        "",
        f"Two databases loaded through `manage.py import_runs` from the same seeded `runs.samples.Fleet` stream "
        f"(the small one is the first {n_small:,} bodies of the large one): **{n_small:,}** and **{n_big:,}** runs."
        + reached,
        f"Both served at once by `python -m uvicorn sinkdash.asgi:application` ({workers} process(es) each, as "
        f"`make run` serves), signed in through /accounts/login/, and asked in alternation (one request to each "
        f"per round, order swapped every round, keep-alive HTTP/1.1 from one client): the median of up to "
        f"{args.repeat} requests per route and size (fewer for a route that takes over {args.route_budget:.0f} s), "
        f"after one warm-up request each. The same kinds of rows are asked about at both sizes (busiest project "
        f"and job, that job's newest job run, the oldest run...: bench/routes.py, bench/inspect_db.py fixtures).",
        "",
        f"**Target: no page or read grows by more than x{TARGET_RATIO} — "
        + (f"met**: the largest growth is x{worst['ratio']:.2f} ({worst['label']})." if not over else
           f"not met**: {len(over)} of {len(timings)} routes grow by more than x{TARGET_RATIO}; the worst is "
           f"{worst['label']} at x{worst['ratio']:.2f} ({ms(worst['small_ms'])} → {ms(worst['big_ms'])})."),
        "",
        table(["route", f"{n_small:,} runs", f"{n_big:,} runs", "ratio", "n", f"worst at {n_big:,}",
               "rows shown", "KB"], rows),
        "",
        "\"rows shown\" counts `<tr>` elements of a page (header rows included), items of a JSON answer and "
        "lines of a CSV, at each size; where it differs, part of the growth is a fuller page (at 2k runs some "
        "filters match fewer than a page of runs), not a slower query — the per-query times below tell the two "
        "apart.",
        "",
    ]
    if bad_status:
        lines += ["Routes that answered other than 200/204: "
                  + ", ".join(f"{t['label']} {t['statuses']}" for t in bad_status), ""]  # fmt: skip
    lines += [
        f"Database size: {small.size_after_import / 2**20:,.1f} MB at {n_small:,} runs = "
        f"{small.size_after_import / n_small:,.0f} bytes/run; {big.size_after_import / 2**20:,.0f} MB at {n_big:,} "
        f"runs = {big.size_after_import / n_big:,.0f} bytes/run (the empty migrated database: "
        f"{big.baseline_bytes / 2**20:.1f} MB; each run keeps its delivery's raw body beside the parsed columns).",
        f"Loading them: {imp_s['runs_per_s']:,.0f} runs/s for {n_small:,}; {imp_b['runs_per_s']:,.0f} runs/s "
        f"for {imp_b['runs_added']:,} ({imp_b['seconds']:.0f} s, peak RSS {imp_b['max_rss_mb']:.0f} MB).",
        f"At {n_big:,} runs: {fx_big['job_runs']:,} job runs, {fx_big['failure_groups']:,} failure groups.",
        "",
        f"### Query plans ({big.label()})",
        "",
        "Every SELECT each route makes, recorded while serving it in-process and explained on each database "
        "(`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL). Per route: the number of queries, then each "
        "query that reaches runs_run or runs_delivery with how it does (index or scan) and its time at both sizes "
        "(in-process, ms: the query run again to its last row right after the request, so with a warm cache), and the flags the issue asks for (a SCAN over runs_run, a temporary B-tree "
        "or a Sort, in a query on those tables). "
        "A `SCAN runs_run` that walks newest first and stops at the page's LIMIT is cheap when matches are "
        "dense; the time columns show which flags are real.",
        "",
        table(["route", "queries", f"queries on runs_run / runs_delivery: plan, ms at {n_small:,}→{n_big:,}", "flags"], plan_rows),
        "",
    ]
    if details:
        lines += ["#### Flagged plans, in full (large database)", "", *details]
    else:
        lines += ["No query scans runs_run or sorts in a temporary B-tree.", ""]
    lines += [f"Rerun: `{rerun_command(['pages', *args.argv_extra])}`"]
    write_section(f"pages-{big.kind}", "\n".join(lines), args.report)
