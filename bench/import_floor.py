"""The floor for import: the least a durable bulk load can do, with no framework and no ORM.

    import_floor.py DB.sqlite3 FILE.jsonl [BATCH [CACHE_MIB CHECKPOINT_PAGES]]

Reads the JSONL, parses each line for apiInfo.runId, and inserts (run_id, raw body) with
`executemany`, one transaction per BATCH lines, into a WAL SQLite file with synchronous=NORMAL
(sinkdash's settings). run_id is UNIQUE, as a receiver must be idempotent. bench/importing.py gives
it the importer's batch size, page cache and checkpoint interval (runs/importer.py), so the floor
differs from the importer only in the work it leaves out. Prints one JSON line: rows and seconds.
"""

import json
import sqlite3
import sys
import time
from itertools import islice


def main(db: str, path: str, batch: int = 5000, cache_mib: int = 2, checkpoint_pages: int = 1000) -> dict:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
    conn.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
    conn.execute("CREATE TABLE IF NOT EXISTS run (id INTEGER PRIMARY KEY, run_id TEXT UNIQUE, raw BLOB)")
    rows = 0
    started = time.perf_counter()
    with open(path, "rb") as lines:
        while chunk := list(islice(lines, batch)):
            values = [(json.loads(line)["apiInfo"]["runId"], line.rstrip(b"\n")) for line in chunk]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO run (run_id, raw) VALUES (?, ?)", values)
            conn.execute("COMMIT")
            rows += len(values)
    seconds = time.perf_counter() - started
    conn.close()
    return {"rows": rows, "seconds": seconds}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))))
