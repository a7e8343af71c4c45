"""schemathesis against the API's OpenAPI schema, signed in: every operation, generated requests
(valid and invalid), no 5xx, and every response matches what the schema says it is.

Driven through hypothesis directly (`operation.as_strategy`) rather than schemathesis's pytest
plugin, whose fixture-based loader needs a pytest internal that pytest 9 no longer has."""

from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Sink, documented_body, newer_body
from tests.reliability.conftest import record

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency (see RELIABILITY.md)")
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runs.api import api

SCHEMA = schemathesis.openapi.from_dict(api.get_openapi_schema())
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}
ANSWERS: dict[str, Counter] = {}


# ignored_auth and positive_data_acceptance are left out: the first because the session cookie
# sent with every case authenticates whatever Authorization header is generated (access is pinned
# in test_access.py), the second because the sink documents its body as any JSON and answers 422
# for JSON that is not a run, as documented.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    record("schemathesis", version=schemathesis.__version__ if hasattr(schemathesis, "__version__") else "",
           operations=len(OPERATIONS),
           answers={label: dict(sorted((str(k), v) for k, v in c.items())) for label, c in sorted(ANSWERS.items())})


@pytest.fixture
def app(signed_in):
    sink = Sink(signed_in)
    sink.post(documented_body("seed-ok"))
    sink.post(documented_body("seed-failed", status="failed"))
    sink.post(newer_body("seed-newer", failed=True))
    sink.post(newer_body("seed-cancelled", reason={"type": "terminated", "message": "Max runs exceeded"}))
    sink.post(b"not json")  # one quarantined body
    # The WSGI handler would close the test's database connection (inside its transaction) after
    # each request; Django's own test client unhooks the same handler.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    SCHEMA.app = get_wsgi_application()
    try:
        yield SCHEMA.app
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_matches_its_schema_and_never_fails(app, signed_in, label):
    operation = OPERATIONS[label]
    credentials = {
        "cookies": {"sessionid": signed_in.cookies["sessionid"].value},
        # The read routes take the session first; the sink takes only its bearer token.
        "headers": {"Authorization": f"Bearer {django_settings.SINK_TOKEN}"},
    }
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    # Generated ids almost never name a stored row; these do, so the 200 answers are checked too.
    known = {"run_id": "seed-newer", "job_run_id": "jr-1", "delivery_id": 1, "rejected_id": 1}
    names = {p.name for p in operation.path_parameters}
    if names:
        strategies.append(operation.as_strategy(path_parameters={n: known[n] for n in names if n in known}))
    strategy = st.one_of(strategies)

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip
    @given(case=strategy)
    def check(case):
        response = case.call_and_validate(app=app, checks=CHECKS, **credentials)
        ANSWERS.setdefault(label, Counter())[response.status_code] += 1

    check()
