"""ASGI entry point: `uvicorn sinkdash.asgi:application` (what `make run` starts)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sinkdash.settings")

application = get_asgi_application()
