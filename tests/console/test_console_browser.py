"""The web console in a real browser (Debian's chromium through Playwright) against a real API and worker:
sign in, submit from the form, live progress, the quality chart, the player, cancel, what a viewer and a
foreign tenant see, and the CSRF refusal. Saves screenshots of the main pages into docs/console/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from framefleet.console.routes import DOWNLOAD_PATH
from tests.console.conftest import SCREENSHOTS, Stack

TIMEOUT_MS = 60_000


@pytest.fixture()
def context(browser: Any) -> Iterator[Any]:
    made = browser.new_context(viewport={"width": 1280, "height": 860})
    yield made
    made.close()


def sign_in(context: Any, stack: Stack, key: str, path: str = "/console/jobs") -> Any:
    page = context.new_page()
    page.goto(stack.url + path)
    # Not signed in: the console sends the person to the sign-in page, then back.
    page.wait_for_url("**/console/sign-in**")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}*")
    return page


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def api_submit(stack: Stack, body: dict[str, Any]) -> str:
    response = httpx.post(f"{stack.url}/v1/jobs", json=body, headers={"X-API-Key": stack.keys["admin"]})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_sign_in_refuses_a_wrong_key_and_keeps_the_key_from_scripts(context: Any, stack: Stack) -> None:
    page = context.new_page()
    page.goto(stack.url + "/console/sign-in")
    shot(page, "sign-in")
    page.get_by_label("API key").fill("ff_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    assert "unknown or revoked" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("API key").get_attribute("aria-invalid") == "true"
    page = sign_in(context, stack, stack.keys["admin"])
    assert page.evaluate("document.cookie").find("ff_console=") == -1
    cookie = next(c for c in context.cookies() if c["name"] == "ff_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert stack.keys["admin"] not in cookie["value"]


def test_submit_from_the_form_watch_progress_chart_and_player(context: Any, stack: Stack) -> None:
    page = sign_in(context, stack, stack.keys["member"], "/console/submit")
    # A mistake is answered by the API and shown at its field.
    page.get_by_label("Input (a storage URI)").fill("ftp://nowhere/x.mp4")
    page.get_by_role("button", name="Submit").click()
    page.locator("#input-error").wait_for(state="visible")
    assert page.get_by_label("Input (a storage URI)").get_attribute("aria-invalid") == "true"
    page.get_by_label("The JSON spec").check()
    spec = {
        "input": stack.short_clip,
        "outputs": [{"name": "web", "container": "mp4", "video": {"width": 320, "height": 240}}],
        "quality": {"metrics": ["vmaf"]},
    }
    page.get_by_label("Job spec (JSON)").fill(json.dumps(spec))
    shot(page, "submit")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/console/jobs/*")
    # Every value the progress bar takes, from the first moment on the page.
    page.evaluate(
        """() => { const bar = document.getElementById('progress');
        window.seen = [bar.getAttribute('aria-valuenow')];
        new MutationObserver(() => window.seen.push(bar.getAttribute('aria-valuenow')))
          .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']}); }"""
    )
    page.get_by_test_id("state").filter(has_text="succeeded").wait_for(timeout=TIMEOUT_MS)
    seen = [float(v) for v in page.evaluate("window.seen")]
    assert seen[-1] == 100 and len(set(seen)) >= 2, seen
    assert seen == sorted(seen), f"the bar went backwards: {seen}"
    assert "VMAF" in page.get_by_test_id("scores").first.inner_text()
    page.get_by_test_id("quality-line").wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_test_id("worst-segment").count() == 1
    assert page.locator("#history li").count() >= 3
    if any(getattr(route, "path", None) == DOWNLOAD_PATH for route in stack.app.routes):
        page.wait_for_function("document.getElementById('video')?.currentTime > 0.5", timeout=TIMEOUT_MS)
    else:
        assert "no output downloads" in page.locator("#player-note").inner_text()
    shot(page, "job")
    page.get_by_role("link", name="Jobs").click()
    page.locator("#jobs-body tr").first.wait_for()
    shot(page, "jobs")


def test_cancel_a_long_job(context: Any, stack: Stack) -> None:
    job_id = api_submit(
        stack,
        {
            "input": stack.long_clip,
            "outputs": [
                {"name": "slow", "container": "mp4", "video": {"codec": "hevc", "preset": "veryslow"}}
            ],
        },
    )
    page = sign_in(context, stack, stack.keys["admin"], f"/console/jobs/{job_id}")
    page.get_by_test_id("state").filter(has_text="running").wait_for(timeout=TIMEOUT_MS)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel job").click()
    page.get_by_test_id("state").filter(has_text="canceled").wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_role("button", name="Cancel job").is_hidden()


def test_a_viewer_sees_no_submit_or_cancel_and_no_submit_page(context: Any, stack: Stack) -> None:
    job_id = api_submit(stack, {"input": stack.short_clip, "outputs": [{"name": "w", "container": "mp4"}]})
    page = sign_in(context, stack, stack.keys["viewer"], f"/console/jobs/{job_id}")
    page.get_by_test_id("state").filter(has_text="succeeded").wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#cancel, #retry").count() == 0
    page.goto(stack.url + "/console/jobs")
    page.locator("#jobs-body tr").first.wait_for()
    assert page.get_by_role("link", name="Submit a job").count() == 0
    assert page.get_by_role("navigation").get_by_role("link", name="Submit").count() == 0
    response = page.goto(stack.url + "/console/submit")
    assert response.status == 403


def test_a_foreign_tenants_job_is_not_found(context: Any, stack: Stack) -> None:
    job_id = api_submit(stack, {"input": stack.short_clip, "outputs": [{"name": "w", "container": "mp4"}]})
    page = sign_in(context, stack, stack.keys["other"], f"/console/jobs/{job_id}")
    page.get_by_role("alert").filter(has_text="not found").wait_for()
    assert page.locator("#job-body").is_hidden()


def test_a_state_change_without_the_csrf_token_is_refused(context: Any, stack: Stack) -> None:
    page = sign_in(context, stack, stack.keys["admin"])
    body = json.dumps({"input": stack.short_clip, "outputs": [{"name": "w", "container": "mp4"}]})
    without = page.evaluate(
        """async (body) => { const r = await fetch('/v1/jobs', {method: 'POST', body,
             headers: {'Content-Type': 'application/json'}}); return [r.status, await r.json()]; }""",
        body,
    )
    assert without[0] == 403 and without[1]["type"].endswith("/csrf"), without
    with_token = page.evaluate(
        """async (body) => { const r = await fetch('/v1/jobs', {method: 'POST', body, headers: {
             'Content-Type': 'application/json',
             'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}});
           return r.status; }""",
        body,
    )
    assert with_token == 201


def test_fleet_and_admin_pages(context: Any, stack: Stack) -> None:
    page = sign_in(context, stack, stack.keys["admin"], "/console/admin")
    page.get_by_label("Description").fill("console-made")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_test_id("new-key").inner_text()
    assert new_key.startswith("ff_")
    page.locator("#keys td", has_text="console-made").wait_for()
    page.locator("section[data-section=presets] table").wait_for()
    shot(page, "admin")
    page.goto(stack.url + "/console/fleet")
    page.locator("#workers table").wait_for(timeout=TIMEOUT_MS)
    assert "console@" in page.locator("#workers").inner_text()
    shot(page, "fleet")
    # At phone width nothing scrolls sideways but the tables' own frames.
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(stack.url + "/console/jobs")
    page.locator("#jobs-body tr").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "jobs-phone")
