"""A/V sync measured the way a player sees it: a source with a white flash and a beep at the same instants,
and the offset between them read back from any output (a file, or a group through its manifest).

`make_flash_beep` writes the source: black video (testsrc2 would hide the flash) with one full-white frame
at each flash time, and silence with a 1 kHz beep starting at exactly the same times (aevalsrc, so the gate
is sample-exact rather than rounded to the source's frame size). The video is lossless H.264 and the sound
PCM in Matroska, so the source itself carries no encoder delay: flash and beep are both at t=1, 3, ...

`measure` decodes an output (through its .m3u8/.mpd when it is one) and `Sync.offsets` pairs each flash
with the beep nearest to it; an offset is beep time minus flash time, so a negative one means the sound
comes early. The browser suite (tests/players) plays the same clip, 10 s at 640x360 (`make_flash_beep`,
or `flash_beep_sources` for the lavfi descriptions), and the constants below say when flash and beep are.
"""

from __future__ import annotations

import subprocess
import tempfile
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av

from framefleet.media.ffmpeg import ffmpeg_path

FLASH_FPS = 25
SAMPLE_RATE = 48000
BEEP_HZ = 1000
BEEP_SECONDS = 0.1
FLASH_PERIOD = 2.0  # a flash and a beep at 1, 3, 5, ... seconds
FLASH_LUMA = 128  # a picture brighter than this (0-255 mean luma) is the flash
LOUD = 0.25  # a sample louder than this fraction of the loudest one is the beep


def flash_beep_sources(seconds: float, size: str = "320x240") -> tuple[str, str]:
    """The lavfi video and audio source descriptions of the flash+beep clip (for ffmpeg's `-f lavfi -i`)."""
    half = FLASH_PERIOD / 2
    video = (
        f"color=black:s={size}:r={FLASH_FPS}:d={seconds},format=yuv420p,"
        f"drawbox=c=white:t=fill:enable='eq(mod(n\\,{round(FLASH_PERIOD * FLASH_FPS)})\\,"
        f"{round(half * FLASH_FPS)})'"
    )
    gate = f"between(mod(t\\,{FLASH_PERIOD:g})\\,{half:g}\\,{half + BEEP_SECONDS:g})"
    audio = f"aevalsrc='0.8*sin(2*PI*{BEEP_HZ}*t)*{gate}':s={SAMPLE_RATE}:d={seconds}:c=stereo"
    return video, audio


def make_flash_beep(ffmpeg: str, path: Path, *, seconds: float = 4.0, size: str = "320x240") -> Path:
    """A clip (lossless H.264 + PCM, Matroska) flashing white and beeping at 1, 3, ... seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    video, audio = flash_beep_sources(seconds, size)
    subprocess.run(
        [
            ffmpeg,
            *("-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio),
            *("-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", "-g", str(FLASH_FPS)),
            *("-c:a", "pcm_s16le", "-f", "matroska", str(path)),
        ],
        check=True,
    )
    return path


@dataclass
class Sync:
    flashes: list[float]  # seconds, presentation time of each flash's first white picture
    beeps: list[float]  # seconds, presentation time of each beep's first loud sample

    def offsets(self) -> list[float]:
        """Beep minus flash for each flash, pairing the nearest beep (negative: the sound is early)."""
        assert self.flashes and self.beeps, (self.flashes, self.beeps)
        return [min((b - f for b in self.beeps), key=abs) for f in self.flashes]


def _edges(times: list[float], gap: float) -> list[float]:
    """The first of each run of times less than `gap` apart."""
    found: list[float] = []
    previous = -gap - 1
    for t in times:
        if t - previous > gap:
            found.append(t)
        previous = t
    return found


def _mean_luma(frame: av.VideoFrame) -> float:
    plane = frame.reformat(format="gray").planes[0]
    data = bytes(plane)
    rows = [data[r * plane.line_size : r * plane.line_size + frame.width] for r in range(frame.height)]
    return sum(map(sum, rows)) / (frame.width * frame.height)


def measure(path: Path, *, audio: Path | None = None, options: dict[str, str] | None = None) -> Sync:
    """Flash times of the first video stream of `path` and beep times of the first audio stream of `audio`
    (default: the same file), as PyAV decodes them.

    `options` go to the demuxer (e.g. {"ignore_editlist": "1"} reads an MP4 as a client that ignores edit
    lists would). A manifest's segments are found relative to the manifest.
    """
    return Sync(flash_times(path, options or {}), beep_times(audio or path, options or {}))


@contextmanager
def _opened(path: Path, options: dict[str, str]) -> Iterator[av.container.InputContainer]:
    if path.suffix != ".mpd":
        with av.open(str(path), options=options) as container:
            yield container
        return
    # PyAV's libraries have no dash demuxer: ffmpeg's reads the MPD, and its decoded first video and audio
    # streams are kept raw with their timestamps untouched (-copyts, no shifting) for PyAV to read.
    with tempfile.TemporaryDirectory() as tmp:
        decoded = Path(tmp) / "decoded.nut"
        subprocess.run(
            [
                ffmpeg_path(),
                *("-hide_banner", "-loglevel", "error", "-i", path.name, "-copyts"),
                *("-map", "0:v:0", "-map", "0:a:0", "-c:v", "rawvideo", "-pix_fmt", "gray"),
                *("-c:a", "pcm_s16le", "-avoid_negative_ts", "disabled", "-f", "nut", str(decoded)),
            ],
            cwd=path.parent,  # ffmpeg's dash demuxer resolves segment URLs against the working directory
            check=True,
        )
        with av.open(str(decoded)) as container:
            yield container


def flash_times(path: Path, options: dict[str, str]) -> list[float]:
    """Presentation time of the first white picture of each flash."""
    bright: list[float] = []
    with _opened(path, options) as container:
        for frame in container.decode(container.streams.video[0]):
            if frame.pts is not None and _mean_luma(frame) > FLASH_LUMA:
                bright.append(float(frame.pts * frame.time_base))
    return _edges(sorted(bright), 0.5)


def beep_times(path: Path, options: dict[str, str]) -> list[float]:
    """Presentation time of the first loud sample of each beep."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[tuple[float, array[int]]] = []
    with _opened(path, options) as container:
        for frame in container.decode(container.streams.audio[0]):
            if frame.pts is None:
                continue
            # Resampling keeps the timing: mono s16 at the source's rate, stamped in the frame's clock.
            for mono in resampler.resample(frame):
                start = float(mono.pts * mono.time_base) if mono.pts is not None else float(frame.time)
                chunks.append((start, array("h", bytes(mono.planes[0])[: mono.samples * 2])))
    peak = max((max(map(abs, samples), default=0) for _, samples in chunks), default=0)
    loud = [
        start + index / SAMPLE_RATE
        for start, samples in chunks
        for index, value in enumerate(samples)
        if abs(value) > LOUD * peak
    ]
    return _edges(sorted(loud), 0.5)
