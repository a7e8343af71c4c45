"""Reading configuration from the environment, and secrets that are generated once and kept."""

import os
import secrets
import time
from pathlib import Path


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={value!r}: expected true or false")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a whole number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated variable; unset or empty gives the default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def persistent_secret(name: str, path: Path, length: int) -> str:
    """The secret from the environment, else the one stored at path, else a new one stored there.

    The file is created with O_EXCL and mode 0600, so when several server processes start at once
    exactly one writes it and all of them read the same value.
    """
    value = os.environ.get(name, "").strip()
    if value:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            stored = path.read_text().strip()
            if stored:
                return stored
            # Another process created the file a moment ago and has not written it yet.
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty: delete it to generate a new secret") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(length) + "\n")
    return path.read_text().strip()
