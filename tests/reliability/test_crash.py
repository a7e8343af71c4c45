"""kill -9 of the server while deliveries are arriving, then a restart on the same data: every
delivery that was answered 2xx is there, nothing is half-written, and the database is intact."""

import threading
import time
from collections import Counter

import pytest

from tests.reliability.conftest import (
    assert_no_server_errors,
    delivery_counts,
    load_plan,
    record,
    recount,
    send_all,
)

DISTINCT = 1500


def wait_for_runs(db, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = db.value("SELECT COUNT(*) FROM runs_run")
        if stored >= at_least:
            return stored
        time.sleep(0.05)
    raise AssertionError(f"only {stored} runs stored after {timeout}s")


@pytest.mark.slow
def test_kill_9_mid_delivery_loses_nothing_that_was_acknowledged(site):
    server = site.server().start()
    plan = load_plan(DISTINCT, repeat_rate=0.1, seed=9, prefix="crash")
    results = []
    sending = threading.Thread(target=lambda: results.extend(send_all([server.port], plan, senders=16)))
    sending.start()
    stored_at_kill = wait_for_runs(site.db, DISTINCT // 3)
    server.kill()
    sending.join()

    acked = Counter(s.run_id for s in results if s.status is not None and 200 <= s.status < 300)
    attempted = Counter(s.run_id for s in results)
    answers = Counter(s.status for s in results)
    assert not [s for s in results if s.status is not None and s.status >= 500], answers
    assert answers[None] > 0, "the kill came after the last delivery: nothing was in flight"

    if site.db.kind == "sqlite":
        assert site.db.value("PRAGMA integrity_check") == "ok"
        assert site.db.rows("PRAGMA foreign_key_check") == []
    stored = delivery_counts(site.db)
    missing = [run_id for run_id in acked if run_id not in stored]
    assert not missing, f"{len(missing)} acknowledged runs lost, e.g. {missing[:5]}"
    for run_id, times in acked.items():
        # A request cut off after its commit but before its answer may be stored unacknowledged.
        assert times <= stored[run_id] <= attempted[run_id], run_id
    assert set(stored) <= set(attempted)
    after_crash = recount(site.db)

    # Back up on the same data; the sender retries what was not acknowledged, as Intuned does.
    site.server(port=server.port).start()
    unacked = [(run_id, body) for (run_id, body), s in zip(plan, sorted(results, key=lambda s: s.index))
               if s.status is None]  # fmt: skip
    retried = send_all([server.port], unacked, senders=16)
    assert {s.status for s in retried} <= {200, 201}
    final = recount(site.db)
    assert_no_server_errors(site.logs())
    assert final["runs"] == DISTINCT
    assert set(delivery_counts(site.db)) == {run_id for run_id, _ in plan}

    record(
        "crash",
        deliveries_planned=len(plan),
        runs_stored_when_killed=stored_at_kill,
        acknowledged_before_kill=sum(acked.values()),
        unanswered=answers[None],
        stored_but_unacknowledged=sum(stored.values()) - sum(acked.values()),
        lost_acknowledged=0,
        integrity_check="ok" if site.db.kind == "sqlite" else "n/a (PostgreSQL)",
        runs_after_crash=after_crash["runs"],
        runs_after_retries=final["runs"],
        deliveries_after_retries=final["deliveries"],
    )
