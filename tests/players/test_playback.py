"""Browser playback of FrameFleet's HLS, DASH and CMAF ladders in hls.js, dash.js and shaka-player.

Each player plays each format it supports in headless chromium (pages/<player>.html, one shared scenario in
pages/scenario.js): past a few seconds, then forced to the lowest rendition and then the highest. Checked:
playback advances, each forced switch shows a picture of that rendition's size, no fatal player error, and
the flashes and beeps of the source stay within one AAC frame of each other on the media timeline the player
built (avsync.py).

Needs chromium, the npm players and the playwright package, which `make test` installs:
`pytest tests/players`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.media.sync import SAMPLE_RATE
from tests.players import avsync
from tests.players.ladders import FLASHES, HEIGHTS, SIZE, Ladders

pytestmark = pytest.mark.integration

AUDIO_FRAME = 1024 / SAMPLE_RATE  # one AAC frame: the A/V goal, ±21.3 ms
PLAYED_SECONDS = 3  # as in pages/scenario.js
PAGE_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Case:
    player: str  # hls | dash | shaka: pages/<player>.html
    group: str  # a group of ladders.make_ladders
    manifest: str  # hls | dash: which of the group's manifests the player loads

    def __str__(self) -> str:
        return f"{self.player}-{self.group}-{self.manifest}"


CASES = [
    Case("hls", "hls-ts", "hls"),
    Case("hls", "hls-fmp4", "hls"),
    Case("hls", "cmaf", "hls"),
    Case("dash", "dash", "dash"),
    Case("dash", "cmaf", "dash"),
    Case("shaka", "hls-ts", "hls"),
    Case("shaka", "dash", "dash"),
    Case("shaka", "cmaf", "dash"),
    Case("shaka", "cmaf", "hls"),
]


@dataclass
class Playback:
    result: dict[str, Any]  # what window.scenario() returned
    buffers: list[dict[str, Any]]  # what window.capturedBuffers() returned
    console: list[str]  # the page's errors and warnings, for failure messages

    def step(self, name: str) -> dict[str, Any]:
        found = [s for s in self.result["steps"] if s["name"] == name]
        assert found, f"the scenario never reached {name!r}: {self.result['steps']}; console: {self.console}"
        return found[0]


@pytest.fixture(scope="module")
def played(browser: Any, base_url: str, ladders: Ladders) -> Any:
    """Plays a case once (the first test that asks for it) and keeps what happened for the other tests."""
    done: dict[Case, Playback] = {}

    def play(case: Case) -> Playback:
        if case not in done:
            manifest = ladders.manifest(case.group, case.manifest).relative_to(ladders.root)
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda error: console.append(f"page error: {error}"))
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            try:
                page.goto(f"{base_url}/pages/{case.player}.html?src=/media/{manifest.as_posix()}")
                result = page.evaluate("scenario()")
                done[case] = Playback(result, page.evaluate("capturedBuffers()"), console)
            finally:
                page.close()
        return done[case]

    return play


# Appends one init + media segment to a fresh SourceBuffer; returns the buffered start the browser reports.
BUFFERED_START = """async ([type, urls]) => {
  const source = new MediaSource();
  document.querySelector("video").src = URL.createObjectURL(source);
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const buffer = source.addSourceBuffer(type);
  for (const url of urls) {
    buffer.appendBuffer(await (await fetch(url)).arrayBuffer());
    await new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
  }
  return buffer.buffered.start(0);
}"""


@pytest.mark.parametrize(
    ("group", "init", "segment", "type"),
    [
        # A second segment, alone after its init segment: the edit list is all that places it.
        ("dash", "init-0.m4s", "chunk-0-00002.m4s", 'video/mp4; codecs="avc1.4d401e"'),
        ("dash", "init-3.m4s", "chunk-3-00002.m4s", 'audio/mp4; codecs="mp4a.40.2"'),
        ("hls-fmp4", "360p_init.mp4", "360p_00001.m4s", 'video/mp4; codecs="avc1.4d401e"'),
        ("hls-fmp4", "aac_128k_init.mp4", "aac_128k_00001.m4s", 'audio/mp4; codecs="mp4a.40.2"'),
    ],
)
def test_the_measured_timeline_is_the_browsers(
    browser: Any, base_url: str, ladders: Ladders, group: str, init: str, segment: str, type: str
) -> None:
    """avsync decodes with PyAV: where PyAV puts a segment's first sample, chromium's MSE must put it too."""
    folder = ladders.manifest(group, "dash").parent
    page = browser.new_page()
    try:
        page.goto(f"{base_url}/pages/blank.html")
        urls = [f"/media/{(folder / name).relative_to(ladders.root).as_posix()}" for name in (init, segment)]
        start = page.evaluate(BUFFERED_START, [type, urls])
    finally:
        page.close()
    run = avsync.Run(0.0, (folder / init).read_bytes(), (folder / segment).read_bytes())
    assert start == pytest.approx(avsync.first_time(run), abs=0.001)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_playback_advances(played: Any, case: Case) -> None:
    playback = played(case)
    assert playback.step("played")["time"] >= PLAYED_SECONDS
    # A second more at the highest rendition, after both switches (pages/scenario.js waits for it).
    assert playback.step("played on")["time"] >= playback.step(f"forced {max(HEIGHTS)}")["time"] + 1
    assert (playback.step("played on")["width"], playback.step("played on")["height"]) == SIZE
    assert not playback.result["ended"]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forced_rendition_switch_changes_the_picture_size(played: Any, case: Case) -> None:
    playback = played(case)
    assert sorted(set(playback.result["heights"])) == sorted(HEIGHTS)
    for height in (min(HEIGHTS), max(HEIGHTS)):  # in this order, so each is a change of size
        shown = playback.step(f"forced {height}")
        assert (shown["width"], shown["height"]) == (height * SIZE[0] // SIZE[1], height), playback.result


@pytest.mark.parametrize("case", CASES, ids=str)
def test_no_fatal_player_error(played: Any, case: Case) -> None:
    playback = played(case)
    assert playback.result["fatal"] == [], playback.console


@pytest.mark.parametrize("case", CASES, ids=str)
def test_audio_and_video_stay_within_one_audio_frame(played: Any, case: Case) -> None:
    found = avsync.onsets(played(case).buffers)
    offsets = avsync.offsets(found)
    # Every instant of the clip was appended at least once (the player buffers all of a short clip).
    assert {round(t) for t in found.flashes} == set(FLASHES), found
    assert {round(t) for t in found.beeps} == set(FLASHES), found
    shown = [f"{o * 1000:+.1f}" for o in offsets]
    print(f"{case}: picture minus sound, ms: {' '.join(shown)}")
    assert max(abs(o) for o in offsets) <= AUDIO_FRAME, f"{case}: A/V offsets (ms, + = sound early): {shown}"
