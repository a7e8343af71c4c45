"""When the database cannot take a delivery (locked by another writer past the timeout, or
PostgreSQL stopped), the real server answers 503 with Retry-After, never a 500, and takes
deliveries again by itself once the database is back: no restart, nothing half-stored."""

import json
import random
import time

import pytest

from tests.reliability.conftest import (
    Cluster,
    Server,
    assert_no_server_errors,
    create_database,
    drop_database,
    free_port,
    make_body,
    migrate,
    postgres_bin,
    record,
    recount,
    request,
    server_env,
    sink_headers,
)


def post(port: int, run_id: str):
    body = make_body(random.Random(run_id), run_id)
    started = time.monotonic()
    status, headers, answer = request("POST", port, "/api/sink", body, sink_headers())
    return status, headers, answer, time.monotonic() - started


def assert_unavailable(status: int, headers: dict, answer: bytes) -> None:
    assert status == 503, (status, answer)
    assert int(headers["retry-after"]) > 0
    assert "retry" in json.loads(answer)["detail"]


def test_database_locked_by_another_writer_answers_503_then_recovers(site):
    server = site.server(env_over={"SINKDASH_SQLITE_TIMEOUT": "1"}).start()
    assert post(server.port, "lock-before")[0] == 201

    holder = site.db.connect()
    if site.db.kind == "sqlite":
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder.autocommit = False
        holder.execute("LOCK TABLE runs_project, runs_run IN ACCESS EXCLUSIVE MODE")
    waits = []
    try:
        for n in range(3):
            status, headers, answer, seconds = post(server.port, f"lock-during-{n}")
            assert_unavailable(status, headers, answer)
            waits.append(seconds)
    finally:
        holder.rollback()
        holder.close()

    for n in range(3):  # the sender's retries, on the same server process
        assert post(server.port, f"lock-during-{n}")[0] == 201
    assert site.db.value("SELECT COUNT(*) FROM runs_run") == 4
    assert site.db.value("SELECT COUNT(*) FROM runs_delivery") == 4
    recount(site.db)
    assert_no_server_errors(site.logs())
    record(
        "db_locked",
        lock="BEGIN IMMEDIATE" if site.db.kind == "sqlite" else "LOCK TABLE ... ACCESS EXCLUSIVE",
        timeout_seconds=1,
        answers_while_locked=[503] * len(waits),
        seconds_to_answer_503=[round(w, 2) for w in waits],
        recovered_without_restart=True,
    )


@pytest.fixture
def cluster():
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries are not installed (.ci/run installs them)")
    cluster = Cluster(bin_dir).init()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.slow
def test_postgres_stopped_answers_503_then_recovers_without_restart(cluster, tmp_path):
    db = create_database(tmp_path, kind="postgresql", server_url=cluster.url)
    env = server_env(db, tmp_path / "data")
    migrate(env)
    server = Server(env, free_port(), tmp_path / "server.log").start()
    try:
        assert post(server.port, "pg-before")[0] == 201
        cluster.stop()
        waits = []
        for n in range(3):
            status, headers, answer, seconds = post(server.port, f"pg-during-{n}")
            assert_unavailable(status, headers, answer)
            waits.append(seconds)
        assert request("GET", server.port, "/healthz")[0] == 503

        cluster.start()
        first_after = [post(server.port, f"pg-during-{n}")[0] for n in range(3)]
        assert first_after == [201, 201, 201]
        assert request("GET", server.port, "/healthz")[0] == 200
        assert db.value("SELECT COUNT(*) FROM runs_run") == 4
        recount(db)
        assert_no_server_errors(server.log_text())
        record(
            "postgres_outage",
            database="postgresql (a throwaway cluster of the test's own)",
            answers_while_stopped=[503] * len(waits),
            seconds_to_answer_503=[round(w, 2) for w in waits],
            answers_after_restart=first_after,
            recovered_without_restart=True,
        )
    finally:
        server.stop()
        drop_database(db, server_url=cluster.url)
