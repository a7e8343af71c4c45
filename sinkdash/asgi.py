"""ASGI entry point: `uvicorn sinkdash.asgi:application` (what `make run` starts).

POST /api/sink goes to the lean endpoint in runs.sink, everything else to Django."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sinkdash.settings")

django_application = get_asgi_application()

from runs.sink import asgi_sink  # noqa: E402  (needs the apps loaded above)

SINK_PATHS = {"/api/sink", "/api/sink/"}


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in SINK_PATHS:
        return await asgi_sink(scope, receive, send)
    return await django_application(scope, receive, send)
