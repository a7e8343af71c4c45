"""runs.checkpoints: the WAL starts over even when the checkpoint thread is always a commit behind,
and a checkpoint never gets in the way of what was committed or makes a removed database again."""

import contextlib
import sqlite3

import pytest
from django.utils import timezone

from runs.models import Project

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def behind(monkeypatch):
    """The checkpoint thread, its passes run by the test: the test decides when it falls behind."""
    from django.db import connection

    from runs import checkpoints

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's WAL")
    thread = checkpoints.Checkpoints()
    thread.database = str(connection.settings_dict["NAME"])
    monkeypatch.setattr(thread, "after_commit", lambda database: None)
    monkeypatch.setattr(checkpoints, "_thread", thread)
    monkeypatch.setattr(checkpoints, "RESTART_FRAMES", 1)
    checkpoints.leave_to_thread(connection)
    yield thread
    connection.connection.execute("PRAGMA wal_autocheckpoint = 1000")  # SQLite's default


def commit(n: int) -> None:
    from django.db import connection

    from runs import checkpoints

    Project.objects.create(project_id=f"wal-{n}", name="x", first_received_at=timezone.now(),
                           last_received_at=timezone.now())  # fmt: skip
    checkpoints.after_commit(connection)


def test_the_writer_catches_up_with_the_thread_so_the_wal_starts_over(behind):
    from django.db import connection

    commit(1)
    commit(2)
    # A page read in progress keeps the thread's pass from copying the commit after it: the thread
    # ends behind, as it does under steady load, when commits land while it copies.
    with contextlib.closing(sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM runs_project").fetchone()
        commit(3)
        busy, frames_after_three, copied = behind.run_once()
        reader.execute("COMMIT")
    assert copied < frames_after_three
    assert behind.catch_up.is_set()  # the WAL is past RESTART_FRAMES (1 here)

    commit(4)  # appended to the WAL: not all of it was copied; the writer then copies the rest
    assert not behind.catch_up.is_set()
    commit(5)  # so this one starts the WAL over

    _, frames_now, _ = behind.checkpoint()
    assert frames_now < frames_after_three
    assert Project.objects.filter(project_id__startswith="wal-").count() == 5


def test_a_failed_catch_up_does_not_fail_the_commit_before_it(monkeypatch, caplog):
    """after_commit runs once the writer's batch is committed: an error in its checkpoint must not
    reach the deliveries, whose answers would then say they were not stored."""
    from types import SimpleNamespace

    from runs import checkpoints

    class Refusing:
        def execute(self, sql):
            raise sqlite3.OperationalError("disk I/O error")

    thread = checkpoints.Checkpoints()
    woken = []
    monkeypatch.setattr(thread, "after_commit", woken.append)
    monkeypatch.setattr(checkpoints, "_thread", thread)
    thread.catch_up.set()
    writer = SimpleNamespace(vendor="sqlite", is_in_memory_db=lambda: False, connection=Refusing(),
                             settings_dict={"NAME": "/data/sinkdash.sqlite3"})  # fmt: skip

    checkpoints.after_commit(writer)

    assert "WAL checkpoint after a commit failed" in caplog.text
    assert woken == ["/data/sinkdash.sqlite3"]  # the thread still gets its turn
    assert not thread.catch_up.is_set()


def test_a_checkpoint_does_not_make_a_removed_database_again(tmp_path):
    """The checkpoint thread may wake after its database is gone (tests drop theirs)."""
    from runs.checkpoints import Checkpoints

    checkpoints = Checkpoints()
    checkpoints.database = str(tmp_path / "gone ?#.sqlite3")
    with pytest.raises(sqlite3.OperationalError):
        checkpoints.checkpoint()
    assert list(tmp_path.iterdir()) == []
