"""Nothing stored holds a NUL character (runs.payload replaces it), and PostgreSQL refuses one even
as a query parameter. So a NUL in a filter is a clear 422 (a note on the page), and a NUL in an id
finds nothing (404), on both databases, never a 500."""

import pytest

from tests.conftest import documented_body

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_run(sink):
    assert sink.post(documented_body("nul-1", status="failed")).status_code == 201


@pytest.mark.parametrize("query", ["status=%00", "project=a%00b", "job_run=%00", "api=x%00", "q=%00", "error_code=%00"])
@pytest.mark.parametrize("path", ["/api/runs", "/api/runs/export"])
def test_a_nul_in_an_api_filter_is_422(signed_in, path, query):
    response = signed_in.get(f"{path}?{query}")
    assert response.status_code == 422
    assert "NUL" in response.json()["detail"]


def test_a_nul_in_a_page_filter_says_so(signed_in):
    response = signed_in.get("/runs/?status=%00")
    assert response.status_code == 400
    assert "NUL character" in response.content.decode()


@pytest.mark.parametrize("path", [
    "/api/runs/nul%00-1", "/runs/nul%00-1/", "/api/job-runs/jr%00-1", "/api/job-runs/jr%00-1/results.csv",
])  # fmt: skip
def test_a_nul_in_an_id_finds_nothing(signed_in, path):
    assert signed_in.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/api/failures?project=%00", "/failures/?project=%00&job=x%00"])
def test_a_nul_in_a_failures_filter_matches_nothing(signed_in, path):
    response = signed_in.get(path)
    assert response.status_code == 200
    assert "nul-1" not in response.content.decode()
