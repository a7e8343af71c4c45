"""32 senders at once, 5,000 distinct deliveries plus 10% repeated, into three job runs, through
real server processes (one on SQLite; two sharing the database on PostgreSQL): no 5xx, no
"database is locked", one stored run per run id, and every counter equal to a recount."""

import time
from collections import Counter

import pytest

from tests.reliability.conftest import (
    ON_POSTGRES,
    assert_no_server_errors,
    delivery_counts,
    load_plan,
    percentile,
    record,
    recount,
    send_all,
)

DISTINCT = 5000
SENDERS = 32


@pytest.mark.slow
def test_concurrent_senders_lose_nothing_and_keep_every_counter_exact(site):
    servers = [site.server().start() for _ in range(2 if ON_POSTGRES else 1)]
    plan = load_plan(DISTINCT, repeat_rate=0.1)

    started = time.monotonic()
    sent = send_all([s.port for s in servers], plan, senders=SENDERS)
    seconds = time.monotonic() - started

    statuses = Counter(s.status for s in sent)
    assert len(sent) == len(plan)
    assert statuses[None] == 0, "a request got no answer"
    assert not [s for s in sent if s.status >= 500], statuses
    assert set(statuses) == {200, 201}, statuses
    assert statuses[201] == DISTINCT, "each run is created exactly once, its repeats answered 200"
    assert "database is locked" not in site.logs()
    assert_no_server_errors(site.logs())
    assert not any(b"database is locked" in s.body for s in sent)

    times_sent = Counter(run_id for run_id, _ in plan)
    assert delivery_counts(site.db) == dict(times_sent)
    figures = recount(site.db)
    assert figures["runs"] == DISTINCT and figures["deliveries"] == len(plan)
    assert figures["job_runs"] == 3

    latencies = [s.seconds for s in sent]
    record(
        "load",
        server_processes=len(servers),
        senders=SENDERS,
        distinct_runs=DISTINCT,
        deliveries_sent=len(plan),
        repeats=len(plan) - DISTINCT,
        answers=dict(sorted((str(k), v) for k, v in statuses.items())),
        seconds=round(seconds, 1),
        deliveries_per_second=round(len(plan) / seconds, 1),
        latency_p50_ms=round(percentile(latencies, 50) * 1000, 1),
        latency_p99_ms=round(percentile(latencies, 99) * 1000, 1),
        latency_max_ms=round(max(latencies) * 1000, 1),
        **{f"stored_{k}": v for k, v in figures.items()},
    )
