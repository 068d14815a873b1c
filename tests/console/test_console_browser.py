"""The web console in a real browser (Debian's chromium through Playwright) against a real API and worker:
sign in, submit from the form, live progress, the quality chart, the player, cancel, what a viewer and a
foreign tenant see, and the CSRF refusal. Saves screenshots of the main pages into docs/console/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from framefleet.console.routes import has_downloads
from tests.conftest import make_clip
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


def wait_js(page: Any, function: str, arg: Any = None, timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Polls a JS function until it answers true. Not page.wait_for_function: its predicate is evaluated
    with eval() in the page, which the console's Content-Security-Policy (no 'unsafe-eval') refuses."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(function, arg):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {function}"
        page.wait_for_timeout(100)


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
    if has_downloads(stack.app):
        video = page.locator("#video")
        video.wait_for()
        video.evaluate("(v) => { v.muted = true; return v.play(); }")
        wait_js(page, "() => document.getElementById('video').currentTime > 0.5")
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


def test_only_the_player_builds_are_served(stack: Stack) -> None:
    from framefleet.console.app import PLAYER_FILES, VENDOR

    installed = {name for name, path in PLAYER_FILES.items() if (VENDOR / path).is_file()}
    if not installed:
        pytest.fail(f"the console's player libraries are not installed in {VENDOR} (make installs them)")
    for name in installed:
        response = httpx.get(f"{stack.url}/console/vendor/{name}.js")
        assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    # The rest of node_modules (manifests, sources, other packages) is not reachable.
    for path in ("hls.js/package.json", "dashjs/package.json", "hls.js/dist/hls.min.js", ".installed-lock"):
        assert (VENDOR / path).exists()
        assert httpx.get(f"{stack.url}/console/vendor/{path}").status_code == 404, path


def test_upload_a_file_resume_it_and_submit_it(
    context: Any, stack: Stack, ffmpeg: str, tmp_path: Path
) -> None:
    from framefleet.console.app import HERE

    found = re.search(r"CHUNK = (\d+) \* (\d+);", (HERE / "static" / "js" / "upload.js").read_text())
    assert found, "upload.js states its chunk size"
    chunk = int(found[1]) * int(found[2])
    clip = make_clip(ffmpeg, tmp_path / "upload me.mp4", seconds=3, size="640x360", audio=False,
                     extra=["-b:v", "5M"])  # fmt: skip
    assert clip.stat().st_size > chunk, "the clip must take more than one chunk"
    page = sign_in(context, stack, stack.keys["member"], "/console/submit")
    calls: list[str] = []

    def cut_the_second_patch(route: Any) -> None:
        calls.append(route.request.method)
        if route.request.method == "PATCH" and calls.count("PATCH") == 2:
            route.abort()
        else:
            route.continue_()

    page.route("**/v1/uploads**", cut_the_second_patch)
    page.evaluate(
        """() => { const bar = document.getElementById('upload-progress');
        window.seen = [];
        new MutationObserver(() => window.seen.push(Number(bar.getAttribute('aria-valuenow'))))
          .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']}); }"""
    )
    page.get_by_label("Or upload a file").set_input_files(str(clip))
    page.locator("#upload-status", has_text="The upload stopped").wait_for(timeout=TIMEOUT_MS)
    # Choosing the file again resumes where the server says it stands: no new upload, no byte twice.
    page.get_by_label("Or upload a file").set_input_files(str(clip))
    page.locator("#upload-status", has_text="Uploaded").wait_for(timeout=TIMEOUT_MS)
    assert calls.count("POST") == 1 and calls.count("HEAD") == 1, calls
    assert calls.count("PATCH") == 2 + -(-(clip.stat().st_size - chunk) // chunk), calls
    seen = page.evaluate("window.seen")
    assert seen[-1] == 100 and any(0 < v < 100 for v in seen), seen
    uri = page.get_by_label("Input (a storage URI)").input_value()
    assert uri.startswith("upload://"), uri
    page.get_by_label("The JSON spec").check()
    spec = {
        "input": uri,
        "outputs": [{"name": "small", "container": "mp4", "video": {"width": 160, "height": 90}}],
    }
    page.get_by_label("Job spec (JSON)").fill(json.dumps(spec))
    shot(page, "submit-upload")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/console/jobs/*")
    page.get_by_test_id("state").filter(has_text="succeeded").wait_for(timeout=TIMEOUT_MS)


def test_thumbnails_and_the_sprite_scrubber(context: Any, stack: Stack) -> None:
    job_id = api_submit(
        stack,
        {
            "input": stack.short_clip,
            "thumbnails": [{"name": "stills", "times": [0.5, 2.5], "width": 96}],
            "sprites": [{"name": "hover", "every_seconds": 1, "columns": 2, "rows": 2, "width": 80}],
            "cache": False,
        },
    )
    page = sign_in(context, stack, stack.keys["viewer"], f"/console/jobs/{job_id}")
    page.get_by_test_id("state").filter(has_text="succeeded").wait_for(timeout=TIMEOUT_MS)
    tile = page.get_by_test_id("sprite-tile")
    assert has_downloads(stack.app)
    tile.wait_for(timeout=TIMEOUT_MS)
    thumbs = page.get_by_test_id("thumbnail")
    assert thumbs.count() == 2
    wait_js(
        page,
        """() => [...document.querySelectorAll('[data-testid=thumbnail]')]
             .every((i) => i.complete && i.naturalWidth === 96)""",
    )
    # 4 s at one tile a second on 2x2 sheets: the tile of 2 s is the first of the second row of hover_001.
    scrubber = page.get_by_label("Scrub hover (4 tiles)")
    scrubber.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    height = int(tile.evaluate("(t) => parseInt(t.style.height)"))
    assert tile.get_attribute("data-start") == "2" and tile.get_attribute("data-x") == "0"
    assert tile.get_attribute("data-y") == str(height) and height > 0
    # Hovering previews the time under the pointer: near the end of the track, the last tile (3-4 s).
    box = scrubber.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2)
    assert tile.get_attribute("data-start") == "3" and tile.get_attribute("data-x") == "80"
    sheet = page.evaluate(
        "async (u) => (await fetch(u)).status",
        tile.evaluate("(t) => getComputedStyle(t).backgroundImage.slice(5, -2)"),
    )
    assert sheet == 200
    page.get_by_role("heading", name="Thumbnails and sprites").scroll_into_view_if_needed()
    shot(page, "job-pictures")


def test_webhook_deliveries_replay_and_cost_per_day(browser: Any, context: Any, stack: Stack) -> None:
    import uuid

    from framefleet.config import get_settings
    from framefleet.db.session import session_scope
    from framefleet.webhooks.delivery import fan_out

    headers = {"X-API-Key": stack.keys["admin"]}
    hook = httpx.post(f"{stack.url}/v1/webhooks", json={"url": "https://hooks.invalid/ff"}, headers=headers)
    assert hook.status_code == 201, hook.text
    job_id = api_submit(
        stack, {"input": stack.short_clip, "outputs": [{"name": "w", "container": "mp4"}], "cache": False}
    )
    with session_scope() as session:
        # As the relay does for a feed entry (its id: the Redis clock in ms, then a sequence number).
        source = f"{int(time.time() * 1000)}-{uuid.uuid4().int % 10**6}"
        event = fan_out(session, source=source, job_id=job_id, event_type="job.succeeded", detail="",
                        secret_key=get_settings().secret_key)  # fmt: skip
        assert event is not None
    hook_id = hook.json()["id"]
    deliveries = httpx.get(f"{stack.url}/v1/webhooks/{hook_id}/deliveries", headers=headers).json()["items"]
    page = sign_in(context, stack, stack.keys["admin"], "/console/admin")
    log = page.get_by_test_id("delivery-log").filter(has_text="hooks.invalid")
    log.locator("tbody tr").first.wait_for(timeout=TIMEOUT_MS)
    for column in ("state", "response status", "latency ms", "attempts"):
        assert log.get_by_role("columnheader", name=column).count() == 1
    rows = log.locator("tbody tr").count()
    assert rows == len(deliveries)
    log.get_by_role("button", name=f"Replay delivery {deliveries[0]['id']}").click()
    wait_js(page, "(n) => document.querySelectorAll('[data-testid=delivery-log] tbody tr').length > n", rows)
    after = httpx.get(f"{stack.url}/v1/webhooks/{hook_id}/deliveries", headers=headers).json()["items"]
    assert len(after) == rows + 1 and after[0]["event_id"] == deliveries[0]["event_id"]
    # Cost per day: today's row counts the tenant's ended jobs with their cost.
    usage = page.locator("section[data-section=usage-days]")
    usage.locator("tbody tr").first.wait_for(timeout=TIMEOUT_MS)
    assert usage.get_by_role("columnheader", name="cost").count() == 1
    shot(page, "admin-webhooks")
    # A viewer reads the log but has no Replay button.
    other = browser.new_context(viewport={"width": 1280, "height": 860})
    viewer = sign_in(other, stack, stack.keys["viewer"], "/console/admin")
    viewer.get_by_test_id("delivery-log").locator("tbody tr").first.wait_for(timeout=TIMEOUT_MS)
    assert viewer.get_by_role("button", name="Replay", exact=False).count() == 0
    other.close()


def test_fleet_shows_recent_failures_by_class(context: Any, stack: Stack) -> None:
    job_id = api_submit(
        stack,
        {
            "input": stack.short_clip.replace("console-short", "no-such-clip"),
            "outputs": [{"name": "w", "container": "mp4"}],
        },
    )
    headers = {"X-API-Key": stack.keys["operator"]}
    page = sign_in(context, stack, stack.keys["operator"], f"/console/jobs/{job_id}")
    page.get_by_test_id("state").filter(has_text="failed").wait_for(timeout=TIMEOUT_MS)
    failure_class = httpx.get(f"{stack.url}/v1/jobs/{job_id}", headers=headers).json()["failure_class"]
    assert failure_class
    page.goto(stack.url + "/console/fleet")
    classes = page.locator("#failures")
    classes.locator("td", has_text=failure_class).first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#failures-recent").get_by_role("link", name=job_id).count() == 1
    # Installation-wide: members may not read it.
    member = httpx.get(f"{stack.url}/v1/failures", headers={"X-API-Key": stack.keys["member"]})
    assert member.status_code == 403
