"""/rejected/ shows what was refused and why, with the raw body; /connect/ shows how to point
Intuned here, with the token only on request."""

import json
import re

import pytest
from django.conf import settings

from runs.models import RejectedDelivery
from tests.conftest import documented_body

pytestmark = pytest.mark.django_db


def test_rejected_lists_reason_status_and_body_links(sink, signed_in):
    sink.post(b"not json")
    sink.post({"apiInfo": {"name": "x"}})
    response = signed_in.get("/rejected/")
    body = response.content.decode()
    assert "body is not valid JSON" in body
    assert "apiInfo.runId is missing" in body and "<code>apiInfo.runId</code>" in body
    for r in RejectedDelivery.objects.all():
        assert f'hx-get="/rejected/{r.pk}/"' in body and f'href="/api/rejected/{r.pk}/raw"' in body


def test_rejected_body_is_viewable_as_text(sink, signed_in):
    sink.post(b"not json <b>at all</b>")
    r = RejectedDelivery.objects.get()
    response = signed_in.get(f"/rejected/{r.pk}/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "<html" not in body
    assert "not json &lt;b&gt;at all&lt;/b&gt;" in body
    assert signed_in.get(f"/api/rejected/{r.pk}/raw").content == b"not json <b>at all</b>"


def test_rejected_empty_and_fragment(signed_in):
    assert "Nothing has been refused" in signed_in.get("/rejected/").content.decode()
    assert "<html" not in signed_in.get("/rejected/", headers={"HX-Request": "true"}).content.decode()


def test_connect_shows_sink_url_from_the_request_and_hides_the_token(signed_in):
    body = signed_in.get("/connect/").content.decode()
    assert "http://testserver/api/sink" in body
    assert settings.SINK_TOKEN not in body
    assert 'hx-post="/connect/token"' in body
    assert "Nothing yet" in body


def test_connect_uses_the_public_url_when_set(signed_in, settings):
    settings.PUBLIC_URL = "https://sinkdash.example.org"
    assert "https://sinkdash.example.org/api/sink" in signed_in.get("/connect/").content.decode()


def test_token_reveal_gives_the_exact_sink_json_and_a_working_curl(signed_in):
    response = signed_in.post("/connect/token", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert response["Cache-Control"] == "no-store"
    sink_json = re.search(r'<pre class="copy json">(.*?)</pre>', body, re.S)[1].replace("&quot;", '"')
    assert json.loads(sink_json) == {
        "type": "webhook",
        "url": "http://testserver/api/sink",
        "headers": {"Authorization": f"Bearer {settings.SINK_TOKEN}"},
    }
    assert f"curl -sS -X POST &#x27;http://testserver/api/sink&#x27; -H &#x27;Authorization: Bearer {settings.SINK_TOKEN}" in body


def test_token_reveal_needs_post(signed_in):
    assert signed_in.get("/connect/token").status_code == 405


def test_last_delivery_indicator_follows_deliveries(sink, signed_in):
    page = signed_in.get("/connect/").content.decode()
    poll = re.search(r'id="received"[^>]*hx-get="([^"]+)"', page)[1].replace("&amp;", "&")
    assert signed_in.get(poll, headers={"HX-Request": "true"}).status_code == 204
    sink.post(documented_body("first-run"))
    response = signed_in.get(poll, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "first-run" in response.content.decode()
    sink.post(b"junk")
    poll = re.search(r'hx-get="([^"]+)"', response.content.decode())[1].replace("&amp;", "&")
    refused = signed_in.get(poll, headers={"HX-Request": "true"})
    assert refused.status_code == 200 and "Last refused body" in refused.content.decode()
