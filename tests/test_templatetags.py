"""The page helpers that stand in for Django's own for speed give exactly what Django's would:
url_for is {% url %}, clip is truncatechars, when prints a UTC <time>, and run_row is the
template markup it replaced, escaping included."""

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.template import Context, Template
from django.template.defaultfilters import truncatechars
from django.template.loader import render_to_string
from django.urls import reverse

from runs import queries
from runs.models import JobRun
from runs.templatetags.sinkdash import clip, job_run_row, url_for, when
from tests.conftest import documented_body

ODD_IDS = [
    "plain-id", "a/b?c#d", "sp ace", "per%cent", "ünï/cödé", "line\nbreak", "tab\tand\rreturn",
    "quote'\"<>&", "..", "x" * 300, "emoji-🙂", "semi;colon=eq+plus", "\u2028sep",
]  # fmt: skip


@pytest.mark.parametrize("run_id", ODD_IDS)
def test_url_for_is_reverse_for_run_ids(run_id):
    assert url_for(run_id, "run") == reverse("run", args=[run_id])


@pytest.mark.parametrize("name", ["project", "job", "job-run", "delivery"])
def test_url_for_is_reverse_for_primary_keys(name):
    assert url_for(42, name) == reverse(name, args=[42])


TEXTS = [
    "", "short", "exactly-ten", "a" * 200, "ascii text that is longer than the limit",
    "e\u0301" * 30, "combining cafe\u0301 text that runs past the limit", "ünïcödé " * 10,
    "🙂" * 40, "<b>markup</b> & entities " * 5,
]  # fmt: skip


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("length", [1, 5, 10, 20, 140])
def test_clip_is_truncatechars(text, length):
    assert clip(text, length) == truncatechars(text, length)


def test_when_is_a_utc_time_element():
    moment = datetime(2026, 11, 30, 10, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    html = when(moment)
    assert 'datetime="2026-11-30T08:00:05+00:00"' in html
    assert 'title="2026-11-30 08:00:05 UTC"' in html
    assert when(datetime.now(UTC)).startswith("<time ")
    assert "never" in when(None)


# The run list's row as it was written in templates/runs/list.html before run_row replaced it.
ROW_AS_TEMPLATE = """{% load sinkdash %}{% for run in runs %}
<tr id="run-{{ run.pk }}"{% if fresh %} class="fresh"{% endif %}>
  <td><span class="badge {{ run.status|tone }}">{{ run.status }}</span></td>
  <td><a href="{{ run.run_id|url_for:'run' }}">{{ run.api_name|default:"(no API)" }}</a><span class="sub mono">{{ run.run_id|clip:20 }}</span></td>
  <td class="where">
    <a href="{{ run.project_id|url_for:'project' }}">{{ run.project }}</a>
    {% if run.job_id %}<span class="sep">/</span><a href="{{ run.job_id|url_for:'job' }}">{{ run.job }}</a>{% endif %}
    {% if run.job_run_id %}<span class="sep">/</span><a class="mono" href="{{ run.job_run_id|url_for:'job-run' }}">{{ run.job_run.job_run_id|clip:12 }}</a>{% endif %}
  </td>
  <td class="error-cell">{% if run.error_code %}<code>{{ run.error_code }}</code> {% endif %}{% if run.error_message %}<span class="msg">{{ run.error_message|clip:140 }}</span>{% endif %}</td>
  <td class="when">{% when run.first_received_at %}</td>
</tr>
{% endfor %}"""

HOSTILE = "<script>alert('x')</script> & \"quoted\" 'single' ünï\u0301 " * 6


def _without_layout(html: str) -> str:
    """The markup as a browser shows it: whitespace runs are one space, which counts between inline
    elements (a space before a separator) but not around table rows and cells."""
    html = re.sub(r"\s+", " ", html)
    return re.sub(r" ?(</?(?:tr|td)\b[^>]*>) ?", r"\1", html).strip()


@pytest.mark.django_db
@pytest.mark.parametrize("fresh", [False, True])
def test_run_row_is_the_markup_it_replaced(sink, fresh):
    bodies = [
        documented_body("plain-1"),
        documented_body(HOSTILE[:90], status="failed", error=HOSTILE[:40], message=HOSTILE,
                        api=HOSTILE[:30], project_name=HOSTILE[:50], job=HOSTILE[:20], job_run=HOSTILE[:25]),
        documented_body("a/b?c#d\nline", status="cancelled", message="", api="", project_name=""),
        documented_body("e\u0301" * 30, status="weird-status", error="", message="only a message"),
        # Longer than the preview the list loads (queries.MESSAGE_PREVIEW_CHARS): the reference
        # template reads the whole message, the row its start.
        documented_body("long-message", status="failed", message="e\u0301" * 200 + HOSTILE * 40),
    ]  # fmt: skip
    orphan = documented_body("no-job")
    del orphan["projectJob"], orphan["projectJobRun"]
    for body in [*bodies, orphan]:
        assert sink.post(body).status_code == 201
    runs = queries.run_page(queries.RunFilter()).items
    assert len(runs) == 6 and any(run.job_id is None for run in runs)
    context = {"runs": runs, "fresh": fresh}
    expected = Template(ROW_AS_TEMPLATE).render(Context(context))
    rendered = render_to_string("runs/list.html#rows", context)
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert _without_layout(rendered) == _without_layout(expected)


# A job run table's row as it was written in templates/runs/parts.html before job_run_row.
JOB_RUN_ROW_AS_TEMPLATE = """{% load sinkdash %}{% for jr in job_runs %}
<tr>
  <td><a class="mono" href="{{ jr.pk|url_for:'job-run' }}">{{ jr.job_run_id|clip:24 }}</a></td>
  <td class="num">{{ jr.total|grouped }}</td>
  <td class="num">{{ jr.completed|grouped }}</td>
  <td class="num">{% if jr.failed %}<a class="bad-text" href="{{ jr.pk|url_for:'job-run' }}">{{ jr.failed|grouped }}</a>{% else %}0{% endif %}</td>
  <td class="num">{{ jr.other|grouped }}</td>
  <td class="rate-col"><span class="rate">{{ jr|rate }}</span>{% bar jr %}</td>
  <td>{% when jr.last_received_at %}</td>
</tr>
{% endfor %}"""


@pytest.mark.django_db
def test_job_run_row_is_the_markup_it_replaced(sink):
    for n, (job_run, status) in enumerate([
        ("jr-ok", "completed"), ("jr-ok", "completed"), (HOSTILE[:60], "failed"), (HOSTILE[:60], "completed"),
        ("jr-odd", "cancelled"), ("jr-odd", "failed"),
    ]):  # fmt: skip
        assert sink.post(documented_body(f"jrr-{n}", status=status, job_run=job_run)).status_code == 201
    job_runs = list(JobRun.objects.order_by("id"))
    assert {jr.failed > 0 for jr in job_runs} == {True, False}
    expected = Template(JOB_RUN_ROW_AS_TEMPLATE).render(Context({"job_runs": job_runs}))
    rendered = "".join(job_run_row(jr) for jr in job_runs)
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert _without_layout(rendered) == _without_layout(expected)
