"""When the database cannot take a delivery, the sink says 503 with Retry-After (the sender retries
for an hour) instead of a 500 page, and nothing is half-stored."""

import sqlite3

import pytest
from django.db import OperationalError, connection

from runs.models import Run
from tests.conftest import documented_body


@pytest.mark.django_db
def test_database_error_answers_503_with_retry_after(sink, monkeypatch, settings):
    def unavailable(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr("runs.sink.store_arrivals", unavailable)
    response = sink.post(documented_body("down-1"))
    assert response.status_code == 503
    assert response["Retry-After"] == str(settings.RETRY_AFTER_SECONDS)
    assert "retry" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_database_locked_by_another_writer_answers_503_then_recovers(sink):
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        connection.connection.execute("PRAGMA busy_timeout = 200")
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        release = other.rollback
    else:
        import psycopg

        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        params = connection.get_connection_params()
        other = psycopg.connect(**params)
        other.execute("LOCK TABLE runs_project IN ACCESS EXCLUSIVE MODE")
        release = other.rollback
    try:
        response = sink.post(documented_body("locked-1"))
        assert response.status_code == 503
        assert response["Retry-After"]
    finally:
        release()
        other.close()
    assert not Run.objects.exists()
    assert sink.post(documented_body("locked-1")).status_code == 201
