"""`manage.py check --deploy` is clean for a production configuration: HTTPS behind a proxy or
tunnel, secure cookies, HSTS, a long secret key, the public host only. Run in a subprocess, so the
settings are read from that environment exactly as a deployment reads them."""

import secrets
import subprocess

from tests.reliability.conftest import PYTHON, ROOT, Database, record, server_env

PRODUCTION = {
    "SINKDASH_SECURE_COOKIES": "true",
    "SINKDASH_SSL_REDIRECT": "true",
    "SINKDASH_HSTS_SECONDS": "31536000",
    "SINKDASH_BEHIND_PROXY": "true",
    "SINKDASH_PUBLIC_URL": "https://sinkdash.example.com",
    "SINKDASH_ALLOWED_HOSTS": "sinkdash.example.com",
    "SINKDASH_DEBUG": "false",
}


def check_deploy(tmp_path, **env) -> subprocess.CompletedProcess:
    base = server_env(Database(f"sqlite:///{tmp_path / 'db.sqlite3'}", "sqlite"), tmp_path / "data")
    base.pop("SINKDASH_SECRET_KEY")
    return subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env={**base, **env}, capture_output=True, check=False, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_for_the_production_configuration(tmp_path):
    done = check_deploy(tmp_path, **PRODUCTION, SINKDASH_SECRET_KEY=secrets.token_urlsafe(50))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    record("deploy_check", environment=sorted(PRODUCTION) + ["SINKDASH_SECRET_KEY"], output=done.stdout.strip())


def test_the_generated_secret_key_passes_too(tmp_path):
    """With no SINKDASH_SECRET_KEY the key generated into the data directory is long enough."""
    done = check_deploy(tmp_path, **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len((tmp_path / "data" / "secret-key").read_text().strip()) >= 50


def test_check_deploy_warns_without_https_settings(tmp_path):
    """The check really runs: the laptop defaults (plain HTTP) are flagged."""
    done = check_deploy(tmp_path, SINKDASH_SECRET_KEY=secrets.token_urlsafe(50))
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr + done.stdout, warning
