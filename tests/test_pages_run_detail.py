"""The drill-down of one run: everything the delivery said, its deliveries' raw bodies, and the
links to the same failure and the same parameters elsewhere."""

import json
import re
from html import escape

import pytest

from runs import views
from runs.models import Delivery, Run
from runs.views import PREVIEW_CHARS
from tests.conftest import documented_body, newer_body

pytestmark = pytest.mark.django_db


def test_failed_run_shows_error_in_full_with_doc_link_timings_and_links(sink, signed_in):
    sink.post(newer_body("r-1", failed=True, message="Execution Timed Out " + "x" * 300))
    body = signed_in.get("/runs/r-1/").content.decode()
    assert '<span class="badge big bad">failed</span>' in body
    assert "script-timeout" in body and "execution" in body
    assert "Execution Timed Out " + "x" * 300 in body  # not truncated
    assert 'href="https://docs.intunedhq.com/docs/support/errors"' in body
    assert 'href="https://files.example/trace.zip"' in body and 'href="https://files.example/logs.jsonl"' in body
    assert "2026-11-30 08:00:00 UTC" in body and "12 s" in body
    run = Run.objects.get(run_id="r-1")
    assert f'href="/runs/?failure_group={run.failure_group_id}"' in body
    assert f'href="/projects/{run.project_id}/"' in body
    assert f'href="/jobs/{run.job_id}/"' in body and f'href="/job-runs/{run.job_run_id}/"' in body


def test_documented_shape_shows_status_code_parameters_and_pretty_result(sink, signed_in):
    sink.post(documented_body("r-2", result={"price": 9.5, "title": "Kettle"}))
    body = signed_in.get("/runs/r-2/").content.decode()
    assert "200" in body
    assert json.dumps({"price": 9.5, "title": "Kettle"}, indent=2).replace('"', "&quot;") in body
    assert re.search(r'<h2>Result <span class="sub">\d+ B</span></h2>', body)  # its size beside it
    assert "https://shop.example/p/1" in body


def test_a_run_without_a_result_says_so_without_a_size(sink, signed_in):
    sink.post(newer_body("no-result", failed=True))  # "result": null
    body = signed_in.get("/runs/no-result/").content.decode()
    heading = re.search(r"<h2>Result(.*?)</h2>", body, re.S).group(1)
    assert heading.strip() == ""  # not "4 B", the size of the null the body sent
    assert "No result was sent." in body
    assert "result.json" not in body


def test_large_result_is_a_preview_with_a_download(sink, signed_in):
    result = {"items": [{"sku": f"SKU-{i:06d}", "title": "Item"} for i in range(5000)]}
    sink.post(documented_body("big", result=result))
    response = signed_in.get("/runs/big/")
    body = response.content.decode()
    assert len(response.content) < PREVIEW_CHARS * 3
    assert "Download the whole result" in body
    download = signed_in.get("/runs/big/result.json")
    assert download["Content-Disposition"] == 'attachment; filename="result.json"'
    assert json.loads(download.content) == result


def test_a_long_message_and_long_parameters_are_previews_with_the_body_to_download(sink, signed_in):
    # Scraped pages end up in both: the page shows their start, as it does a result's.
    page = "<div class='row'>scraped &amp; kept</div>\n" * 20_000  # 800 KB
    body = documented_body("big", status="failed", message="Timeout on " + page, parameters={"html": page})
    assert sink.post(body).status_code == 201
    response = signed_in.get("/runs/big/")
    html = response.content.decode()
    assert len(response.content) < PREVIEW_CHARS * 6
    message = Run.objects.get(run_id="big").error_message
    assert escape(message[:PREVIEW_CHARS]) in html and escape(message[: PREVIEW_CHARS + 1]) not in html
    assert f"Showing the first 20,000 characters of {len(message):,}." in html
    assert "The whole message is in the run's body" in html and "The whole parameters are in" in html
    delivery = Delivery.objects.get(run__run_id="big")
    assert html.count(f'href="/api/deliveries/{delivery.pk}/raw" download>download it</a>') == 2
    assert json.loads(signed_in.get(f"/api/deliveries/{delivery.pk}/raw").content) == body


def test_every_delivery_is_listed_and_its_raw_body_viewable_and_downloadable(sink, signed_in):
    first = documented_body("r-3", status="failed")
    sink.post(first)
    sink.post(first)  # a repeat
    sink.post(documented_body("r-3"))  # the retry that worked
    body = signed_in.get("/runs/r-3/").content.decode()
    deliveries = list(Delivery.objects.filter(run__run_id="r-3").order_by("id"))
    assert len(deliveries) == 3
    for d in deliveries:
        assert f'hx-get="/deliveries/{d.pk}/"' in body
        assert f'href="/api/deliveries/{d.pk}/raw"' in body
    assert "repeated a body already received" in body and "updated the run" in body
    view = signed_in.get(f"/deliveries/{deliveries[0].pk}/", headers={"HX-Request": "true"})
    text = view.content.decode()
    assert view.status_code == 200 and "<html" not in text
    assert "script-execution-exception" in text
    assert "Bearer" not in text  # credentials were never stored
    raw = signed_in.get(f"/api/deliveries/{deliveries[0].pk}/raw")
    assert raw.content == bytes(deliveries[0].raw)


def test_a_run_page_lists_its_first_deliveries_and_says_how_many_there_are(sink, signed_in, monkeypatch):
    monkeypatch.setattr(views, "DELIVERIES_SHOWN", 3)
    body = documented_body("r-loop")
    for _ in range(5):  # a sender caught in a loop
        sink.post(body)
    html = signed_in.get("/runs/r-loop/").content.decode()
    shown = list(Delivery.objects.filter(run__run_id="r-loop").order_by("id").values_list("pk", flat=True))
    assert [f'id="body-{pk}"' in html for pk in shown] == [True, True, True, False, False]
    assert "Showing the first 3 of 5 deliveries." in html
    assert len(signed_in.get("/api/runs/r-loop").json()["deliveries"]) == 5


def test_the_state_body_is_linked_when_it_came_after_the_deliveries_listed(sink, signed_in, monkeypatch):
    monkeypatch.setattr(views, "DELIVERIES_SHOWN", 2)
    for _ in range(3):  # the sender's retries of the first body
        sink.post(documented_body("r-late", status="failed", message="Timeout"))
    page = "<p>scraped</p>" * 2_000  # longer than the preview
    state = documented_body("r-late", status="failed", message=page)
    sink.post(state)
    html = signed_in.get("/runs/r-late/").content.decode()
    delivery = Delivery.objects.filter(run__run_id="r-late").latest("id")
    assert f'id="body-{delivery.pk}"' not in html  # not among those listed
    assert f'href="/api/deliveries/{delivery.pk}/raw" download>download it</a>' in html
    assert json.loads(bytes(delivery.raw)) == state


def test_delivery_body_page_works_without_htmx(sink, signed_in):
    sink.post(documented_body("r-4"))
    d = Delivery.objects.get()
    response = signed_in.get(f"/deliveries/{d.pk}/")
    assert response.status_code == 200 and "<html" in response.content.decode()


def test_same_parameters_in_other_job_runs_are_linked(sink, signed_in):
    params = {"url": "https://shop.example/p/77"}
    sink.post(documented_body("a", parameters=params, job_run="jr-1"))
    sink.post(documented_body("b", parameters=params, job_run="jr-2", status="failed"))
    sink.post(documented_body("c", parameters=params, job_run="jr-1"))  # same job run: not listed
    sink.post(documented_body("d", parameters={"url": "https://shop.example/p/78"}, job_run="jr-3"))
    body = signed_in.get("/runs/a/").content.decode()
    assert 'href="/runs/b/"' in body
    assert 'href="/runs/c/"' not in body and 'href="/runs/d/"' not in body


def test_every_run_with_the_same_parameters_is_one_link_away(sink, signed_in):
    params = {"url": "https://shop.example/p/77", "page": 2}
    sink.post(documented_body("a", parameters=params, job_run="jr-1"))
    sink.post(documented_body("b", parameters={"page": 2, "url": "https://shop.example/p/77"}, job_run="jr-1"))
    sink.post(documented_body("c", parameters=params, api="other-api"))
    sink.post(documented_body("d", parameters={"url": "https://shop.example/p/78", "page": 2}))
    page = signed_in.get("/runs/a/").content.decode()
    link = re.search(r'<a href="([^"]+)">Every run of product-details with these parameters</a>', page)[1]
    listing = signed_in.get(link.replace("&amp;", "&"))
    assert listing.status_code == 200
    body = listing.content.decode()
    # Both runs of that API with those parameters (key order does not matter), in any job run.
    assert 'href="/runs/a/"' in body and 'href="/runs/b/"' in body
    assert 'href="/runs/c/"' not in body and 'href="/runs/d/"' not in body
    assert "Called with the same parameters" in body


def test_links_that_are_not_web_addresses_are_not_links(sink, signed_in):
    body = newer_body("r-5", failed=True)
    body["apiInfo"]["trace_url"] = "javascript:alert(1)"
    body["apiInfo"]["error"]["doc_url"] = "javascript:alert(2)"
    sink.post(body)
    page = signed_in.get("/runs/r-5/").content.decode()
    assert 'href="javascript:' not in page
    assert "Playwright trace" not in page


def test_unknown_run_is_404(signed_in):
    assert signed_in.get("/runs/nope/").status_code == 404


def test_run_ids_with_slashes_and_odd_characters_open(sink, signed_in):
    sink.post(documented_body("a/b?c#d"))
    list_body = signed_in.get("/runs/").content.decode()
    assert 'href="/runs/a/b%3Fc%23d/"' in list_body
    assert signed_in.get("/runs/a/b%3Fc%23d/").status_code == 200


def test_run_ids_with_line_breaks_are_linked_and_open(sink, signed_in):
    # A run id is any string a body carries; Django's `path` converter stops at a newline.
    sink.post(documented_body("line\nbreak\r\tid"))
    list_body = signed_in.get("/runs/").content.decode()
    assert 'href="/runs/line%0Abreak%0D%09id/"' in list_body
    page = signed_in.get("/runs/line%0Abreak%0D%09id/")
    assert page.status_code == 200
    assert signed_in.get("/runs/line%0Abreak%0D%09id/result.json").status_code == 200


def test_htmx_request_gets_a_fragment(sink, signed_in):
    sink.post(documented_body("r-6"))
    body = signed_in.get("/runs/r-6/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in body and "Deliveries" in body
