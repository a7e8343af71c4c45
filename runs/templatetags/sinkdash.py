"""Small presentation helpers for the dashboard templates. Everything here returns plain strings
that the template then auto-escapes, or markup from format_html, which escapes what it inserts;
nothing is marked safe.

Several of these run once or more per table row, so they are written to be cheap: a page of 50
rows calls them hundreds of times."""

import unicodedata
from datetime import datetime
from functools import cache
from urllib.parse import quote, urlsplit

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator, add_truncation_text, calculate_truncate_chars_length

register = template.Library()


@register.filter
def web_url(value: str) -> str:
    """The URL when it is http(s), else "": a delivery can carry `javascript:` links, and escaping
    does not make an href safe."""
    try:
        scheme = urlsplit(value or "").scheme.lower()
    except ValueError:
        return ""
    return value if scheme in ("http", "https") else ""


@register.filter
def tone(status: str) -> str:
    """The CSS class of a status badge; the badge always shows the status as text too."""
    return {"completed": "ok", "failed": "bad"}.get(status, "other")


@register.filter(is_safe=True)
def clip(value: object, length: int) -> str:
    """The text of truncatechars:length, for less: Truncator looks at every character to skip
    combining ones, ~10-20 µs a call, and rows clip three or four strings each. Text that fits, or
    that is ASCII (no combining characters), needs no such walk."""
    text = unicodedata.normalize("NFC", str(value))  # as Truncator does, even when nothing is cut
    if len(text) <= length:
        return text
    if text.isascii():
        return add_truncation_text(text[: calculate_truncate_chars_length(length, None)])
    return Truncator(text).chars(length)


@register.filter
def percent(part: int | None, whole: int | None) -> int:
    if not whole:
        return 0
    return round(100 * (part or 0) / whole)


@register.filter
def rate(job_run) -> str:
    """A job run's success rate as text, or an en dash before its first run."""
    value = job_run.success_rate
    return "–" if value is None else f"{value:.0%}"


@register.filter
def duration(run) -> str:
    if not run.started_at or not run.ended_at:
        return ""
    seconds = (run.ended_at - run.started_at).total_seconds()
    if seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def ago(moment: datetime | None) -> str:
    """Compact relative time ("just now", "4 min ago", "3 h ago", "2 d ago")."""
    if moment is None:
        return "never"
    seconds = (timezone.now() - moment).total_seconds()
    if seconds < 10:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


@register.filter
def bytes_size(size: int | None) -> str:
    size = size or 0
    for unit in ("B", "kB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


@register.simple_tag
def when(moment: datetime | None) -> str:
    """A <time> with the relative time as text and the absolute time on hover. Built here rather
    than in an included template, which costs several times as much, and pages show one or two a
    row."""
    if not moment:
        return format_html('<span class="muted">never</span>')
    local = timezone.template_localtime(moment)  # what the |date filter would format
    return format_html(
        '<time datetime="{}" title="{} UTC">{}</time>', local.isoformat(), f"{local:%Y-%m-%d %H:%M:%S}", ago(moment)
    )


# Django's {% url %} arguments are quoted with these left as they are (RFC 3986 pchar).
_URL_SAFE = "!$&'()*+,;=/~:@"
_MARKER = "8675309753197"


@cache
def _around(name: str, prefix: str) -> tuple[str, str]:
    """What reverse(name) puts before and after its one argument, for this script prefix."""
    before, _, after = reverse(name, args=[_MARKER]).partition(_MARKER)
    return before, after


@register.filter
def url_for(value: int | str, name: str) -> str:
    """`{% url name value %}` for a route with one argument, at a fraction of the cost: reverse()
    takes ~30 µs and the pages need several links per row. Quoted as reverse() quotes; a value
    reverse() would refuse (a newline does not match a path converter) still goes through it."""
    text = str(value)
    if "\n" in text:
        return reverse(name, args=[value])
    before, after = _around(name, get_script_prefix())
    return f"{before}{quote(text, safe=_URL_SAFE)}{after}"


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (None removes one)."""
    query = context["request"].GET.copy()
    for name, value in changes.items():
        query.pop(name, None)
        if value not in (None, ""):
            query[name] = value
    return query.urlencode()



@register.filter
def shares(counts):
    """A job run's (or any object with completed/failed/other) bar widths in percent."""
    from runs.charts import split

    return split(counts.completed, counts.failed, counts.other)
