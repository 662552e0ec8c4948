"""The dashboard in real headless Chromium against a real daphne, real workers, PostgreSQL and Redis.

Skipped, saying so, where Debian's ``chromium`` is not installed, except under ``CI=true``, where they
fail instead (``.ci/run`` installs it, so CI runs them). Set
``JOBQUEUE_DASHBOARD_SCREENSHOT=docs/img/dashboard.png`` to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from jobs import services
from jobs.models import Job, JobStatus
from tests.support.browser import (
    REPO,
    SKIP_REASON,
    Daphne,
    daphne_server,
    launch_chromium,
    session_cookie,
    skip_browser_tests,
)
from tests.support.helpers import wait_until


class BrowserTestsSkipped(UserWarning):
    """Shown in pytest's warnings summary, so a run without chromium says so without ``-rs``."""


if skip_browser_tests():
    warnings.warn(SKIP_REASON, BrowserTestsSkipped, stacklevel=1)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(skip_browser_tests(), reason=SKIP_REASON),
]

SECOND = 1000  # Playwright timeouts are in milliseconds


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still
    # plain sequential code, so Django's async-safety guard does not apply to them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = launch_chromium(playwright)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def server(worker_env: dict[str, str], channel_layer: str, tmp_path: Path) -> Iterator[Daphne]:
    yield from daphne_server(worker_env, tmp_path)


@pytest.fixture
def page(browser: Any, server: Daphne) -> Iterator[Any]:
    from playwright.sync_api import expect

    expect.set_options(timeout=20 * SECOND)
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-123-long")
    context = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 1100})
    context.add_cookies([session_cookie(admin, server.url)])
    page = context.new_page()
    yield page
    context.close()


def _expect(target: Any) -> Any:
    from playwright.sync_api import expect

    return expect(target)


def _open_dashboard(page: Any, path: str = "/") -> None:
    page.goto(path)
    _expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def _open_create_form(page: Any) -> None:
    page.goto("/create/")
    _expect(page.locator('#f-type option[value="test.ok"]')).to_have_count(1)  # types loaded from the API


def _api_post(page: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST through the browser's own session and CSRF token, as the page's scripts do."""
    return page.evaluate(
        """async ([path, body]) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const response = await fetch(path, {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                body: JSON.stringify(body),
            });
            return {status: response.status, data: await response.json()};
        }""",
        [path, body],
    )


def _row(page: Any, job_id: Any) -> Any:
    return page.locator(f'#job-rows tr[data-job-id="{job_id}"]')


def test_a_job_enqueued_through_the_api_appears_and_goes_queued_running_succeeded_without_reload(
    page, start_worker
):
    _open_dashboard(page)
    page.evaluate("window.notReloaded = true")
    created = _api_post(page, "/api/jobs/", {"type": "test.sleep", "payload": {"seconds": 2}})
    assert created["status"] == 201, created
    row = _row(page, created["data"]["id"])

    _expect(row).to_have_attribute("data-status", "queued")
    start_worker("--queues", "default")
    _expect(row).to_have_attribute("data-status", "running", timeout=60 * SECOND)
    _expect(row.locator(".badge")).to_have_class(re.compile(r"\bbadge-running\b"))
    _expect(row).to_have_attribute("data-status", "succeeded", timeout=30 * SECOND)
    _expect(row.locator(".badge")).to_have_text("succeeded")
    _expect(page.locator('[data-counter="succeeded"]')).to_have_text("1")
    assert page.evaluate("window.notReloaded") is True


def test_a_failing_job_reaches_the_dead_letters_tab(page, start_worker):
    _open_dashboard(page)
    start_worker("--queues", "default")
    created = _api_post(
        page, "/api/jobs/", {"type": "test.permanent", "payload": {"message": "no such invoice"}}
    )
    assert created["status"] == 201, created

    page.click("#tab-dead")
    _expect(page).to_have_url(re.compile(r"\?tab=dead$"))
    row = page.locator(f'#dead-rows tr[data-job-id="{created["data"]["id"]}"]')
    _expect(row).to_have_attribute("data-state", "open", timeout=60 * SECOND)
    _expect(row).to_contain_text("no such invoice")
    _expect(page.locator("#dead-count")).to_have_text("1")
    _expect(page.locator("#panel-jobs")).to_be_hidden()


def test_filters_persist_in_the_url_and_narrow_the_live_table(page, start_worker):
    _open_dashboard(page)
    page.select_option('#filters select[name="status"]', "failed")
    _expect(page).to_have_url(re.compile(r"\?status=failed$"))
    ok = services.enqueue("test.ok")
    bad = services.enqueue("test.permanent")
    start_worker("--queues", "default")
    _expect(_row(page, bad.pk)).to_have_attribute("data-status", "failed", timeout=60 * SECOND)
    wait_until(lambda: Job.objects.get(pk=ok.pk).status == JobStatus.SUCCEEDED, timeout=30, what="ok job")
    page.wait_for_timeout(1000)  # a frame or two later: the succeeded job never showed up
    _expect(_row(page, ok.pk)).to_have_count(0)

    page.reload()
    _expect(page.locator('#filters select[name="status"]')).to_have_value("failed")
    _expect(_row(page, bad.pk)).to_have_count(1)
    _expect(_row(page, ok.pk)).to_have_count(0)


def test_retry_from_the_job_page_runs_the_job_again_and_the_page_follows_it(page, start_worker):
    job = services.enqueue("test.flaky", kwargs={"fail_times": 1}, max_attempts=1)
    start_worker("--queues", "default")
    wait_until(lambda: Job.objects.get(pk=job.pk).status == JobStatus.FAILED, timeout=60, what="failure")

    _open_dashboard(page, f"/jobs/{job.pk}/")
    status = page.locator("#job-status")
    _expect(status).to_have_attribute("data-status", "failed")
    _expect(page.locator("#btn-cancel")).to_be_hidden()
    page.click("#btn-retry")
    _expect(page.locator("#action-message")).to_contain_text("Retried")
    _expect(status).to_have_attribute("data-status", "succeeded", timeout=60 * SECOND)
    _expect(page.locator("#attempt-rows tr")).to_have_count(2)
    _expect(page.locator("#btn-retry")).to_be_hidden()
    _expect(page.locator("#job-result")).to_contain_text("succeeded on attempt 2")


def test_a_cancel_from_the_job_page_is_recorded_via_the_dashboard_and_listed_there(page):
    job = services.enqueue("test.ok", delay=3600)

    _open_dashboard(page, f"/jobs/{job.pk}/")
    _expect(page.locator("#operator-actions-empty")).to_be_visible()
    page.click("#btn-cancel")

    _expect(page.locator("#operator-action-rows tr")).to_have_count(1)
    row = page.locator("#operator-action-rows tr")
    _expect(row).to_contain_text("Cancel (dashboard): scheduled → cancelled")
    _expect(row).to_contain_text("admin")
    _expect(page.locator("#operator-actions-empty")).to_be_hidden()


def test_the_create_form_shows_the_api_validation_error_for_bad_json(page):
    _open_create_form(page)
    page.select_option("#f-type", "test.ok")
    page.fill("#f-payload", '{"value": 1,}')
    page.click("#create-submit")
    _expect(page.locator('.field[data-field="payload"] .errors')).to_have_text("Must be a JSON object.")
    assert page.url.endswith("/create/")
    assert not Job.objects.exists()


def test_the_create_form_enqueues_and_redirects_to_the_job_page(page):
    _open_create_form(page)
    page.select_option("#f-type", "test.ok")
    page.fill("#f-payload", '{"value": "hello"}')
    page.fill("#f-queue", "high")
    page.fill("#f-priority", "7")
    page.click("#create-submit")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    job = Job.objects.get()
    assert (job.type, job.queue, job.priority, job.kwargs) == ("test.ok", "high", 7, {"value": "hello"})
    assert page.url.endswith(f"/jobs/{job.pk}/")
    _expect(page.locator("#job-status")).to_have_attribute("data-status", "queued")


def test_the_indicator_turns_red_when_the_server_stops_and_the_page_resyncs_after_a_restart(page, server):
    _open_dashboard(page)
    conn = page.locator("#conn")
    server.stop()
    _expect(conn).to_have_attribute("data-state", "down", timeout=15 * SECOND)
    _expect(conn).to_contain_text("retrying")
    missed = services.enqueue("test.ok")  # its event reaches no dashboard: nobody is connected

    server.start()
    _expect(conn).to_have_attribute("data-state", "live", timeout=30 * SECOND)
    _expect(_row(page, missed.pk)).to_have_attribute("data-status", "queued")


def test_the_dashboard_keeps_up_with_thousands_of_jobs_and_caps_its_table(page, start_worker, tmp_path):
    _open_dashboard(page)
    start_worker("--queues", "high,default,low", "--processes", "2", "--threads", "8", "--prefetch", "64")
    ok, slow, failing = 1500, 40, 60
    for wave in range(5):  # a few seconds of load, so the chart shows a shape
        services.enqueue_many(
            [{"type": "test.ok", "kwargs": {"value": i}} for i in range(ok // 5)]
            + [{"type": "test.sleep", "kwargs": {"seconds": 0.3}, "queue": "high"}] * (slow // 5)
            + [{"type": "test.fail", "queue": "low"}] * (failing // 5)
        )
        page.wait_for_timeout(700)
        if wave == 3:
            assert page.locator("#job-rows tr").count() <= 100
            page.screenshot(path=tmp_path / "dashboard.png")
            if target := os.environ.get("JOBQUEUE_DASHBOARD_SCREENSHOT"):
                (REPO / target).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=REPO / target)

    _expect(page.locator('[data-counter="succeeded"]')).to_have_text(f"{ok + slow:,}", timeout=120 * SECOND)
    _expect(page.locator('[data-counter="failed"]')).to_have_text(f"{failing:,}", timeout=60 * SECOND)
    assert page.locator("#job-rows tr").count() == 100
    _expect(page.locator("#dead-count")).to_have_text(str(failing))
    assert page.locator("#chart-max").inner_text() != "1"  # the throughput chart saw the burst
