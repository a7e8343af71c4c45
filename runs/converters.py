"""URL converters shared by the pages (runs.urls) and the API (runs.api)."""

from django.urls import register_converter
from django.urls.converters import PathConverter


class RunIdConverter(PathConverter):
    """Any run id a sink body may carry, slashes and line breaks included: `path` stops at a
    newline (its regex is `.+`), so such a run could be neither linked to nor opened."""

    regex = r"[\s\S]+"


register_converter(RunIdConverter, "run_id")
