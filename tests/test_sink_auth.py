"""The sink takes deliveries only with the right bearer token, and says nothing about which part
was wrong."""

import pytest

from runs.models import Delivery, RejectedDelivery, Run
from tests.conftest import documented_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("token", ["", "wrong", "x" * 500])
def test_missing_or_wrong_token_is_401_json_and_stores_nothing(sink, token):
    response = sink.post(documented_body("r-auth"), token=token)
    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}
    assert not Run.objects.exists()
    assert not Delivery.objects.exists()
    assert not RejectedDelivery.objects.exists()


def test_other_scheme_is_refused(client, settings):
    response = client.post(
        "/api/sink", b"{}", content_type="application/json",
        headers={"Authorization": f"Basic {settings.SINK_TOKEN}"},
    )  # fmt: skip
    assert response.status_code == 401


def test_bad_token_is_refused_before_the_body_is_judged(sink):
    assert sink.post(b"not json", token="wrong").status_code == 401
    assert not RejectedDelivery.objects.exists()


@pytest.mark.parametrize("path", ["/api/sink", "/api/sink/"])
def test_sink_answers_with_and_without_trailing_slash(sink, path):
    response = sink.post(documented_body(f"r{path.count('/')}"), path=path)
    assert response.status_code == 201


def test_token_from_environment_setting_is_used(sink, settings):
    settings.SINK_TOKEN = "configured-token"
    assert sink.post(documented_body("r-env"), token="configured-token").status_code == 201
    assert sink.post(documented_body("r-env2"), token="generated-one").status_code == 401


def test_credentials_are_not_kept_with_the_delivery(sink, settings):
    sink.client.cookies["sessionid"] = "secret-cookie"
    sink.post(documented_body("r-headers"))
    headers = Delivery.objects.get().headers_json
    assert settings.SINK_TOKEN not in headers
    assert "secret-cookie" not in headers
    assert "Authorization" not in headers
