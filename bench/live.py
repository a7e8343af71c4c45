"""Live: the time from a delivery's 2xx to its row being in an open /runs/ page's DOM.

Debian's Chromium through Playwright (never a downloaded browser), signed in with the session of a
real sign-in, /runs/ open; deliveries posted one at a time to /api/sink, each waited for as the
link to its run (`a[href="/runs/<run id>/"]`, how templates/runs/list.html marks a row) before the
next. Target (issue 5): median under 1 s.
"""

import statistics
import time
from urllib.parse import quote

from common import Site, dataset, fleet_bodies, machine, machine_line, rerun_command, say, table, write_section
from importing import timed_import

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TARGET_MEDIAN_S = 1.0


def measure(site: Site, deliveries: int, workers: int, seed: int) -> dict:
    from playwright.sync_api import sync_playwright

    server = site.server(workers)
    client = server.signed_in()
    sender = server.client()
    bodies = fleet_bodies(deliveries, seed)
    delays, statuses = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": name, "value": value, "url": server.base}
                                 for name, value in client.cookies.items()])  # fmt: skip
            page = context.new_page()
            page.goto(server.base + "/runs/")
            page.wait_for_selector("#live-runs", state="attached")
            if "/accounts/login/" in page.url:
                raise RuntimeError("the browser was not signed in")
            for run_id, raw in bodies:
                status, _ = sender.post_sink(raw)
                acknowledged = time.perf_counter()
                statuses.append(status)
                page.wait_for_selector(f'a[href="/runs/{quote(run_id)}/"]', state="attached", timeout=30_000)
                delays.append(time.perf_counter() - acknowledged)
        finally:
            browser.close()
    server.stop()
    return {"delays": delays, "statuses": statuses}


def main(args, site: Site | None = None) -> None:
    at = machine()
    workers = args.workers or (2 if args.database_url else 1)
    own = site is None
    if own:
        site = Site(f"live-{'pg' if args.database_url else 'sqlite'}", args.database_url).setup()
    try:
        if own:
            timed_import(site, [dataset(args.small, args.seed).path])
        runs = site.run_count()
        say(f"live: {args.deliveries} deliveries into an open /runs/ page ({runs:,} runs stored, {site.label()})")
        figures = measure(site, args.deliveries, workers, args.seed)
    finally:
        if own and not args.keep:
            site.drop()
        else:
            site.stop_servers()
    delays = sorted(figures["delays"])
    median, worst = statistics.median(delays), delays[-1]
    p90 = delays[int(len(delays) * 0.9) - 1]
    say(f"  median {median * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, worst {worst * 1000:.0f} ms")
    ok = median < TARGET_MEDIAN_S
    statuses = sorted(set(figures["statuses"]))
    lines = [
        f"## Live ({site.label()})",
        "",
        machine_line(at),
        "",
        f"{len(delays)} deliveries posted one at a time to /api/sink of a server ({workers} process(es)) holding "
        f"{runs:,} runs, with /runs/ open in headless Chromium ({CHROMIUM}, Playwright), signed in; each delay runs "
        "from the sink's 2xx to the run's row being in the page's DOM. The page polls once a second "
        "(runs/assets/sinkdash/app.js), so about half a second of the median is the wait for the next tick.",
        "",
        table(["deliveries", "median", "p90", "worst", "sink statuses"],
              [[len(delays), f"{median * 1000:.0f} ms", f"{p90 * 1000:.0f} ms", f"{worst * 1000:.0f} ms",
                ", ".join(map(str, statuses))]]),  # fmt: skip
        "",
        f"**Target: median under {TARGET_MEDIAN_S:.0f} s — {'met' if ok else 'not met'}** "
        f"({median * 1000:.0f} ms).",
        "",
        # On its own, live loads --small runs; `all` measures it on the large imported database.
        f"Rerun: `{rerun_command(['live' if own else args.part, *args.argv_extra])}`",
    ]
    write_section(f"live-{site.kind}", "\n".join(lines), args.report)
