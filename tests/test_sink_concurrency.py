"""Many senders at once: no errors, no lost runs, counters exact, and ids visible in order."""

import json
import threading

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from runs.ingest import Arrival
from runs.models import Delivery, FailureGroup, JobRun, Run
from tests.conftest import Sink, documented_body
from tests.recount import counter_mismatches


@pytest.mark.django_db(transaction=True)
def test_threads_posting_to_one_job_run_keep_counters_exact():
    senders, per_sender = 8, 25
    statuses: list[int] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        sink = Sink(Client())
        try:
            for i in range(per_sender):
                run_id = f"c-{n}-{i}"
                failed = i % 5 == 0
                body = documented_body(run_id, status="failed" if failed else "completed",
                                       message=f"Timeout after {i}000ms on https://x.example/{n}")
                codes = [sink.post(body).status_code]
                if i % 10 == 0:  # a retry of the same delivery
                    codes.append(sink.post(body).status_code)
                with lock:
                    statuses.extend(codes)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(statuses) <= {200, 201}, statuses
    total = senders * per_sender
    assert Run.objects.count() == total
    failed = Run.objects.filter(status="failed").count()
    job_run = JobRun.objects.get()
    assert (job_run.total, job_run.completed, job_run.failed, job_run.other) == (
        total, total - failed, failed, 0,
    )  # fmt: skip
    assert Delivery.objects.count() == total + senders * 3
    group = FailureGroup.objects.get()  # numbers and URLs normalised away: one cause
    assert group.count == failed


@pytest.mark.django_db(transaction=True)
def test_a_run_given_an_id_commits_before_any_later_id_is_taken(monkeypatch):
    """The live pages read new runs by an id cursor, so ids must become visible in order: while one
    store holds ids it has not committed, another store (another server process, on PostgreSQL)
    waits before taking its own, instead of committing a higher id first."""
    from runs import ingest

    holding, release = threading.Event(), threading.Event()
    insert_runs = ingest._insert_runs

    def insert_then_hold(new, ids):
        insert_runs(new, ids)
        if threading.current_thread().name == "first":
            holding.set()  # ids taken, not committed yet
            release.wait(30)

    ingest.receive(json.dumps(documented_body("earlier-run")).encode())  # the parents exist
    monkeypatch.setattr(ingest, "_insert_runs", insert_then_hold)
    done: dict[str, int] = {}

    def store(run_id: str) -> None:
        try:
            ingest.receive(json.dumps(documented_body(run_id)).encode())
            done[run_id] = len(done)
        finally:
            connections.close_all()

    first = threading.Thread(target=store, args=("first-run",), name="first")
    second = threading.Thread(target=store, args=("second-run",), name="second")
    first.start()
    assert holding.wait(30)
    second.start()
    second.join(1.0)  # without the ordering it stores in milliseconds, while the first still holds
    assert second.is_alive(), "the second store committed while the first held uncommitted ids"
    release.set()
    first.join(30)
    second.join(30)

    assert done == {"first-run": 0, "second-run": 1}
    ids = dict(Run.objects.values_list("run_id", "id"))
    assert ids["first-run"] < ids["second-run"]


@pytest.mark.django_db(transaction=True)
def test_the_writer_stores_its_batch_in_the_transaction_that_holds_the_lock(monkeypatch):
    """On PostgreSQL the sink's writer takes the storing lock in a transaction before it chooses
    its batch (ingest.holding_store_lock), and stores the batch straight into that transaction:
    the lock is asked for once, and no savepoint is made. Each of those was a round trip a batch,
    under the lock every process waits on."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's storing lock")
    from runs import ingest, sink

    asked = []
    take_store_lock = ingest.take_store_lock
    monkeypatch.setattr(ingest, "take_store_lock", lambda **how: (asked.append(1), take_store_lock(**how)))
    batch = [_pending(documented_body(f"one-turn-{n}")) for n in range(3)]

    with CaptureQueriesContext(connection) as queries:
        taken, outcomes = sink._commit(lambda: batch)

    assert taken == batch
    assert [outcome.kind for outcome in outcomes] == ["created"] * 3
    assert len(asked) == 1
    assert not [q["sql"] for q in queries if "SAVEPOINT" in q["sql"]]
    assert Run.objects.filter(run_id__startswith="one-turn-").count() == 3


def _pending(body: dict | bytes) -> tuple[Arrival, None]:
    """A delivery as the writer takes it from the queue, with no one awaiting its answer."""
    return Arrival(body if isinstance(body, bytes) else json.dumps(body).encode(), {}), None


def _committed_runs(prefix: str) -> int:
    """Runs with ids starting with prefix, as another connection sees them: committed ones."""
    seen: list[int] = []

    def count() -> None:
        try:
            seen.append(Run.objects.filter(run_id__startswith=prefix).count())
        finally:
            connections.close_all()

    reader = threading.Thread(target=count)
    reader.start()
    reader.join(30)
    return seen[0]


@pytest.mark.django_db(transaction=True)
def test_the_writer_commits_its_batch_in_the_round_trip_of_its_last_statements(monkeypatch):
    """On PostgreSQL the writer's COMMIT travels with the batch's counters and deliveries
    (sql.commit_pipelined) instead of taking a round trip of its own under the storing lock: when
    Django's atomic block ends, the transaction is already committed and there is nothing left to
    send."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's pipeline mode")
    from psycopg.pq import TransactionStatus

    from runs import sink

    at_commit = []
    django_commit = connection._commit
    monkeypatch.setattr(
        connection, "_commit", lambda: (at_commit.append(connection.connection.info.transaction_status), django_commit())
    )
    batch = [_pending(documented_body(f"piped-{n}")) for n in range(3)]

    taken, outcomes = sink._commit(lambda: batch)

    assert [outcome.kind for outcome in outcomes] == ["created"] * 3
    assert at_commit == [TransactionStatus.IDLE]
    assert _committed_runs("piped-") == 3


@pytest.mark.django_db(transaction=True)
def test_a_writer_batch_of_new_runs_and_known_ones():
    """One batch of the writer's mixing new runs with runs already stored (a repeated delivery and
    a changed body): the known runs change in place, the new ones get ids above every stored run's,
    in the batch's order, and every counter agrees with a recount. On PostgreSQL ids are reserved
    for the whole batch with its look-ups, so here two of them go unused."""
    from runs import ingest, sink

    repeated = json.dumps(documented_body("known-1", status="failed")).encode()
    assert ingest.receive(repeated).accepted
    assert ingest.receive(json.dumps(documented_body("known-2", status="failed")).encode()).accepted
    highest = Run.objects.order_by("-id").values_list("id", flat=True)[0]
    batch = [
        _pending(documented_body("new-a")),
        _pending(repeated),
        _pending(documented_body("known-2", status="completed")),
        _pending(documented_body("new-b", status="failed", message="other cause")),
    ]

    _, outcomes = sink._commit(lambda: batch)

    assert [outcome.kind for outcome in outcomes] == ["created", "duplicate", "updated", "created"]
    ids = dict(Run.objects.values_list("run_id", "id"))
    assert highest < ids["new-a"] < ids["new-b"]
    assert Run.objects.get(run_id="known-2").status == "completed"
    assert Run.objects.get(run_id="known-1").delivery_count == 2
    assert Delivery.objects.count() == 6
    assert counter_mismatches() == []


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_commit_fails_stores_nothing_and_the_next_one_stores(monkeypatch):
    """A batch whose COMMIT fails (here a deferred foreign-key check, run at commit on PostgreSQL)
    answers its error, leaves nothing behind, and the writer's connection stores the next batch."""
    from runs import ingest, sink

    row = ingest.NewRun.row
    monkeypatch.setattr(  # a project that does not exist, for one run of the batch
        ingest.NewRun, "row", lambda run: (run.run_id, 10**9, *row(run)[2:]) if run.run_id == "bad-1" else row(run)
    )
    bad = [_pending(documented_body(f"bad-{n}")) for n in range(3)]

    taken, failed = sink._commit(lambda: bad)

    assert taken == bad
    assert isinstance(failed, IntegrityError)
    assert _committed_runs("bad-") == 0
    assert not Delivery.objects.filter(run__run_id__startswith="bad-").exists()
    good = [_pending(documented_body(f"good-{n}")) for n in range(3)]
    taken, outcomes = sink._commit(lambda: good)
    assert [outcome.kind for outcome in outcomes] == ["created"] * 3
    assert _committed_runs("good-") == 3
    assert counter_mismatches() == []


@pytest.mark.django_db(transaction=True)
def test_prune_beside_senders_leaves_every_counter_exact():
    """Prune takes runs' contributions out of the same counter rows that deliveries add to (the
    project, job, job run and failure group they share). Run side by side, every delivery is
    answered and every counter agrees with a recount at the end."""
    from datetime import timedelta

    from django.utils import timezone

    from runs import ingest, retention
    from tests.recount import counter_mismatches

    old = timezone.now() - timedelta(days=40)
    for i in range(60):
        body = documented_body(f"old-{i}", status="failed" if i % 3 == 0 else "completed",
                               message=f"Timeout after {i}000ms")  # fmt: skip
        assert ingest.receive(json.dumps(body).encode(), received_at=old).accepted
    statuses: list[int] = []
    pruned: list[int] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        sink = Sink(Client())
        try:
            for i in range(20):
                body = documented_body(f"new-{n}-{i}", status="failed" if i % 3 == 0 else "completed",
                                       message=f"Timeout after {i}000ms")  # fmt: skip
                code = sink.post(body).status_code
                with lock:
                    statuses.append(code)
        finally:
            connections.close_all()

    def prune() -> None:
        try:
            report = retention.prune(timezone.now() - timedelta(days=30), batch_size=4)
            pruned.append(report.runs)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=prune))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(statuses) == {201}, statuses
    # All old runs go but, if no new failure came first, the one the failure group shows as latest.
    assert sum(pruned) + Run.objects.filter(run_id__startswith="old-").count() == 60
    assert sum(pruned) >= 59
    assert Run.objects.filter(run_id__startswith="new-").count() == 80
    assert counter_mismatches() == []


@pytest.mark.django_db(transaction=True)
def test_storing_transactions_use_generic_plans_and_others_do_not():
    """On PostgreSQL a storing transaction runs its statements with their generic plans, set with
    the lock (ingest._LOCK_TO_STORE): the parents' and failure groups' look-ups were otherwise
    planned again for every batch. The setting ends with the transaction, and prune's lock
    leaves the default alone."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plan cache")
    from runs import ingest

    def plan_cache_mode() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            return cursor.fetchone()[0]

    with ingest.holding_store_lock():
        assert plan_cache_mode() == "force_generic_plan"
    assert plan_cache_mode() == "auto"
    with transaction.atomic():
        ingest.take_store_lock()
        assert plan_cache_mode() == "auto"
    with transaction.atomic():  # what import_runs and reprocess store through: store_many
        ingest.receive(json.dumps(documented_body("generic-plans")).encode())
        assert plan_cache_mode() == "force_generic_plan"
    assert plan_cache_mode() == "auto"
