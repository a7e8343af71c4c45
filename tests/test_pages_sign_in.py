"""Every dashboard page is behind the sign-in wall, and the sink token only reaches a signed-in user."""

import pytest
from django.conf import settings

from tests.conftest import documented_body

pytestmark = pytest.mark.django_db

PAGES = ["/", "/runs/", "/runs/run-1/", "/runs/run-1/result.json", "/failures/", "/rejected/",
         "/connect/", "/projects/1/", "/jobs/1/", "/job-runs/1/", "/deliveries/1/", "/rejected/1/"]  # fmt: skip


@pytest.mark.parametrize("path", PAGES)
def test_pages_redirect_anonymous_visitors_to_sign_in(sink, client, path):
    sink.post(documented_body("run-1"))
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_token_is_not_revealed_to_anonymous_visitors(client):
    response = client.post("/connect/token")
    assert response.status_code == 302
    assert settings.SINK_TOKEN not in response.content.decode()


def test_live_polls_are_behind_the_wall_too(client):
    response = client.get("/runs/?after=0", headers={"HX-Request": "true"})
    assert response.status_code == 302
