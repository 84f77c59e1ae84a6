"""The evaluation bench in Chromium, offline: load the sample set, run two demo contenders (the demo preset
and a single demo model) graded by the demo grader, watch the progress, read the table and the chart, open a
task and export the CSV."""

from __future__ import annotations

import csv
import io
import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserLog, signup

RUN_TIMEOUT_MS = 60_000


def test_import_the_sample_run_two_demo_contenders_and_read_the_results(
    page: Page, page_log: BrowserLog
) -> None:
    signup(page, "erin", "correct horse battery staple")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Evaluations").click()
    expect(page.get_by_role("heading", name="Evaluations", exact=True)).to_be_visible()

    page.get_by_role("button", name="Load the sample set").click()
    expect(page.get_by_test_id("task-sets")).to_contain_text("12 tasks")

    page.get_by_label("Demo (offline) (preset)").check()
    page.locator("#id_models").fill("demo/atlas")
    page.get_by_label("Tasks (a seeded sample; empty: all)").fill("4")
    # The estimate is shown before starting (htmx, on change).
    expect(page.get_by_test_id("estimate")).to_contain_text("4 tasks \u00d7 2 contenders")
    expect(page.get_by_test_id("estimate")).to_contain_text("$0")
    page.get_by_role("button", name="Start the evaluation").click()

    # Live progress: one row per contender, polled while the run goes on.
    expect(page.get_by_test_id("progress-row")).to_have_count(2)
    expect(page.get_by_test_id("progress-row").first).to_contain_text("/ 4")
    expect(page.get_by_test_id("run-status")).to_have_text("Done", timeout=RUN_TIMEOUT_MS)

    table = page.get_by_test_id("results-table")
    expect(table.get_by_test_id("result-row")).to_have_count(2)
    expect(table).to_contain_text("Demo (offline) (preset)")
    expect(table).to_contain_text("demo/atlas")
    expect(table).to_contain_text("demo")
    expect(page.get_by_test_id("score-cost-chart")).to_be_visible()
    expect(page.get_by_test_id("chart-point")).to_have_count(2)

    page.get_by_test_id("task-list").get_by_role("link").first.click()
    expect(page.get_by_test_id("task-answer")).to_have_count(2)
    first = page.get_by_test_id("task-answer").first
    expect(first.get_by_test_id("criterion").first).to_be_visible()
    expect(first.get_by_test_id("verdict").first).to_have_text(re.compile(r"^(MET|UNMET)$"))
    page.go_back()

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    content = download_info.value.path().read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0][:6] == ["contender", "demo", "task", "domain", "status", "score"]
    assert len(rows) == 1 + 2 * 4
    assert {row[0] for row in rows[1:]} == {"Demo (offline) (preset)", "demo/atlas (demo)"}
    page_log.assert_clean()
