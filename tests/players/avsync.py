"""Where a player put the source's flashes and beeps on the media timeline, from what it appended to MSE.

The page records every SourceBuffer append with the timestampOffset in force (pages/capture.js). Here each
buffer's appends are cut into runs that one demuxer can read (an init segment and the media segments after
it, with one timestampOffset), decoded with PyAV, and the flash and beep onsets are put on the timeline the
way the browser does: sample time + edit-list shift + timestampOffset. A flash and the beep nearest to it
give one A/V offset.

The edit list of an fMP4 init segment (ffmpeg's way to hide the AAC encoder delay or a B-frame delay) is
applied here, not by PyAV: ffmpeg applies it only when reading from the first fragment on, while chromium
applies it to every fragment. test_playback checks that the two timelines agree segment by segment.
"""

from __future__ import annotations

import base64
import io
import itertools
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import av

from tests.media.helpers import mean_luma

FLASH_LUMA = 160  # the black picture stays well below, the white flash well above
BEEP_LEVEL = 0.25  # half the beep's amplitude: above AAC's pre-echo, below the beep itself
QUIET_SECONDS = 0.5  # a beep onset follows at least this much quiet (the beeps are 2 s apart)
PAIR_SECONDS = 0.5  # a flash and a beep further apart than this belong to different instants


@dataclass
class Run:
    """Bytes one demuxer can read from its start (an fMP4 init segment, if any, and media segments), and the
    timestampOffset they were appended with."""

    offset: float
    init: bytes
    media: bytes = b""

    def timeline(self) -> float:
        """What to add to a decoded time (edit list ignored) to get the time on the browser's timeline."""
        return self.offset + (edit_shift(self.init) if self.init else 0.0)

    def open(self) -> Any:
        options = {"ignore_editlist": "1"} if self.init else {}
        return av.open(io.BytesIO(self.init + self.media), options=options)


@dataclass
class Onsets:
    flashes: list[float] = field(default_factory=list)  # seconds on the media timeline
    beeps: list[float] = field(default_factory=list)


def _is_init(data: bytes) -> bool:
    return data[4:8] in (b"ftyp", b"moov")


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """ISO BMFF boxes between `start` and `end`: (type, payload start, box end)."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, start + 8)
            header = 16
        elif size == 0:
            size = end - start
        yield kind, start + header, start + size
        start += size


def _box(data: bytes, *path: bytes) -> tuple[int, int] | None:
    """Payload bounds of the first box at `path` (e.g. moov, trak, mdia, mdhd), or None."""
    start, end = 0, len(data)
    for kind in path:
        found = next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)
        if found is None:
            return None
        start, end = found
    return start, end


def _timescale(data: bytes, *path: bytes) -> int:
    """The timescale of an mvhd or mdhd box (after version/flags and two dates of 4 or 8 bytes)."""
    bounds = _box(data, *path)
    assert bounds is not None, path
    start = bounds[0]
    return struct.unpack_from(">I", data, start + (20 if data[start] == 1 else 12))[0]


def edit_shift(init: bytes) -> float:
    """Seconds an init segment's edit list moves its track: + empty edits (a delay), - the media time
    the first real edit starts at (samples to hide). 0 without an edit list."""
    bounds = _box(init, b"moov", b"trak", b"edts", b"elst")
    if bounds is None:
        return 0.0
    start = bounds[0]
    version = init[start]
    (count,) = struct.unpack_from(">I", init, start + 4)
    entry = ">Qq" if version == 1 else ">Ii"
    delay = 0
    for index in range(count):
        duration, media_time = struct.unpack_from(entry, init, start + 8 + index * (20 if version else 12))
        if media_time == -1:
            delay += duration
            continue
        movie = _timescale(init, b"moov", b"mvhd")
        media = _timescale(init, b"moov", b"trak", b"mdia", b"mdhd")
        return delay / movie - media_time / media
    return 0.0


def runs(appends: list[dict[str, Any]]) -> list[Run]:
    """Cut one SourceBuffer's appends into runs: a new run at each init segment and each new offset.

    A run that starts on a new offset without an init segment of its own gets the last one, as the browser
    keeps using it. (MPEG-TS has no init segment; its appends simply run on.)
    """
    found: list[Run] = []
    init = b""
    offset: float | None = None
    for append in appends:
        if "data" not in append:  # a changeType(): the next append brings its own init segment
            continue
        data = base64.b64decode(append["data"])
        if _is_init(data):
            init, offset = data, None
            continue
        if append["offset"] != offset:
            offset = append["offset"]
            found.append(Run(offset, init))
        found[-1].media += data
    return found


def flash_onsets(frames: list[tuple[float, float]]) -> list[float]:
    """Times of the first flash frame of each flash, given (time, mean luma) in presentation order.

    A run that starts in the middle of a flash does not show where that flash began: it is left out.
    """
    return [time for (_, before), (time, luma) in itertools.pairwise(frames) if luma >= FLASH_LUMA > before]


def beep_onsets(start: float, rate: int, samples: array) -> list[float]:
    """Times of each loud sample that follows QUIET_SECONDS of quiet, for samples starting at `start`.

    What came before the run is unknown, so a beep within QUIET_SECONDS of its start is left out.
    """
    quiet = int(QUIET_SECONDS * rate)
    onsets = []
    last_loud = 0
    for index, value in enumerate(samples):
        if abs(value) >= BEEP_LEVEL:
            if index - last_loud > quiet:
                onsets.append(start + index / rate)
            last_loud = index
    return onsets


def first_time(run: Run) -> float:
    """The earliest presentation time in a run's first stream, on the browser's timeline."""
    with run.open() as container:
        return min(float(frame.time) for frame in container.decode(container.streams[0])) + run.timeline()


def decode_run(run: Run) -> Onsets:
    """Flash and beep onsets in one run, on the browser's timeline."""
    found = Onsets()
    with run.open() as probe:
        kinds = [stream.type for stream in probe.streams]
    for index, kind in enumerate(kinds):
        with run.open() as container:
            stream = container.streams[index]
            if kind == "video":
                pictures = [(float(f.time) + run.timeline(), mean_luma(f)) for f in container.decode(stream)]
                found.flashes += flash_onsets(sorted(pictures))
            elif kind == "audio":
                found.beeps += _audio_onsets(container, stream, run.timeline())
    return found


def _audio_onsets(container: Any, stream: Any, offset: float) -> list[float]:
    samples = array("f")
    start = None
    mono = av.AudioResampler(format="flt", layout="mono")  # same rate: a format change, no delay
    for frame in container.decode(stream):
        if start is None:
            start = float(frame.time) + offset
        for converted in mono.resample(frame):
            samples.frombytes(bytes(converted.planes[0])[: converted.samples * 4])
    return [] if start is None else beep_onsets(start, stream.rate, samples)


def onsets(buffers: list[dict[str, Any]]) -> Onsets:
    """Every flash and beep onset in what a page captured (window.capturedBuffers())."""
    found = Onsets()
    for buffer in buffers:
        for run in runs(buffer["appends"]):
            part = decode_run(run)
            found.flashes += part.flashes
            found.beeps += part.beeps
    return found


def offsets(found: Onsets) -> list[float]:
    """Picture minus sound, in seconds, for each flash with a beep near it (positive: the sound is early).

    A flash seen in several runs (the same stretch buffered at two renditions) counts once per run: each run
    is a separate chance for the player to place the picture wrong.
    """
    pairs = []
    for flash in sorted(found.flashes):
        beep = min(found.beeps, key=lambda b: abs(b - flash), default=None)
        if beep is not None and abs(beep - flash) < PAIR_SECONDS:
            pairs.append(flash - beep)
    return pairs
