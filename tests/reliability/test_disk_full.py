"""The disk fills up while the sink writes: every answer is a clean 503/507 (never a 2xx for a
delivery that was not stored, never a 500), and everything that was acknowledged is readable
once the data is on a disk with room again.

Two ways to fill it: a 4 MB tmpfs (writes fail with ENOSPC; needs root to mount, as in CI, and is
skipped elsewhere), and RLIMIT_FSIZE on the server process (writes past the limit fail with EFBIG),
which works everywhere."""

import contextlib
import json
import resource
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    ON_POSTGRES,
    Server,
    api_get,
    assert_no_server_errors,
    create_database,
    free_port,
    migrate,
    record,
    recount,
    request,
    server_env,
    sink_headers,
)

DISK_BYTES = 4 * 2**20
BODY_RESULT_CHARS = 40_000

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's data directory; runs in the SQLite pass")


@contextlib.contextmanager
def small_disk(path: Path, kind: str):
    """A directory at path; for "tmpfs", a DISK_BYTES filesystem mounted there."""
    path.mkdir(parents=True)
    if kind != "tmpfs":
        yield
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)], capture_output=True, check=False
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def file_size_limit(limit: int):
    def preexec() -> None:
        # Ignored, SIGXFSZ would kill the process; ignored, the write fails with EFBIG instead.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def body(n: int) -> bytes:
    run_id = f"full-{n:04d}"
    return json.dumps({
        "apiInfo": {"name": "export-contacts", "runId": run_id, "parameters": {"page": n},
                    "result": {"status": "completed", "statusCode": 200,
                               "result": {"n": n, "rows": f"{n:04d}" + "x" * BODY_RESULT_CHARS}}},
        "project": {"id": "proj-full", "name": "full"},
        "projectJob": {"id": "export"}, "projectJobRun": {"id": "jr-full"},
    }).encode()  # fmt: skip


@pytest.mark.parametrize("kind", ["tmpfs", "RLIMIT_FSIZE"])
def test_disk_full_is_a_clean_error_and_nothing_acknowledged_is_lost(tmp_path, kind):
    disk = tmp_path / "disk"
    with small_disk(disk, kind):
        db = create_database(disk)
        env = server_env(db, disk / "data", SINKDASH_SQLITE_TIMEOUT="2")
        migrate(env)
        preexec = None
        if kind == "RLIMIT_FSIZE":
            preexec = file_size_limit(db.path.stat().st_size + DISK_BYTES)
        server = Server(env, free_port(), tmp_path / "server.log", preexec_fn=preexec).start()
        answers: Counter = Counter()
        acked, refused_in_a_row = [], 0
        try:
            for n in range(400):
                status, headers, answer = request("POST", server.port, "/api/sink", body(n), sink_headers())
                answers[status] += 1
                if 200 <= status < 300:
                    acked.append(f"full-{n:04d}")
                    refused_in_a_row = 0
                    continue
                assert status in (503, 507), (status, answer)
                assert headers.get("retry-after"), headers
                refused_in_a_row += 1
                if refused_in_a_row == 10:
                    break
            healthz_when_full = request("GET", server.port, "/healthz")[0]
        finally:
            server.stop()
        assert refused_in_a_row == 10, f"the disk never filled: {answers}"
        assert acked, "nothing fitted on the disk at all"
        # Off the full disk: copy the data, then check it on a disk with room.
        shutil.copytree(disk, tmp_path / "roomy", ignore=shutil.ignore_patterns("lost+found"))

    log = (tmp_path / "server.log").read_text(errors="replace")
    assert_no_server_errors(log)
    roomy = create_database(tmp_path / "roomy")
    assert roomy.value("PRAGMA integrity_check") == "ok"
    stored = [r[0] for r in roomy.rows("SELECT run_id FROM runs_run ORDER BY run_id")]
    assert set(acked) <= set(stored)
    figures = recount(roomy)

    server = Server(server_env(roomy, tmp_path / "roomy" / "data"), free_port(), tmp_path / "roomy.log").start()
    try:
        for run_id in acked:
            status, run = api_get(server.port, f"/api/runs/{run_id}")
            assert status == 200, run_id
            assert run["result"]["rows"].startswith(run_id[-4:]) and run["delivery_count"] == 1
        # With room again, the deliveries that were refused go in.
        n = len(stored)
        assert request("POST", server.port, "/api/sink", body(n), sink_headers())[0] in (200, 201)
    finally:
        server.stop()
    record(
        f"disk_full_{kind}",
        small_disk=kind,
        disk_bytes=DISK_BYTES,
        body_bytes=len(body(0)),
        acknowledged=len(acked),
        stored=len(stored),
        stored_but_unacknowledged=len(set(stored) - set(acked)),
        answers=dict(sorted((str(k), v) for k, v in answers.items())),
        healthz_when_full=healthz_when_full,
        server_errors_500=answers[500],
        unavailable_warnings_in_log=log.count("database unavailable"),
        integrity_check="ok",
        stored_runs_after=figures["runs"],
    )
