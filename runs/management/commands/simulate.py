"""`manage.py simulate`: post realistic sink deliveries to a running sinkdash, as Intuned would."""

import http.client
import json
import time
from collections import Counter
from contextlib import nullcontext
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from runs.management.progress import progress_bar
from runs.samples import Fleet, deliveries


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Send realistic Intuned sink deliveries over HTTP to a running sinkdash (start it with "
        "`make run`): a few projects, jobs and job runs, both payload shapes, real error codes, "
        "cancelled and terminated runs, and now and then a repeated delivery."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="sinkdash's base URL")
        parser.add_argument("--token", default="", help="sink token (default: this data dir's)")
        parser.add_argument("--count", type=int, help="deliveries to send (default 200)")
        parser.add_argument("--duration", type=float, help="seconds to keep sending, instead of --count")
        parser.add_argument("--rate", type=float, default=10.0, help="deliveries per second; 0 = as fast as possible")
        parser.add_argument("--failure-rate", type=_fraction, default=0.15, help="fraction of runs that fail")
        parser.add_argument("--duplicate-rate", type=_fraction, default=0.03, help="fraction of repeated deliveries")
        parser.add_argument("--seed", type=int, help="for the same bodies every time")

    def handle(self, *args, url, token, count, duration, rate, failure_rate, duplicate_rate, seed, **options):
        if count is not None and duration is not None:
            raise CommandError("give --count or --duration, not both", returncode=2)
        if (count is not None and count < 0) or (duration is not None and duration <= 0) or rate < 0:
            raise CommandError("--count, --duration and --rate must be positive", returncode=2)
        if count is None and duration is None:
            count = 200
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CommandError(f"--url must be an http(s) URL, not {url!r}", returncode=2)
        sender = _Sender(parts, token or settings.SINK_TOKEN)
        fleet = Fleet(seed=seed, failure_rate=failure_rate)
        bodies = deliveries(fleet, duplicate_rate=duplicate_rate)

        tally: Counter = Counter()
        started = time.monotonic()
        progress = progress_bar(self.stdout)
        with progress or nullcontext():
            task = progress.add_task("sending", total=count) if progress else None
            sent = 0
            while (count is None or sent < count) and (
                duration is None or time.monotonic() - started < duration
            ):
                if rate:
                    wait = started + sent / rate - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                raw, repeat = next(bodies)
                status, outcome = sender.post(raw)
                sent += 1
                tally["repeats sent"] += repeat
                if status is None:
                    tally["connection errors"] += 1
                    if tally["connection errors"] == 1:
                        self.stderr.write(f"cannot reach {url}: {outcome} (is `make run` running?)")
                elif 200 <= status < 300:
                    tally["2xx"] += 1
                    tally[outcome] += 1
                else:
                    tally[f"HTTP {status}"] += 1
                    self.stderr.write(f"HTTP {status}: {outcome}")
                if progress:
                    progress.update(task, advance=1)
        sender.close()

        elapsed = time.monotonic() - started
        errors = sent - tally["2xx"]
        details = ", ".join(
            f"{tally[k]} {k}" for k in ("created", "updated", "duplicate", "stale") if tally[k]
        )
        self.stdout.write(
            f"Sent {sent} deliveries to {url} in {elapsed:.1f}s ({tally['repeats sent']} repeats): "
            f"{tally['2xx']} 2xx ({details or 'none'}), {errors} errors"
        )
        for key in sorted(k for k in tally if k.startswith("HTTP") or k == "connection errors"):
            self.stdout.write(f"  {key}: {tally[key]}")
        if errors:
            raise CommandError(f"{errors} of {sent} deliveries were not accepted", returncode=1)


class _Sender:
    """One kept-alive connection, reopened after any failure (the server may restart meanwhile)."""

    def __init__(self, parts, token: str):
        self.parts = parts
        self.path = parts.path.rstrip("/") + "/api/sink"
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": "sinkdash-simulate",
        }
        self.connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        return kind(self.parts.hostname, self.parts.port, timeout=30)

    def post(self, raw: bytes) -> tuple[int | None, str]:
        """(HTTP status, the outcome or error detail); status None when no answer came."""
        for attempt in range(2):  # a kept-alive connection the server closed fails once, harmlessly
            self.connection = self.connection or self._connect()
            try:
                self.connection.request("POST", self.path, body=raw, headers=self.headers)
                response = self.connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as error:
                self.close()
                if attempt == 1:
                    return None, str(error) or type(error).__name__
                continue
            try:
                data = json.loads(answer)
            except ValueError:
                data = {}
            detail = data.get("outcome") or data.get("detail") or answer[:200].decode(errors="replace")
            return response.status, str(detail)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
