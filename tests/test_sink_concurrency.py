"""Many senders at once into one job run: no errors, no lost runs, counters exact."""

import threading

import pytest
from django.db import connections
from django.test import Client

from runs.models import Delivery, FailureGroup, JobRun, Run
from tests.conftest import Sink, documented_body


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
