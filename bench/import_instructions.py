"""Instructions the import's storing process runs per run, counted by callgrind: for comparing
two versions of the importer on a machine whose timings move by 15% from one run to the next.

    bench/import_instructions.py [--runs 20000] [CHECKOUT ...]

Each CHECKOUT (a directory holding sinkdash, default this one; another commit can be checked out
beside it with `git worktree add /tmp/before HEAD~1`) imports the first --runs bodies of the
benchmark's file into a fresh SQLite database of its own, under `valgrind --tool=callgrind`.
The reading process is forced on and left out (--trace-children=no): what is counted is the
process that sets the import's pace. An import of one run is counted the same way and taken off,
so start-up (Django, the migrations check) does not count. Instructions are not time: SQLite's
share of the time grows with the database, and memory stalls are not seen. But the same code and
input give the same count to a fraction of a percent, so a change of 2% shows. Needs valgrind
(Debian's package). About a minute for each checkout at 20,000 runs.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import PY, ROOT, dataset, say  # noqa: E402

# Run in the checkout, so that its own runs package is imported.
_DRIVER = """
import os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sinkdash.settings")
import django
django.setup()
import runs.readahead
from django.core.management import call_command
runs.readahead.PROCESS_FROM_BYTES = 0  # the reading process even for a small file
call_command("import_runs", sys.argv[1], verbosity=0)
"""


def instructions(checkout: Path, path: Path, work: Path) -> int:
    data = work / f"data-{checkout.name}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env["SINKDASH_DATA_DIR"] = str(data)
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=checkout, env=env, check=True)
    out = work / "callgrind.out"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--trace-children=no", f"--callgrind-out-file={out}", PY, "-c", _DRIVER, str(path)],
        cwd=checkout, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if collected is None:
        raise RuntimeError(done.stderr)
    return int(collected.group(1))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="bench/import_instructions.py", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("bench/import_instructions.py needs valgrind: apt-get install valgrind")
    data, one = dataset(args.runs, args.seed), dataset(1, args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="sinkdash-instructions-") as work:
        for checkout in args.checkouts:
            checkout = checkout.resolve()
            say(f"{checkout}: callgrind, import_runs of 1 and of {args.runs:,} runs")
            start_up = instructions(checkout, one.path, Path(work))
            total = instructions(checkout, data.path, Path(work))
            result = {"checkout": str(checkout), "runs": args.runs, "instructions": total - start_up,
                      "per_run": (total - start_up) / args.runs, "start_up": start_up}  # fmt: skip
            say(f"  {result['instructions'] / 1e9:.3f} G instructions after start-up, {result['per_run']:,.0f} a run")
            results.append(result)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
