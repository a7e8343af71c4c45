"""Configuration comes from the environment; generated secrets are private and shared."""

import os
import stat

import pytest

from sinkdash.env import env_bool, env_int, env_list, persistent_secret


def test_generated_secret_is_stored_with_mode_0600_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("X_SECRET", raising=False)
    path = tmp_path / "data" / "secret"
    first = persistent_secret("X_SECRET", path, 32)
    assert len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert persistent_secret("X_SECRET", path, 32) == first


def test_environment_wins_over_the_stored_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("X_SECRET", "from-env")
    assert persistent_secret("X_SECRET", tmp_path / "s", 32) == "from-env"
    assert not (tmp_path / "s").exists()


def test_env_parsing(monkeypatch):
    monkeypatch.setenv("B", "yes")
    monkeypatch.setenv("I", "12")
    monkeypatch.setenv("L", "a.example, b.example,")
    assert env_bool("B", False) is True and env_bool("UNSET_B", True) is True
    assert env_int("I", 1) == 12
    assert env_list("L", []) == ["a.example", "b.example"]
    monkeypatch.setenv("I", "twelve")
    with pytest.raises(ValueError, match="I='twelve'"):
        env_int("I", 1)


def test_sqlite_is_tuned_for_a_web_server(settings):
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "sinkdash.db.sqlite3":
        pytest.skip("SQLite settings only apply to SQLite")
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
    assert "synchronous=NORMAL" in db["OPTIONS"]["init_command"]


@pytest.mark.django_db
def test_sqlite_connection_really_uses_wal():
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 1  # NORMAL


def test_debug_is_off_and_localhost_allowed(settings):
    assert settings.DEBUG is False
    assert "localhost" in settings.ALLOWED_HOSTS and "127.0.0.1" in settings.ALLOWED_HOSTS
