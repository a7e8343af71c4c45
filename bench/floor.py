"""The floor for ingest: the least a durable receiver can do, with no framework and no ORM.

It checks the bearer token, parses the JSON, reads apiInfo.runId and commits the raw body to SQLite
(WAL, synchronous=NORMAL) before answering. Serve it exactly as sinkdash is served:
    FLOOR_DB=/tmp/floor.sqlite3 FLOOR_TOKEN=t uvicorn bench.floor:app --port 8101
"""

import json
import os
import sqlite3
import threading

TOKEN = os.environ.get("FLOOR_TOKEN", "t").encode()
DB = os.environ.get("FLOOR_DB", "/tmp/sinkdash-floor.sqlite3")
_local = threading.local()


def _db() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS delivery (id INTEGER PRIMARY KEY, run_id TEXT, raw BLOB)")
        _local.conn = conn
    return conn


async def _answer(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    if headers.get(b"authorization") != b"Bearer " + TOKEN:
        return await _answer(send, 401, b'{"detail":"Unauthorized"}')
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    raw = b"".join(chunks)
    try:
        run_id = json.loads(raw)["apiInfo"]["runId"]
    except (ValueError, KeyError, TypeError):
        return await _answer(send, 400, b'{"detail":"bad body"}')
    conn = _db()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO delivery (run_id, raw) VALUES (?, ?)", (run_id, raw))
    conn.execute("COMMIT")
    await _answer(send, 201, b'{"ok":true}')
