"""Small presentation helpers for the dashboard templates. Everything here returns plain strings
that the template then auto-escapes, or markup from format_html, which escapes what it inserts.
Nothing from a delivery is marked safe: mark_safe wraps only markup whose every value from a
delivery went through html.escape first (run_row, job_run_row), or that holds only numbers and
dates (when, bar, sparkline).

Several of these run once or more per table row, so they are written to be cheap: a page of 50
rows calls them hundreds of times."""

import unicodedata
from datetime import UTC, datetime
from functools import cache, lru_cache
from html import escape as _escape  # django.utils.html.escape, minus its lazy-text wrapper
from urllib.parse import quote, urlsplit

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.text import Truncator, add_truncation_text, calculate_truncate_chars_length

from runs.charts import SPARK_HEIGHT, SPARK_WIDTH, Spark, split

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
    length = int(length)
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
def grouped(count: int | None) -> str:
    """A count with its thousands grouped (1,234,567): run counts reach millions. For counts
    shown, never for ids, which go into links and forms as they are."""
    return "" if count is None else f"{int(count):,}"


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
        return format_html('<span class="muted">{}</span>', "never")
    # The title says UTC, as settings.TIME_ZONE does; "YYYY-MM-DD HH:MM:SS" is in the ISO form.
    # Nothing here needs escaping: every character comes from a datetime and ago()'s digits and
    # words, so the markup is put together directly (format_html costs several µs a call).
    iso = moment.astimezone(UTC).isoformat()
    return mark_safe(f'<time datetime="{iso}" title="{iso[:10]} {iso[11:19]} UTC">{ago(moment)}</time>')


# Django's {% url %} arguments are quoted with these left as they are (RFC 3986 pchar).
_URL_SAFE = "!$&'()*+,;=/~:@"
_MARKER = "8675309753197"  # digits, so that an <int:...> route takes it too


@cache
def _around(name: str, prefix: str) -> tuple[str, str]:
    """What reverse(name) puts before and after its one argument, for this script prefix."""
    before, _, after = reverse(name, args=[_MARKER]).partition(_MARKER)
    return before, after


@register.filter
def url_for(value: int | str, name: str) -> str:
    """`{% url name value %}` for a route with one argument, at a fraction of the cost: reverse()
    takes 15-30 µs, and the pages need several links a row. Quoted as reverse() quotes."""
    text = str(value)
    if not isinstance(value, int):  # a primary key needs no quoting
        text = quote(text, safe=_URL_SAFE)
    before, after = _around(name, get_script_prefix())
    return f"{before}{text}{after}"


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (None removes one)."""
    query = context["request"].GET.copy()
    for name, value in changes.items():
        query.pop(name, None)
        if value not in (None, ""):
            query[name] = value
    return query.urlencode()


# The run list's row. Written out as template markup it was some twenty nodes, about 95 µs a row,
# the larger part of a 50-row page: a page of 50 rare runs cost x1.7 what the same filter's 7 runs
# cost (BENCHMARKS.md). Even format_html spends 3 µs a value on lazy-text checks; html.escape is
# what it calls underneath. Every value from a delivery goes through _escape; only the markup
# around them is literal. tests/test_templatetags.py pins the row to the markup it replaced.
def _sep_link(href: str, text: str, attrs: str = "") -> str:
    return f' <span class="sep">/</span><a{attrs} href="{_escape(href)}">{_escape(text)}</a>'


@register.simple_tag
def run_row(run, fresh: bool = False) -> str:
    """One <tr> of a run list. `run` comes from runs.queries' lists (its project, job and job run
    selected with it, and the start of its error message as error_preview); fresh marks a row a
    poll brought."""
    job = _sep_link(url_for(run.job_id, "job"), str(run.job)) if run.job_id else ""
    job_run = (
        _sep_link(url_for(run.job_run_id, "job-run"), clip(run.job_run.job_run_id, 12), ' class="mono"')
        if run.job_run_id
        else ""
    )
    code = f"<code>{_escape(run.error_code)}</code> " if run.error_code else ""
    message = f'<span class="msg">{_escape(clip(run.error_preview, 140))}</span>' if run.error_preview else ""
    attrs = ' class="fresh"' if fresh else ""
    return mark_safe(  # every interpolated value is escaped or made here from numbers and dates
        f'<tr id="run-{int(run.pk)}"{attrs}>'
        f'<td><span class="badge {tone(run.status)}">{_escape(run.status)}</span></td>'
        f'<td><a href="{_escape(url_for(run.run_id, "run"))}">{_escape(run.api_name or "(no API)")}</a>'
        f'<span class="sub mono">{_escape(clip(run.run_id, 20))}</span></td>'
        f'<td class="where"><a href="{_escape(url_for(run.project_id, "project"))}">{_escape(str(run.project))}</a>'
        f"{job}{job_run}</td>"
        f'<td class="error-cell">{code}{message}</td>'
        f'<td class="when">{when(run.first_received_at)}</td>'
        "</tr>"
    )


# The charts' SVG is built here rather than in a partial: tables draw one bar or 14 day bars a
# row, and as template markup (with an include) each cost several times as much. Only numbers
# and dates go in.


@register.simple_tag
def bar(counts) -> str:
    """A job run's (or anything's with completed/failed/other) shares as one stacked bar. Numbers
    only, so put together directly (format_html would spend 3 µs on each of them)."""
    completed, failed, other = int(counts.completed), int(counts.failed), int(counts.other)
    s = split(completed, failed, other)
    return mark_safe(
        '<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" width="100%" height="8" role="img"'
        f' aria-label="{completed} completed, {failed} failed, {other} other"><rect class="track" width="100" height="8"/>'
        f'<rect class="ok" x="0" width="{s.completed}" height="8"/><rect class="bad" x="{s.failed_x}" width="{s.failed}" height="8"/>'
        f'<rect class="other" x="{s.other_x}" width="{s.other}" height="8"/></svg>'
    )  # fmt: skip


@register.simple_tag
def job_run_row(jr) -> str:
    """One <tr> of a job run table (runs/parts.html#job-runs), built in one step for the reason
    run_row is; tests/test_templatetags.py pins it to the markup it replaced."""
    href = _escape(url_for(jr.pk, "job-run"))
    failed = f'<a class="bad-text" href="{href}">{grouped(jr.failed)}</a>' if jr.failed else "0"
    return mark_safe(  # the one text from a delivery, the job run id, is escaped
        f'<tr><td><a class="mono" href="{href}">{_escape(clip(jr.job_run_id, 24))}</a></td>'
        f'<td class="num">{grouped(jr.total)}</td><td class="num">{grouped(jr.completed)}</td>'
        f'<td class="num">{failed}</td><td class="num">{grouped(jr.other)}</td>'
        f'<td class="rate-col"><span class="rate">{_escape(rate(jr))}</span>{bar(jr)}</td>'
        f"<td>{when(jr.last_received_at)}</td></tr>"
    )


_SPARK_SVG = (
    f'<svg class="spark" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}"'
    ' role="img" aria-label="failures per day, last 14 days">{}</svg>'
)


@register.simple_tag
def sparkline(days: list[Spark]) -> str:
    """A failure group's failures per day (charts.sparkline), each day's count on hover."""
    return format_html(_SPARK_SVG, mark_safe("".join(map(_day_bar, days))))  # format_html's pieces


@lru_cache(maxsize=4096)
def _day_bar(day: Spark) -> str:
    # Cached: most groups' days are alike (no failures that day, or one of a few heights).
    return format_html(
        '<rect x="{}" y="{}" width="4.6" height="{}"><title>{}</title></rect>', day.x, day.y, day.height, day.title
    )
