"""The dashboard in a real browser: filters through the page's controls, Back, the drill-down, and
deliveries that appear without a reload, only where they match."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import documented_body, newer_body

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def row(page, run_id: str):
    return page.locator(f'#rows a[href="/runs/{run_id}/"]')


def test_status_filter_changes_list_and_url_and_back_restores(dash, sender):
    sender.post(documented_body("c-1"))
    sender.post(documented_body("f-1", status="failed"))
    dash.goto(dash.base + "/runs/")
    expect(row(dash, "c-1")).to_be_visible()
    expect(row(dash, "f-1")).to_be_visible()

    dash.get_by_role("checkbox", name="failed").check()
    expect(dash).to_have_url(re.compile(r"/runs/\?status=failed$"))
    expect(row(dash, "c-1")).to_have_count(0)
    expect(row(dash, "f-1")).to_be_visible()

    dash.get_by_label("Search").fill("no such run")
    dash.get_by_label("Search").press("Enter")
    expect(dash).to_have_url(re.compile(r"status=failed&q=no(\+|%20)such(\+|%20)run$"))
    expect(dash.locator("#rows tr.empty-row")).to_be_visible()

    dash.go_back()
    expect(dash).to_have_url(re.compile(r"/runs/\?status=failed$"))
    expect(row(dash, "f-1")).to_be_visible()
    expect(dash.get_by_label("Search")).to_have_value("")
    dash.go_back()
    expect(dash).to_have_url(re.compile(r"/runs/$"))
    expect(row(dash, "c-1")).to_be_visible()
    expect(dash.get_by_role("checkbox", name="failed")).not_to_be_checked()


def test_open_a_failure_from_the_list(dash, sender):
    sender.post(documented_body("f-1", status="failed", message="price missing on the page"))
    dash.goto(dash.base + "/runs/?status=failed")
    row(dash, "f-1").click()
    expect(dash).to_have_url(re.compile(r"/runs/f-1/$"))
    expect(dash.locator("h1")).to_contain_text("failed")
    expect(dash.locator("pre.message")).to_have_text("price missing on the page")
    dash.get_by_role("link", name=re.compile("Other runs with this failure")).click()
    expect(dash).to_have_url(re.compile(r"/runs/\?failure_group=\d+$"))
    expect(row(dash, "f-1")).to_be_visible()


def test_new_deliveries_appear_without_reload_only_where_they_match(dash, sender):
    sender.post(documented_body("f-0", status="failed"))
    dash.goto(dash.base + "/runs/?status=failed")
    expect(row(dash, "f-0")).to_be_visible()
    dash.evaluate("window.sinkdashNotReloaded = true")

    sender.post(documented_body("c-new"))
    sender.post(newer_body("f-new", failed=True))
    expect(row(dash, "f-new")).to_be_visible(timeout=2500)
    expect(row(dash, "c-new")).to_have_count(0)
    assert dash.evaluate("window.sinkdashNotReloaded") is True
    assert dash.locator("#rows tr").first.get_attribute("id") == dash.locator("#rows tr:has(a[href='/runs/f-new/'])").get_attribute("id")


def test_a_run_that_changes_is_redrawn_or_leaves_a_filtered_list(dash, sender):
    sender.post(documented_body("flaky", status="failed"))
    dash.goto(dash.base + "/runs/")
    failed_list = dash.context.new_page()
    failed_list.goto(dash.base + "/runs/?status=failed")
    expect(row(failed_list, "flaky")).to_be_visible()
    dash.evaluate("window.sinkdashNotReloaded = true")

    sender.post(documented_body("flaky", result={"ok": "second try"}))  # a later, different body
    badge = dash.locator("#rows tr:has(a[href='/runs/flaky/']) .badge")
    expect(badge).to_have_text("completed", timeout=2500)
    expect(dash.locator("#rows a[href='/runs/flaky/']")).to_have_count(1)
    assert dash.evaluate("window.sinkdashNotReloaded") is True
    expect(row(failed_list, "flaky")).to_have_count(0, timeout=2500)
    failed_list.close()


def test_a_run_that_matches_again_comes_back_in_its_place(dash, sender):
    for run_id in ("f-old", "flaky", "f-new"):
        sender.post(documented_body(run_id, status="failed"))
    dash.goto(dash.base + "/runs/?status=failed")
    expect(row(dash, "flaky")).to_be_visible()
    dash.evaluate("window.sinkdashNotReloaded = true")

    sender.post(documented_body("flaky", result={"ok": "second try"}))
    expect(row(dash, "flaky")).to_have_count(0, timeout=2500)
    sender.post(documented_body("flaky", status="failed", message="failed again, differently"))
    expect(row(dash, "flaky")).to_have_count(1, timeout=2500)

    expect(dash.locator("#rows tr[id^='run-']")).to_have_count(3)
    assert [dash.locator(f"#rows tr:nth-child({n}) .sub").text_content() for n in (1, 2, 3)] == ["f-new", "flaky", "f-old"]
    expect(dash.locator("#rows tr:has(a[href='/runs/flaky/']) .msg")).to_have_text("failed again, differently")
    assert dash.evaluate("window.sinkdashNotReloaded") is True


def test_a_change_to_a_run_the_page_does_not_show_leaves_it_alone(dash, sender):
    sender.post(documented_body("older", status="failed"))
    sender.post(documented_body("newest"))
    dash.goto(dash.base + "/runs/?limit=1")  # shows "newest" only
    expect(row(dash, "newest")).to_be_visible()
    sender.post(documented_body("older", result={"ok": "second try"}))
    sender.post(documented_body("newer-still"))
    expect(row(dash, "newer-still")).to_be_visible(timeout=2500)
    expect(row(dash, "older")).to_have_count(0)  # and no console error from an absent row


def test_pause_holds_the_live_list_until_resumed(dash, sender):
    sender.post(documented_body("c-0"))
    dash.goto(dash.base + "/runs/")
    dash.get_by_role("button", name="Pause").click()
    expect(dash.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    sender.post(documented_body("c-held"))
    dash.wait_for_timeout(2500)
    expect(row(dash, "c-held")).to_have_count(0)
    dash.get_by_role("button", name="Resume").click()
    expect(row(dash, "c-held")).to_be_visible(timeout=2500)


def test_overview_and_job_run_counters_move_live(dash, sender):
    sender.post(documented_body("c-1"))
    dash.goto(dash.base + "/")
    expect(dash.locator(".totals")).to_contain_text("1 runs")
    sender.post(newer_body("f-1", failed=True))
    expect(dash.locator(".totals")).to_contain_text("2 runs", timeout=2500)
    expect(dash.locator(".failure-list")).to_contain_text("script-timeout")

    dash.get_by_role("link", name="jr-1").first.click()
    expect(dash.locator(".counters")).to_contain_text("2 runs")
    sender.post(documented_body("c-2"))
    expect(dash.locator(".counters")).to_contain_text("3 runs", timeout=2500)


def test_connect_reveals_the_token_on_request(dash, settings):
    dash.goto(dash.base + "/connect/")
    expect(dash.locator("#setup")).not_to_contain_text(settings.SINK_TOKEN)
    dash.get_by_role("button", name="Show the token").click()
    expect(dash.locator("#setup")).to_contain_text(f"Bearer {settings.SINK_TOKEN}")


def test_every_page_loads_without_console_errors(dash, sender):
    sender.post(documented_body("c-1"))
    sender.post(documented_body("f-1", status="failed"))
    for path in ["/", "/runs/", "/runs/f-1/", "/failures/", "/rejected/", "/connect/"]:
        dash.goto(dash.base + path)
        dash.wait_for_timeout(1200)  # at least one live tick
    dash.goto(dash.base + "/runs/f-1/")
    dash.get_by_role("link", name="View", exact=True).first.click()
    expect(dash.locator("pre.raw")).to_contain_text("script-execution-exception")
