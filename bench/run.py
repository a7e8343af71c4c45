"""`make bench`: the benchmarks of issue 5, each printing its figures and rewriting its own section
of BENCHMARKS.md.

    bench/run.py pages    pages and API reads at 2k runs and at --runs, query plans, bytes/run
    bench/run.py import   import_runs of a --runs-line JSONL: runs/s, peak memory, the floor, recount
    bench/run.py live     2xx to row-in-DOM for deliveries into an open /runs/ page
    bench/run.py ingest   the sink against the floor app (bench/ingest.py, when present)
    bench/run.py all      import, then pages and live on the imported database, then ingest

bench/import_instructions.py, apart from these, counts the instructions the import's storing
process runs per run (callgrind): a figure the machine's noise does not move, for comparing two
checkouts of the importer.

--database-url postgres://... runs them on a fresh database on that PostgreSQL server (dropped
afterwards), with two server processes; without it, SQLite files under bench-data/.
e.g. make bench BENCH_ARGS='pages --runs 1000000'
"""

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from common import REPORT, say  # noqa: E402

PARTS = ("pages", "import", "live", "ingest", "all")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("part", nargs="?", default="all", choices=PARTS)
    p.add_argument("--runs", type=int, default=1_000_000, help="the large size (default 1,000,000)")
    p.add_argument("--small", type=int, default=2_000, help="the small size of the pages benchmark (default 2,000)")
    p.add_argument("--database-url", default="", help="a PostgreSQL server URL; a fresh database is made on it")
    p.add_argument("--workers", type=int, default=0, help="server processes (default 1 on SQLite, 2 on PostgreSQL)")
    p.add_argument("--repeat", type=int, default=15, help="requests per route and size (median)")
    p.add_argument("--route-budget", type=float, default=20.0, help="seconds a slow route may take (min 3 requests)")
    p.add_argument("--deliveries", type=int, default=50, help="deliveries of the live benchmark")
    p.add_argument("--seed", type=int, default=5, help="runs.samples.Fleet seed")
    p.add_argument("--max-import-seconds", type=float, default=1200.0,
                   help="stop the large import after this long and benchmark the size reached")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the bench databases (bench-data/, sinkdash_bench_*)")
    p.add_argument("--no-ingest", action="store_true", help="all: leave out the ingest benchmark")
    p.add_argument("--report", type=Path, default=REPORT, help="the file to update (default BENCHMARKS.md)")
    return p


def _extra(argv: list[str]) -> list[str]:
    """The options as given, for each section's rerun command: without the part, the report path
    and --no-ingest, which do not change what a part measures."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--report":
            skip = True
        elif a not in PARTS and a != "--no-ingest" and not a.startswith("--report="):
            out.append(a)
    return out


def ingest(args) -> None:
    """The ingest-against-the-floor benchmark lives in bench/ingest.py as main(argv) with options of
    its own: it gets those this parser does not know, and the database and workers."""
    if not (HERE / "ingest.py").exists() or importlib.util.find_spec("ingest") is None:
        say("ingest: bench/ingest.py is not there yet; skipped")
        return
    import ingest as ingest_bench

    argv = list(args.unknown)
    if args.database_url:
        argv += ["--database-url", args.database_url]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    argv += ["--report", str(args.report)]
    ingest_bench.main(argv)


def missing_tools(args) -> list[str]:
    """What this run needs and the machine lacks, each with how to get it. Checked before anything
    starts: `all` imports a million runs before it reaches the live and ingest parts, and a missing
    browser or load generator should not be found out twenty minutes in, as a traceback."""
    import shutil

    from live import CHROMIUM

    missing = []
    if args.part in ("ingest", "all") and not args.no_ingest and shutil.which("wrk") is None:
        missing.append("wrk, the load generator of the ingest benchmark: apt-get install wrk")
    if args.part in ("live", "all") and not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM}, for the live benchmark: apt-get install chromium")
    return missing


def main(argv: list[str]) -> None:
    args, unknown = parser().parse_known_args(argv)
    if unknown and args.part not in ("ingest", "all"):
        parser().error(f"unrecognized arguments: {' '.join(unknown)}")
    if missing := missing_tools(args):
        sys.exit("bench/run.py needs:\n" + "\n".join(f"  - {need}" for need in missing))
    args.unknown = unknown
    args.argv_extra = _extra([a for a in argv if a not in unknown])
    import importing
    import live
    import pages

    if args.part == "pages":
        pages.main(args)
    elif args.part == "import":
        importing.main(args)
    elif args.part == "live":
        live.main(args)
    elif args.part == "ingest":
        ingest(args)
    else:
        big = importing.main(args, keep=True)
        try:
            pages.main(args, big=big)
            live.main(args, site=big)
        finally:
            if not args.keep:
                big.drop()
        if not args.no_ingest:
            ingest(args)


if __name__ == "__main__":
    main(sys.argv[1:])
