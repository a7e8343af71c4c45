"""runs.sql, the storing path's plain statements, on whichever database the suite runs on. On
PostgreSQL they pass rows as one array per column and lists as one array parameter, so the same
statement text serves any number of rows; the ingest path relies on ids coming back in row order."""

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from runs import sql
from runs.models import Job, Project, Run, RunTally
from tests.conftest import documented_body

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def project():
    return Project.objects.create(project_id="p-sql", name="sql", first_received_at=AT, last_received_at=AT)


def job_rows(project, names):
    return [(project.pk, name, 0, 0, sql.moment(AT), sql.moment(AT)) for name in names]


COLUMNS = ("project_id", "job_id", "run_count", "failed_count", "first_received_at", "last_received_at")


@pytest.mark.parametrize("value", [
    AT, datetime(2026, 12, 4, 12, 0, 0, 5, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
])  # fmt: skip
def test_moment_writes_what_djangos_backend_writes(value):
    # On SQLite moment writes UTC datetimes itself, as text, without Django's backend.
    assert sql.moment(value) == connection.ops.adapt_datetimefield_value(value)
    assert sql.moment(value) == connection.ops.adapt_datetimefield_value(value)  # remembered


@pytest.mark.parametrize("count", [1, 3, 1200])  # 1,200 rows take three statements on SQLite
def test_insert_returns_each_rows_id_in_row_order(project, count):
    names = [f"job-{(i * 7919) % count:05d}" for i in range(count)]  # not in sorted order
    with transaction.atomic():
        ids = sql.insert(Job, COLUMNS, job_rows(project, names))
    assert len(ids) == count
    assert dict(Job.objects.values_list("pk", "job_id")) == dict(zip(ids, names, strict=True))
    assert Job.objects.get(pk=ids[0]).first_received_at == AT


def test_insert_of_no_rows_returns_no_ids(project):
    assert sql.insert(Job, COLUMNS, []) == []


def test_one_of_matches_any_listed_value(project):
    with transaction.atomic():
        sql.insert(Job, COLUMNS, job_rows(project, ["a", "b", "c", "it's \"quoted\""]))
    where, params = sql.one_of("job_id", ["b", "it's \"quoted\"", "missing"])
    found = sql.fetch_all(f"SELECT job_id FROM {sql.table(Job)} WHERE {where} ORDER BY job_id", params)
    assert found == [("b",), ("it's \"quoted\"",)]


def test_add_to_counts_creates_then_adds(project):
    hour = AT.replace(minute=0)
    key = (project.pk, sql.moment(hour))
    with transaction.atomic():
        sql.execute_together(sql.add_to_counts(RunTally, ("project_id", "hour", "status"), [(*key, "failed", 2), (*key, "completed", 5)]))
    with transaction.atomic():
        sql.execute_together(sql.add_to_counts(RunTally, ("project_id", "hour", "status"), [(*key, "failed", 3)]))
    assert dict(RunTally.objects.values_list("status", "count")) == {"failed": 5, "completed": 5}


def test_storing_statements_are_prepared_and_the_orms_are_not_on_postgresql(sink):
    """runs.sql asks PostgreSQL to prepare its statements (parsing and planning them for every
    batch cost a third of PostgreSQL's time per delivery). psycopg ignores that request on a
    connection without a prepare threshold, Django's default, so sinkdash's backend sets one that
    the ORM's queries never reach."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's prepared statements")
    for n in range(3):
        assert sink.post(documented_body(f"prep-{n}")).status_code == 201
    for _ in range(10):
        list(Project.objects.filter(project_id="proj-1"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [text for (text,) in cursor.fetchall()]
    assert any(text.startswith('INSERT INTO "runs_run"') for text in prepared), prepared
    assert not any('"runs_project"."project_id"' in text for text in prepared), prepared  # the ORM's



def test_storing_plans_again_as_runs_grow_on_postgresql(sink):
    """PostgreSQL keeps a connection's plans (its prepared statements', and those it caches for each
    foreign-key check) until the tables they read are analysed again, which autovacuum does at most
    once a minute. Plans made while runs was nearly empty scan it whole: a new database taking a
    burst of deliveries served 800 req/s instead of 2,000 until then. The storing connection plans
    again each time runs has doubled since it last did. The test's transaction never commits, so
    no ANALYZE sees the rows it adds."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's cached plans")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # foreign keys checked row by row, counted below
    for n in range(8):  # past the five executions after which PostgreSQL may keep a generic plan
        assert sink.post(documented_body(f"grow-{n}")).status_code == 201
    columns = [f.column for f in Run._meta.concrete_fields if f.column not in ("id", "run_id")]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO runs_run (run_id, {', '.join(columns)})"
            f" SELECT 'bulk-' || g, {', '.join('r.' + c for c in columns)}"
            " FROM runs_run r CROSS JOIN generate_series(1, 20000) g WHERE r.run_id = 'grow-0'"
        )
    assert sink.post(documented_body("grow-late")).status_code == 201  # its run's id tells of the growth

    def scans() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'runs_run'")
            return cursor.fetchone()

    before = scans()
    assert sink.post(documented_body("grow-later")).status_code == 201
    assert sink.post(documented_body("grow-0", status="failed")).status_code == 200  # a known run, updated
    after = scans()
    assert after[0] == before[0], "runs_run was scanned whole"
    assert after[1] > before[1]
