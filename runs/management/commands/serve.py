"""`make run` ends here: print where everything is, then serve the ASGI app with uvicorn."""

import logging
import os
import threading
import time
from datetime import timedelta

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from runs.retention import prune
from runs.signin import new_first_sign_in_path

log = logging.getLogger("runs.retention")
PRUNE_EVERY_SECONDS = 3600


def prune_forever(days: int) -> None:
    """$SINKDASH_RETENTION_DAYS applied automatically: prune once an hour in the background, in
    the small batches that keep the sink answering. Runs in the serving process, beside uvicorn."""
    while True:
        try:
            report = prune(timezone.now() - timedelta(days=days))
            if report.runs:
                log.info("retention (%d days): %s", days, report.line())
        except DatabaseError:
            log.warning("retention: database unavailable, trying again in an hour", exc_info=True)
        finally:
            close_old_connections()
        time.sleep(PRUNE_EVERY_SECONDS)


class Command(BaseCommand):
    help = "Serve sinkdash on an ASGI server (uvicorn) at $HOST:$PORT."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("SINKDASH_WORKERS", "1")),
            help="Server processes (more than one wants PostgreSQL; SQLite serialises writes anyway).",
        )

    def handle(self, *args, host: str, port: int, workers: int, **options):
        shown_host = f"[{host}]" if ":" in host else host
        base = settings.PUBLIC_URL or f"http://{shown_host}:{port}"
        token_source = (
            "$SINKDASH_SINK_TOKEN" if os.environ.get("SINKDASH_SINK_TOKEN") else
            f"the file {settings.DATA_DIR / 'sink-token'}"
        )  # fmt: skip
        lines = [
            "",
            f"  sinkdash dashboard  {base}/",
            f"  Intuned sink URL    {base}/api/sink   (Authorization: Bearer <token from {token_source}>)",
            f"  How to connect      {base}/connect/",
        ]
        first = new_first_sign_in_path()
        if first:
            lines.append(f"  First sign-in       {base}{first}")
            lines.append("                      (one-time link: it creates the first account)")
        else:
            lines.append(f"  Sign in             {base}/accounts/login/ with your account")
        if settings.RETENTION_DAYS:
            lines.append(f"  Retention           runs older than {settings.RETENTION_DAYS} days are pruned hourly")
            threading.Thread(
                target=prune_forever, args=(settings.RETENTION_DAYS,), daemon=True, name="retention"
            ).start()
        lines.append("")
        self.stdout.write("\n".join(lines))
        uvicorn.run(
            "sinkdash.asgi:application",
            host=host,
            port=port,
            workers=workers,
            log_level=os.environ.get("SINKDASH_SERVER_LOG_LEVEL", "info"),
            access_log=False,
            lifespan="off",
        )
