"""The page helpers that stand in for Django's own for speed give exactly what Django's would:
url_for is {% url %}, clip is truncatechars, when prints a UTC <time>."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.template.defaultfilters import truncatechars
from django.urls import reverse

from runs.templatetags.sinkdash import clip, url_for, when

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
